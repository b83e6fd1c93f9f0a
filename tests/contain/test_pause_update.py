"""pause / unpause (cgroup freezer) and update (live limits), API and CLI, on the real v1 tree."""

from __future__ import annotations

import os
import time

import pytest

import pycontain
from pycontain.errors import ContainerError

# Writes an ever-growing counter to /tmp/n every 20 ms.
COUNTER = ("i=0; while true; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; "
           "sleep 0.02; done")


def _counter(c) -> int:  # type: ignore[no-untyped-def]
    """The counter, read from the host side (the container's overlay upper dir)."""
    path = os.path.join(c.inspect()["paths"]["container_dir"], "upper", "tmp", "n")
    with open(path) as f:
        return int(f.read().strip() or 0)


def _cg_file(c, controller: str, name: str) -> str:  # type: ignore[no-untyped-def]
    paths = c.cgroup().to_dict()["paths"]
    with open(os.path.join(paths[controller], name)) as f:
        return f.read().strip()


def test_pause_freezes_and_resume_thaws(rt) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["sh", "-c", COUNTER], **rt.kw())
    try:
        time.sleep(0.3)
        c.pause()
        assert c.status == "paused"
        info = c.inspect()
        assert info["paused"] is True and info["state"] == "paused" and info["pid"] == c.pid
        assert _cg_file(c, "freezer", "freezer.state") == "FROZEN"
        frozen_at = _counter(c)
        time.sleep(0.3)
        assert _counter(c) == frozen_at  # it stands still
        with pytest.raises(ContainerError, match="paused"):
            c.exec(["true"])
        c.pause()  # pausing a paused container is a no-op
        c.resume()
        assert c.status == "running"
        time.sleep(0.3)
        assert _counter(c) > frozen_at  # and moves again
        with pytest.raises(ContainerError, match="not paused"):
            c.resume()
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("how", ["stop", "kill", "remove"])
def test_paused_container_can_be_stopped(rt, how) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["sleep", "60"], **rt.kw())
    c.pause()
    t0 = time.monotonic()
    if how == "stop":
        c.stop(timeout=10)
    elif how == "kill":
        c.kill("TERM")
        c.wait(timeout=10)
    else:
        c.remove(force=True)
    assert time.monotonic() - t0 < 5  # not the 10 s stop timeout: the signal got through
    if how != "remove":
        assert c.status == "stopped"
        c.remove()


def test_update_changes_live_limits(rt) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["sleep", "60"], memory="64M", pids=50, **rt.kw())
    try:
        # Raising memory above the old memory+swap limit needs memsw written first.
        c.update(memory="256M", pids=80, cpus=0.5)
        assert int(_cg_file(c, "memory", "memory.limit_in_bytes")) == 256 << 20
        memsw = os.path.join(c.cgroup().to_dict()["paths"]["memory"],
                             "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            assert int(open(memsw).read()) == 256 << 20  # still no swap
        assert _cg_file(c, "pids", "pids.max") == "80"
        assert _cg_file(c, "cpu", "cpu.cfs_quota_us") == "50000"
        limits = c.inspect()["limits"]
        assert limits["memory"] == 256 << 20 and limits["pids"] == 80 and limits["cpus"] == 0.5
        # And down again, then unlimited.
        c.update(memory="32M")
        assert int(_cg_file(c, "memory", "memory.limit_in_bytes")) == 32 << 20
        c.update(pids=-1, cpus=0)
        assert _cg_file(c, "pids", "pids.max") == "max"
        assert _cg_file(c, "cpu", "cpu.cfs_quota_us") == "-1"
        assert c.inspect()["limits"]["pids"] is None
        # The lowered memory limit is enforced.
        r = c.exec(["python3", "-c", "b = bytearray(64 << 20)"])
        assert r.exit_code == 137
    finally:
        c.remove(force=True)


def test_update_errors(rt) -> None:  # type: ignore[no-untyped-def]
    c = pycontain.start(["sleep", "60"], **rt.kw())
    try:
        for kw, msg in (({"memory": "lots"}, "invalid memory"), ({"pids": "x"}, "invalid pids"),
                        ({"cpus": "-2"}, "cpus"), ({}, "nothing to change"),
                        ({"cpuset_cpus": "0"}, "cpuset")):
            with pytest.raises(ContainerError, match=msg):
                c.update(**kw)
    finally:
        c.remove(force=True)
    c2 = pycontain.start(["true"], **rt.kw())
    try:
        c2.wait(timeout=10)
        with pytest.raises(ContainerError, match="not running"):
            c2.update(memory="64M")
        with pytest.raises(ContainerError, match="not running"):
            c2.pause()
    finally:
        c2.remove(force=True)


def test_cli_pause_unpause_update(rt) -> None:  # type: ignore[no-untyped-def]
    rt.cli("run", "-d", "--name", "web", "--memory", "64M", "--", "sleep", "60", check=0)
    try:
        assert rt.cli("pause", "web", check=0).stdout.decode().strip() == "web"
        ps = rt.cli("ps", check=0).stdout.decode()
        assert "paused" in ps
        p = rt.cli("exec", "web", "--", "true")
        assert p.returncode == 125 and "paused" in p.stderr.decode()
        rt.cli("unpause", "web", check=0)
        assert rt.inspect("web")["state"] == "running"
        p = rt.cli("unpause", "web")
        assert p.returncode == 125
        assert p.stderr.decode().count("\n") == 1 and "not paused" in p.stderr.decode()
        rt.cli("update", "--memory", "128M", "--pids", "40", "web", check=0)
        info = rt.inspect("web")
        assert info["limits"]["memory"] == 128 << 20 and info["limits"]["pids"] == 40
        p = rt.cli("update", "--memory", "12Q", "web")
        assert p.returncode == 125 and "invalid memory" in p.stderr.decode()
        p = rt.cli("pause", "nosuch")
        assert p.returncode != 0 and p.stderr.decode().count("\n") == 1
    finally:
        rt.cli("rm", "-f", "web")


def test_cli_stats(rt) -> None:  # type: ignore[no-untyped-def]
    import json

    rt.cli("run", "-d", "--name", "busy", "--cpus", "0.5", "--memory", "64M", "--",
           "python3", "-c", "while True: pass", check=0)
    rt.cli("run", "-d", "--name", "idle", "--", "sleep", "60", check=0)
    try:
        out = rt.cli("stats", "--no-stream", "--json", "-i", "0.5", check=0).stdout
        rows = {r["name"]: r for r in json.loads(out)}
        assert set(rows) == {"busy", "idle"}
        assert 25 <= rows["busy"]["cpu_percent"] <= 60  # capped at half a CPU
        assert rows["idle"]["cpu_percent"] < 10
        assert rows["busy"]["memory_limit"] == 64 << 20 and rows["busy"]["memory"] > 0
        assert rows["busy"]["pids"] >= 2  # init and python
        table = rt.cli("stats", "--no-stream", "-i", "0.2", "idle", check=0).stdout.decode()
        lines = table.strip().splitlines()
        assert lines[0].split()[:3] == ["NAME", "ID", "CPU"] and lines[1].startswith("idle ")
        rt.cli("stop", "-t", "1", "idle", check=0)
        p = rt.cli("stats", "--no-stream", "idle")
        assert p.returncode == 125 and b"not running" in p.stderr
        p = rt.cli("stats", "--no-stream", "-i", "0", "busy")
        assert p.returncode == 125 and b"interval" in p.stderr
    finally:
        rt.cli("rm", "-f", "busy", "idle")


def test_cli_stats_streams_until_stopped(rt) -> None:  # type: ignore[no-untyped-def]
    import json
    import signal
    import subprocess

    rt.cli("run", "-d", "--name", "s1", "--", "sleep", "60", check=0)
    p = rt.popen("stats", "--json", "-i", "0.1", "s1", stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        samples = [json.loads(p.stdout.readline()) for _ in range(3)]  # one line per sample
        assert all(s[0]["name"] == "s1" and s[0]["status"] == "running" for s in samples)
        rt.cli("pause", "s1", check=0)
        deadline = time.monotonic() + 5
        while json.loads(p.stdout.readline())[0]["status"] != "paused":
            assert time.monotonic() < deadline
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 130
        rt.cli("rm", "-f", "s1")
