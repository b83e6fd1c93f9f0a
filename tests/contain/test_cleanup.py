"""Nothing is left behind, even when the CLI or the supervisor is killed with SIGKILL.

The ``rt`` fixture itself checks after each test: no new cgroup under the pycontain subtree, no
mount mentioning the test's roots, no upper dir, no state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import pycontain
from pycontain.runtime.state import alive


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


def test_rm_removes_every_trace(rt) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["sh", "-c", "echo x > /upper-file; sleep 30"], name="t", memory="32M",
                        **rt.kw())
    st = rt.state("t")
    cdir = st["container_dir"]
    cg = c.cgroup()
    assert all(os.path.isdir(d) for d in cg.dirs())
    _wait(lambda: os.path.exists(os.path.join(cdir, "upper", "upper-file")))
    c.remove(force=True)
    assert not os.path.exists(cdir)
    assert not any(os.path.isdir(d) for d in cg.dirs())
    assert not os.path.exists(os.path.join(rt.root, "t"))


def test_sigkill_foreground_cli(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    """A foreground container does not outlive its killed CLI (as a foreground process would
    not); the next command records it as stopped, and it can be removed."""
    cli = rt.popen("run", "--name", "fg", "--rootfs", busybox_rootfs, "--", "/bin/sleep", "60",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    st = rt.wait_state("fg", lambda s: s["status"] == "running")
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    _wait(lambda: not alive(st["pid"], st["pid_start"]), timeout=5)
    ps = rt.cli("ps", "-a", check=0).stdout.decode()
    assert "fg" in ps and "exited" in ps
    assert rt.state("fg")["status"] == "stopped"
    rt.cli("rm", "fg", check=0)


def test_sigkill_supervisor(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "sv", "--rootfs", busybox_rootfs, "--", "/bin/sleep", "60",
           check=0)
    st = rt.state("sv")
    assert st["monitor_pid"] != st["pid"]
    os.kill(st["monitor_pid"], signal.SIGKILL)
    _wait(lambda: not alive(st["monitor_pid"], st["monitor_start"]))
    assert "running" in rt.cli("ps", check=0).stdout.decode()
    info = rt.inspect("sv")
    assert info["state"] == "running" and info["pid"] == st["pid"]
    # the workload dies with nobody watching: ps must notice
    os.kill(st["pid"], signal.SIGKILL)
    _wait(lambda: not alive(st["pid"], st["pid_start"]))
    assert "running" not in rt.cli("ps", "-a", check=0).stdout.decode()
    assert rt.inspect("sv")["state"] == "stopped"
    rt.cli("rm", "sv", check=0)


def test_sigkill_supervisor_then_rm_force(rt) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "sv2", "--memory", "64M", "--", "sleep", "60", check=0)
    st = rt.state("sv2")
    os.kill(st["monitor_pid"], signal.SIGKILL)
    rt.cli("rm", "-f", "sv2", check=0)
    assert not alive(st["pid"], st["pid_start"])


def test_sigkill_both_cli_and_supervisor_mid_run(rt) -> None:  # type: ignore[no-untyped-def]
    cli = rt.popen("run", "--name", "both", "--", "sh", "-c", "sleep 60 & sleep 60",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    st = rt.wait_state("both", lambda s: s["status"] == "running")
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    rt.cli("run", "-d", "--name", "both2", "--", "sleep", "60", check=0)
    os.kill(rt.state("both2")["monitor_pid"], signal.SIGKILL)
    _wait(lambda: not alive(st["pid"], st["pid_start"]), timeout=5)  # died with its CLI
    assert rt.cli("ps", "-q", check=0).stdout.split() == [b"both2"]  # detached: lives on
    rt.cli("rm", "-f", "both", "both2", check=0)


def test_stop_without_supervisor_records_exit(rt, busybox_rootfs) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "ns", "--rootfs", busybox_rootfs, "--", "/bin/sh", "-c",
           'trap "" TERM; while :; do sleep 0.05; done', check=0)
    st = rt.state("ns")
    os.kill(st["monitor_pid"], signal.SIGKILL)
    rt.cli("stop", "-t", "0.2", "ns", check=0)
    info = rt.inspect("ns")
    assert info["state"] == "stopped" and info["exit_code"] == 137
    assert not any(os.path.isdir(d) for d in pycontain.get("ns", root=rt.root).cgroup().dirs())
    rt.cli("rm", "ns", check=0)


@pytest.mark.parametrize("image_args", [(), ("--memory", "16M", "--pids", "10")])
def test_run_rm_leaves_nothing(rt, image_args) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "--rm", *image_args, "--", "sh", "-c", "touch /x; exit 0", check=0)


MARK = b"/bin/sleep\x0037.25\x00"  # the workload's command line, to find its processes


def _survivors() -> list:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read() == MARK:
                        out.append(int(d))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("remove", [True, False], ids=["rm", "keep"])
def test_sigkill_cli_at_many_points_of_its_start(rt, busybox_rootfs, remove) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of a foreground `pycontain run [--rm]` at 25 moments of its first 200 ms: no
    container outlives its CLI; every cgroup and upper dir left has a record; every record
    is listed and removable; with --rm the next command removes everything."""
    from tests.contain.conftest import cgroup_dirs

    before = cgroup_dirs()
    for i in range(25):
        args = ["run", "--name", f"k{i}", *(["--rm"] if remove else []), "--memory", "64M",
                "--rootfs", busybox_rootfs, "--", "/bin/sleep", "37.25"]
        cli = rt.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(i * 0.008)
        cli.kill()
        cli.wait()
    _wait(lambda: not _survivors(), timeout=10)
    # What exists now has a record (looked at before any command could clean up).
    records = {}
    for name in os.listdir(rt.root):
        path = os.path.join(rt.root, name, "state.json")
        if not name.startswith(".") and os.path.exists(path):
            with open(path) as f:
                records[name] = json.load(f)
    ids = {s["id"] for s in records.values()}
    for d in cgroup_dirs() - before:
        assert os.path.basename(d) in ids, f"cgroup {d} has no record"
    cdir = os.path.join(rt.storage, "containers")
    for d in os.listdir(cdir) if os.path.isdir(cdir) else []:
        assert d in ids, f"upper dir {d} has no record"
    # The next command cleans up after the dead CLIs; what is left is listed and removable.
    listed = rt.cli("ps", "-a", "-q", check=0).stdout.decode().split()
    if remove:
        assert listed == []
    else:
        assert set(listed) <= set(records) and listed
        for name in listed:
            assert rt.state(name)["status"] == "stopped"
        rt.cli("rm", *listed, check=0)
    assert rt.leftovers() == []
    assert cgroup_dirs() - before == set()
