"""Lifecycle through the CLI and the API: detach, ps, exec, logs, stop, kill, rm, exit codes."""

from __future__ import annotations

import json
import signal
import time

import pytest

import pycontain
from pycontain import ContainerError

TRAP = 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.05; done'


def test_detach_ps_exec_logs_stop_rm(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "-d", "--name", "web", "--rootfs", busybox_rootfs, "--",
               "/bin/sh", "-c", "echo hello > /tmp/f; " + TRAP, check=0)
    cid = p.stdout.decode().strip()
    assert len(cid) == 32
    rt.wait_state("web", lambda s: s["status"] == "running")
    ps = rt.cli("ps", check=0).stdout.decode()
    assert "web" in ps and "running" in ps
    listing = json.loads(rt.cli("ps", "--json", check=0).stdout)
    assert [c["name"] for c in listing] == ["web"] and listing[0]["id"] == cid
    # exec joins the same pid namespace and filesystem
    out = rt.cli("exec", "web", "--", "/bin/sh", "-c", "cat /tmp/f; cat /proc/1/comm; ps -o comm",
                 check=0).stdout.decode()
    assert out.startswith("hello\npycontain-init\n")
    assert "sh" in out.split("\n", 2)[2]
    assert rt.cli("exec", "web", "--", "/bin/sh", "-c", "exit 7").returncode == 7
    # exec by id prefix works too
    assert rt.cli("exec", cid[:8], "--", "/bin/true").returncode == 0
    deadline = time.monotonic() + 5
    while b"ready" not in rt.cli("logs", "web", check=0).stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    rt.cli("stop", "web", check=0)
    info = rt.inspect("web")
    assert info["state"] == "stopped" and info["exit_code"] == 3  # graceful: trap ran
    assert b"got-term" in rt.cli("logs", "web", check=0).stdout
    assert "web" not in rt.cli("ps", check=0).stdout.decode()
    assert "exited (3)" in rt.cli("ps", "-a", check=0).stdout.decode()
    rt.cli("rm", "web", check=0)
    assert rt.cli("inspect", "web").returncode == 125


def test_stop_forced_after_timeout(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "stubborn", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c",
           'trap "" TERM; while :; do sleep 0.05; done', check=0)
    t = time.monotonic()
    rt.cli("stop", "-t", "0.5", "stubborn", check=0)
    assert time.monotonic() - t < 5
    info = rt.inspect("stubborn")
    assert info["state"] == "stopped" and info["exit_code"] == 137
    rt.cli("rm", "stubborn", check=0)


def test_kill_signals_and_rm_running(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "k", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c",
           'trap "echo usr1" USR1; while :; do sleep 0.05; done', check=0)
    rt.cli("kill", "k", "USR1", check=0)
    deadline = time.monotonic() + 5
    while b"usr1" not in rt.cli("logs", "k", check=0).stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"usr1" in rt.cli("logs", "k", check=0).stdout  # forwarded by the init
    p = rt.cli("rm", "k")
    assert p.returncode == 125 and b"running" in p.stderr
    rt.cli("kill", "k", check=0)  # default SIGKILL
    rt.wait_state("k", lambda s: s["status"] == "stopped")
    assert rt.inspect("k")["exit_code"] == 137
    assert rt.cli("kill", "k").returncode == 125  # not running any more
    rt.cli("rm", "k", check=0)


def test_rm_force_running(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "f", "--rootfs", busybox_rootfs, "--", "/bin/sleep", "60",
           check=0)
    rt.cli("rm", "-f", "f", check=0)
    assert rt.cli("ps", "-a", "-q", check=0).stdout == b""


def test_rm_goes_on_past_a_failure(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    """`rm -f a ghost b` removes a and b and reports ghost, as docker does."""
    for n in ("a", "b"):
        rt.cli("run", "-d", "--name", n, "--rootfs", busybox_rootfs, "--", "/bin/sleep", "60",
               check=0)
    p = rt.cli("rm", "-f", "a", "ghost", "b")
    assert p.returncode == 125
    assert p.stdout.decode().split() == ["a", "b"]
    err = p.stderr.decode()
    assert err.count("\n") == 1 and "no such container: ghost" in err, err
    assert rt.cli("ps", "-a", "-q", check=0).stdout == b""


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 0", 0), ("exit 42", 42), ("kill -KILL $$", 137), ("kill -TERM $$", 143),
     ("kill -SEGV $$", 139)],
)
def test_exit_codes_propagate(rt, busybox_rootfs, script, code) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "--rm", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c", script)
    assert p.returncode == code, p.stderr
    r = pycontain.run(["/bin/sh", "-c", script], rootfs=busybox_rootfs, **rt.kw())
    assert r.exit_code == code


def test_no_init_exit_code(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "--rm", "--no-init", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c",
               "echo $$; exit 5")
    assert p.returncode == 5 and p.stdout == b"1\n"


def test_zombies_are_reaped(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["/bin/sh", "-c", "while :; do sleep 0.05; done"],
                        rootfs=busybox_rootfs, **rt.kw())
    try:
        # orphans: the subshell exits at once, its children are re-parented to PID 1
        for _ in range(5):
            assert c.exec(["/bin/sh", "-c", "(sleep 0.01 &) ; (true &)"]).exit_code == 0
        time.sleep(0.3)
        r = c.exec(["/bin/sh", "-c", "cat /proc/[0-9]*/stat"], capture_output=True)
        states = [line.rsplit(")", 1)[1].split()[0] for line in r.stdout.decode().splitlines()]
        assert "Z" not in states, r.stdout
    finally:
        c.remove(force=True)


def test_foreground_stdio_and_stdin(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "--rm", "--rootfs", busybox_rootfs, "--", "/bin/cat", input=b"piped\n")
    assert p.returncode == 0 and p.stdout == b"piped\n"
    p = rt.cli("run", "--rm", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c",
               "echo out; echo err >&2")
    assert (p.stdout, p.stderr) == (b"out\n", b"err\n")


def test_foreground_keeps_container_without_rm(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "--name", "kept", "--rootfs", busybox_rootfs, "--", "/bin/true", check=0)
    info = rt.inspect("kept")
    assert info["state"] == "stopped" and info["exit_code"] == 0
    assert rt.cli("run", "--name", "kept", "--rootfs", busybox_rootfs, "--", "/bin/true"
                  ).returncode == 125  # name in use
    rt.cli("rm", "kept", check=0)


def test_api_container_lifecycle(rt) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["python3", "-c", "import time; print('up', flush=True); time.sleep(30)"],
                        name="apic", memory="64M", pids=50, **rt.kw())
    assert c.status == "running" and c.pid > 0
    code = "import os; print(os.getpid() < 100, open('/proc/1/comm').read())"
    r = c.exec(["python3", "-c", code], capture_output=True)
    assert r.exit_code == 0 and r.stdout.decode().startswith("True pycontain-init")
    again = pycontain.get("apic", root=rt.root)
    assert again.id == c.id
    assert [x.name for x in pycontain.containers(root=rt.root)] == ["apic"]
    info = c.inspect()
    assert info["limits"]["memory"] == 64 << 20 and info["limits"]["pids"] == 50
    assert info["stats"]["pids_current"] >= 2
    c.kill(signal.SIGTERM)
    res = c.wait(timeout=10)
    assert res.exit_code == 143
    assert b"up" in c.logs()
    c.remove()
    with pytest.raises(ContainerError):
        pycontain.get("apic", root=rt.root)


def test_api_timeout_kills(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    t = time.monotonic()
    r = pycontain.run(["/bin/sleep", "30"], rootfs=busybox_rootfs, timeout=0.3, **rt.kw())
    assert r.exit_code == 137 and time.monotonic() - t < 5
