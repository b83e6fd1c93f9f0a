"""Runtime errors: one clear line on stderr, exit code 125, nothing left behind."""

from __future__ import annotations

import os

import pytest

import pycontain
from pycontain.errors import ContainerError


def one_line_125(p) -> str:  # type: ignore[no-untyped-def]
    err = p.stderr.decode()
    assert p.returncode == 125, (p.returncode, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pycontain: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--memory", "12XB", "--", "true"], "12XB"),
        (["run", "--memory", "-1M", "--", "true"], "memory"),
        (["run", "--pids", "many", "--", "true"], "pids"),
        (["run", "--cpus", "0", "--", "true"], "cpus"),
        (["run", "--cpus", "999", "--", "true"], "this machine has"),
        (["run", "--memory", "1", "--", "true"], "the minimum is 6MiB"),
        (["run", "--memory", "5M", "--", "true"], "the minimum is 6MiB"),
        (["run", "--storage-opt", "quota=1G", "--", "true"], "only size=SIZE"),
        (["run", "--storage-opt", "size=1G", "--rootfs", "/", "--", "true"], "needs an image"),
        (["run", "--image", "nope", "--", "true"], "unknown image 'nope'"),
        (["run", "--rootfs", "/does/not/exist", "--", "true"], "rootfs"),
        (["run", "--net", "bridge", "--", "true"], "no such network: bridge"),
        (["run", "-v", "/does/not/exist:/x", "--", "true"], "volume"),
        (["run", "--preload", "bogus", "--", "true"], "policy"),
        (["run", "--name", "bad/name", "--", "true"], "name"),
        (["run"], "no command"),
        (["run", "--"], "no command"),
        (["exec", "ghost", "--", "true"], "no such container"),
        (["inspect", "ghost"], "no such container"),
        (["rm", "ghost"], "no such container"),
        (["stop", "ghost"], "no such container"),
        (["kill", "ghost"], "no such container"),
        (["logs", "ghost"], "no such container"),
        (["image", "rm", "host"], "cannot be removed"),
        (["image", "import", "/nonexistent"], "no such file or directory"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_exit_125_one_line(rt, args, needle) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli(*args)
    line = one_line_125(p)
    assert needle in line


def test_name_in_use(rt) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "dup", "--", "sleep", "30", check=0)
    try:
        line = one_line_125(rt.cli("run", "--name", "dup", "--", "true"))
        assert "already in use" in line
        assert len(os.listdir(os.path.join(rt.storage, "containers"))) == 1
    finally:
        rt.cli("rm", "-f", "dup", check=0)


def test_exec_failure_is_127(rt) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "--rm", "--", "no-such-program-anywhere")
    assert p.returncode == 127
    assert b"executable file not found" in p.stderr
    p = rt.cli("run", "--rm", "-w", "/no/such/dir", "--", "true")
    assert p.returncode == 125 and b"working directory" in p.stderr


def test_preload_missing_library(rt, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys
    import types

    fake = types.ModuleType("pyalloc.preload")
    fake.library_path = lambda: "/nonexistent/libpyalloc.so"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyalloc.preload", fake)
    monkeypatch.setitem(sys.modules, "pyalloc", types.ModuleType("pyalloc"))
    sys.modules["pyalloc"].preload = fake  # type: ignore[attr-defined]
    with pytest.raises(ContainerError, match=r"libpyalloc\.so"):
        pycontain.run(["true"], preload="best", **rt.kw())
