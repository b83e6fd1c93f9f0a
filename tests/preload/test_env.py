"""Configuration by environment, statistics, traces, invalid-pointer handling, and the
pyalloc.preload / pyalloc.trace helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import config_env, plain_env, run

pytestmark = pytest.mark.timeout(120)

PY_FORK = ("import os\n"
           "pid = os.fork()\n"
           "if pid == 0:\n"
           "    x = [str(i) for i in range(1000)]\n"
           "    os._exit(0)\n"
           "os.waitpid(pid, 0)\n"
           "print('done')\n")


def _warnings(stderr: bytes):
    return [ln for ln in stderr.decode().splitlines() if ln.startswith("pyalloc:")]


@pytest.mark.parametrize("var,value", [
    ("PYALLOC_POLICY", "bestest"), ("PYALLOC_TCACHE", "maybe"), ("PYALLOC_CHECK", "loud"),
    ("PYALLOC_MMAP_THRESHOLD", "lots"), ("PYALLOC_ARENAS", "99"),
])
def test_unknown_value_warns_once_and_falls_back(libpyalloc, var, value):
    res = run(["sh", "-c", "echo hello; ls / >/dev/null"], config_env(None, None, **{var: value}))
    assert res.returncode == 0
    assert res.stdout == b"hello\n"
    lines = _warnings(res.stderr)
    # sh and ls each load the library once: one line per process.
    assert len(lines) == 2, res.stderr
    assert all(var in ln and value in ln and "using" in ln for ln in lines)


def test_policy_and_tcache_are_reported(libpyalloc):
    for policy in ("best", "worst", "first", "fifo"):
        for tcache in (True, False):
            res = run(["true"], config_env(policy, tcache, PYALLOC_STATS="1"))
            text = res.stderr.decode()
            assert f"policy {policy}, thread caches {'on' if tcache else 'off'}" in text, text


def test_stats_text(libpyalloc, python_exe):
    res = run([python_exe, "-c", "x = [bytes(i) for i in range(3000)]; print('ok')"],
              config_env(None, None, PYALLOC_STATS="1", PYTHONMALLOC="malloc"))
    assert res.returncode == 0 and res.stdout == b"ok\n"
    text = res.stderr.decode()
    for word in ("requests: malloc", "peak live", "peak mapped", "size classes", "pool 0"):
        assert word in text, text


def test_stats_json_per_process(libpyalloc, python_exe, tmp_path):
    path = tmp_path / "stats-%p.json"
    res = run([python_exe, "-c", PY_FORK],
              config_env("first", False, PYALLOC_STATS=str(path), PYTHONMALLOC="malloc"))
    assert res.returncode == 0, res.stderr.decode()
    files = sorted(tmp_path.glob("stats-*.json"))
    # The child leaves with os._exit (no exit handlers, no statistics): only the parent.
    assert len(files) == 1
    d = json.loads(files[0].read_text())
    assert d["pid"] == int(files[0].stem.split("-")[1])
    assert d["policy"] == "first" and d["tcache"] is False
    assert d["requests"]["malloc"] > 1000 and d["requests"]["free"] > 100
    assert d["peak_live_bytes"] >= d["live_bytes"] > 0
    assert d["peak_mapped_bytes"] >= d["peak_live_bytes"]
    assert d["peak_rss_bytes"] > 0
    assert sum(c["requests"] for c in d["size_classes"]) > 1000
    assert d["pools"] and 0.0 <= d["fragmentation"] <= 1.0
    assert "pyalloc" not in res.stderr.decode()


def test_stats_json_children(libpyalloc, tmp_path):
    path = tmp_path / "s-%p.json"
    res = run(["sh", "-c", "/bin/true; ls / > /dev/null; echo x | cat"],
              config_env(None, None, PYALLOC_STATS=str(path)))
    assert res.returncode == 0
    files = list(tmp_path.glob("s-*.json"))
    # true, ls and cat; a shell that leaves with _exit (dash) writes none.
    assert len(files) >= 3
    for f in files:
        json.loads(f.read_text())


def test_stats_json_on_stderr(libpyalloc):
    res = run(["true"], config_env(None, None, PYALLOC_STATS="json"))
    d = json.loads(res.stderr.decode())
    assert d["pyalloc"] == 1


def test_stats_unwritable_path_falls_back(libpyalloc):
    res = run(["true"], config_env(None, None, PYALLOC_STATS="/nonexistent/dir/x.json"))
    assert res.returncode == 0
    text = res.stderr.decode()
    assert "cannot write PYALLOC_STATS file /nonexistent/dir/x.json" in text
    assert "requests: malloc" in text


def test_trace_records_and_replays(libpyalloc, python_exe, tmp_path):
    from pyalloc import trace

    path = tmp_path / "t.bin"
    code = ("import threading\n"
            "def work():\n"
            "    d = {}\n"
            "    for i in range(3000): d[i] = str(i) * (i % 7)\n"
            "ts = [threading.Thread(target=work) for _ in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "b = bytearray()\n"
            "for i in range(2000): b += b'x' * 100\n")
    res = run([python_exe, "-c", code],
              config_env(None, None, PYALLOC_TRACE=str(path), PYTHONMALLOC="malloc"))
    assert res.returncode == 0, res.stderr.decode()
    info = trace.summary(str(path))
    assert info["threads"] >= 4
    assert info["malloc"] > 10000 and info["free"] > 5000 and info["realloc"] > 100
    assert info["unmatched"] == 0
    results = trace.replay_all(str(path))
    assert [r.policy for r in results] == ["best", "worst", "first", "fifo"]
    for r in results:
        assert r.peak_live == info["peak_live"]
        assert r.final_live == info["final_live"]
        assert r.failed == 0 and r.unmatched == 0
        assert r.peak_heap >= r.peak_live * 0.99 and r.ratio >= 0.99
        assert r.seconds > 0
    # the time series of a replay: evenly spaced, consistent with the totals
    result, points = trace.series(str(path), "first", points=50)
    assert 40 <= len(points) <= 52
    ops = [p["ops"] for p in points]
    assert ops == sorted(ops) and len(set(ops)) == len(ops)
    assert ops[-1] <= result.allocs + result.frees + result.reallocs
    for p in points:
        assert p["live"] <= result.peak_live
        assert p["used"] >= p["live"]  # usable sizes cover the requests
        assert p["used"] + p["free"] <= p["top"] <= result.peak_heap + 64


def test_trace_fork_children_get_their_own_file(libpyalloc, python_exe, tmp_path):
    from pyalloc import trace

    res = run([python_exe, "-c", PY_FORK],
              config_env(None, None, PYALLOC_TRACE=str(tmp_path / "t-%p.bin"),
                         PYTHONMALLOC="malloc"))
    assert res.returncode == 0
    files = list(tmp_path.glob("t-*.bin"))
    assert len(files) == 2
    for f in files:
        trace.summary(str(f))  # both decode


def test_trace_without_pid_stops_in_children(libpyalloc, python_exe, tmp_path):
    from pyalloc import trace

    path = tmp_path / "t.bin"
    res = run([python_exe, "-c", PY_FORK],
              config_env(None, None, PYALLOC_TRACE=str(path), PYTHONMALLOC="malloc"))
    assert res.returncode == 0
    assert trace.summary(str(path))["unmatched"] == 0


def test_trace_rejects_garbage(tmp_path):
    from pyalloc import trace

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a trace at all, certainly not" * 3)
    with pytest.raises(trace.TraceError):
        trace.replay(str(bad))
    with pytest.raises(trace.TraceError):
        trace.summary(str(bad))
    with pytest.raises(FileNotFoundError):
        trace.replay(str(tmp_path / "missing.bin"))
    with pytest.raises(ValueError):
        trace.replay(str(bad), "bogus")


INVALID_FREE = r"""
#include <stdlib.h>
int main(void) { char buf[32]; char *p = malloc(10); free(p + 1); free(buf); free(p); return 0; }
"""


@pytest.fixture(scope="module")
def invalid_free_exe(cc, tmp_path_factory):
    d = tmp_path_factory.mktemp("invalid")
    src = d / "invalid.c"
    src.write_text(INVALID_FREE)
    exe = d / "invalid"
    subprocess.run([cc, "-O0", "-fno-builtin", "-w", "-o", str(exe), str(src)], check=True)
    return str(exe)


def test_invalid_free_warns(libpyalloc, invalid_free_exe):
    res = run([invalid_free_exe], config_env(None, None, PYALLOC_CHECK="warn"))
    assert res.returncode == 0
    assert len(_warnings(res.stderr)) == 2


def test_invalid_free_quiet(libpyalloc, invalid_free_exe):
    res = run([invalid_free_exe], config_env(None, None, PYALLOC_CHECK="quiet"))
    assert res.returncode == 0 and res.stderr == b""


@pytest.mark.parametrize("check", [None, "abort"], ids=["default", "abort"])
def test_invalid_free_abort(libpyalloc, invalid_free_exe, check):
    env = config_env(None, None) if check is None else config_env(None, None, PYALLOC_CHECK=check)
    res = run([invalid_free_exe], env)
    assert res.returncode == -signal.SIGABRT
    line = res.stderr.decode().strip()
    assert line.startswith("pyalloc: free(): invalid pointer 0x"), line
    assert line.endswith("aborting (PYALLOC_CHECK=warn to ignore)") and "\n" not in line


def test_mmap_threshold_setting(libpyalloc, tmp_path):
    for value in ("0", "64k", "2m"):
        res = run(["echo", "ok"],
                  config_env(None, None, PYALLOC_MMAP_THRESHOLD=value, PYALLOC_STATS="json"))
        assert res.returncode == 0 and res.stdout == b"ok\n"
        d = json.loads(res.stderr.decode())
        assert d["mmap_threshold"] == {"0": 0, "64k": 65536, "2m": 2 << 20}[value]


def test_library_path_and_env_for(libpyalloc, monkeypatch):
    from pyalloc import preload

    assert os.path.isabs(libpyalloc) and os.path.isfile(libpyalloc)
    env = preload.env_for(policy="fifo", stats=True, tcache=False, trace="/tmp/x",
                          base={"LD_PRELOAD": "/other.so", "PYALLOC_POLICY": "best"})
    assert env["LD_PRELOAD"] == f"{libpyalloc} /other.so"
    assert env["PYALLOC_POLICY"] == "fifo" and env["PYALLOC_STATS"] == "1"
    assert env["PYALLOC_TCACHE"] == "0" and env["PYALLOC_TRACE"] == "/tmp/x"
    env = preload.env_for(base={"PYALLOC_POLICY": "best", "PYALLOC_TCACHE": "0"})
    assert "PYALLOC_POLICY" not in env and "PYALLOC_TCACHE" not in env
    assert preload.env_for(stats="/x-%p.json", base={})["PYALLOC_STATS"] == "/x-%p.json"
    with pytest.raises(ValueError):
        preload.env_for(policy="greedy")
    # Missing library: a clear error.
    monkeypatch.setattr(preload, "LIBRARY_NAME", "libnothere.so")
    with pytest.raises(preload.LibraryNotFound, match="build_ext"):
        preload.library_path()


def test_python_is_unaffected_by_a_failed_preload_path():
    """Sanity: a program run with a plain environment does not see the library."""
    res = run([sys.executable, "-c", "import os; print(os.environ.get('LD_PRELOAD', ''))"],
              plain_env())
    assert b"pyalloc" not in res.stdout


DOUBLE_FREE_MEDIUM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *a = malloc(20000);
    memset(a, 1, 20000);
    free(a);
    free(a);                      /* a double free of a block kept in the medium cache */
    char *b = malloc(20000), *c = malloc(20000);
    puts(b == c ? "same" : "distinct");
    return 0;
}
"""


@pytest.mark.parametrize("tcache", [True, False], ids=["tcache", "no-tcache"])
def test_double_free_of_a_medium_block_is_caught(libpyalloc, cc, tmp_path, tcache):
    src = tmp_path / "df.c"
    src.write_text(DOUBLE_FREE_MEDIUM)
    exe = tmp_path / "df"
    subprocess.run([cc, "-O0", "-fno-builtin", "-w", "-o", str(exe), str(src)], check=True)
    res = run([str(exe)], config_env("best", tcache, PYALLOC_CHECK="warn"))
    assert res.returncode == 0
    assert res.stdout.strip() == b"distinct"  # the block was not handed out twice
    assert len(_warnings(res.stderr)) == 1
    res = run([str(exe)], config_env("best", tcache))
    assert res.returncode == -signal.SIGABRT and b"double free" in res.stderr
