"""The `pyalloc` command line (python -m pyalloc)."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
from conftest import ROOT, config_env, plain_env, run

pytestmark = pytest.mark.timeout(120)


def pyalloc_cmd(*args):
    return [sys.executable, "-m", "pyalloc", *args]


def cli_env():
    env = plain_env()
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_lib(libpyalloc):
    res = run(pyalloc_cmd("lib"), cli_env())
    assert res.returncode == 0
    assert res.stdout.decode().strip() == libpyalloc


def test_run_with_stats(libpyalloc):
    res = run(pyalloc_cmd("run", "--policy", "first", "--stats", "--", "echo", "hi"), cli_env())
    assert res.returncode == 0 and res.stdout == b"hi\n"
    assert b"policy first, thread caches on" in res.stderr


def test_run_exit_status_and_args(libpyalloc):
    res = run(pyalloc_cmd("run", "--", "sh", "-c", "exit 3"), cli_env())
    assert res.returncode == 3
    res = run(pyalloc_cmd("run", "sh", "-c", "echo $0 $1", "a", "b"), cli_env())
    assert res.stdout == b"a b\n"


def test_run_errors(libpyalloc):
    res = run(pyalloc_cmd("run"), cli_env())
    assert res.returncode == 2 and b"no command" in res.stderr
    res = run(pyalloc_cmd("run", "--", "/nonexistent/program"), cli_env())
    assert res.returncode == 127
    res = run(pyalloc_cmd("run", "--policy", "greedy", "--", "true"), cli_env())
    assert res.returncode == 2


def test_run_stats_file_and_no_tcache(libpyalloc, tmp_path):
    out = tmp_path / "s.json"
    res = run(pyalloc_cmd("run", "--no-tcache", "--policy", "worst", "--stats-file", str(out),
                          "--", "ls", "/"), cli_env())
    assert res.returncode == 0
    d = json.loads(out.read_text())
    assert d["tcache"] is False and d["policy"] == "worst"


def test_run_preloads_into_the_command(libpyalloc):
    res = run(pyalloc_cmd("run", "--", sys.executable, "-c",
                          "import os; print(os.environ['LD_PRELOAD'])"), cli_env())
    assert res.stdout.decode().split()[0] == libpyalloc


@pytest.fixture(scope="module")
def sample_trace(tmp_path_factory, libpyalloc):
    path = tmp_path_factory.mktemp("trace") / "t.bin"
    res = run([sys.executable, "-c", "x = {i: str(i) * 3 for i in range(20000)}; del x"],
              config_env(None, None, PYALLOC_TRACE=str(path), PYTHONMALLOC="malloc"))
    assert res.returncode == 0
    return path


def test_trace_replay_table(sample_trace):
    res = run(pyalloc_cmd("trace", "replay", str(sample_trace)), cli_env())
    assert res.returncode == 0, res.stderr.decode()
    text = res.stdout.decode()
    for policy in ("best", "worst", "first", "fifo"):
        assert f"\n{policy} " in text
    assert "heap/live" in text


def test_trace_replay_json_one_policy(sample_trace):
    res = run(pyalloc_cmd("trace", "replay", str(sample_trace), "--policy", "fifo", "--json"),
              cli_env())
    data = json.loads(res.stdout)
    assert len(data) == 1 and data[0]["policy"] == "fifo"
    assert data[0]["peak_heap"] >= data[0]["peak_live"] > 0


def test_trace_info_and_errors(sample_trace, tmp_path):
    res = run(pyalloc_cmd("trace", "info", str(sample_trace)), cli_env())
    assert res.returncode == 0 and b"malloc" in res.stdout
    res = run(pyalloc_cmd("trace", "replay", str(tmp_path / "missing")), cli_env())
    assert res.returncode == 1 and b"No such file" in res.stderr


def test_help_and_module_entry():
    res = run(pyalloc_cmd("--help"), cli_env())
    assert res.returncode == 0
    for word in ("lib", "run", "trace", "demo"):
        assert word.encode() in res.stdout
    res = run(pyalloc_cmd(), cli_env())
    assert res.returncode == 2


def test_demo_dispatch_is_lazy(monkeypatch):
    from pyalloc import cli

    seen = {}
    fake = types.ModuleType("pyalloc.demo")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "pyalloc.demo", fake)
    assert cli.main(["demo", "--quick", "x"]) == 0
    assert seen["argv"] == ["--quick", "x"]


def test_console_script_entry_point():
    """pyproject's `pyalloc = "pyalloc.cli:main"` resolves."""
    code = "from pyalloc.cli import main; print(callable(main))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, env=cli_env())
    assert res.stdout == b"True\n"
