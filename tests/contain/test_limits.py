"""Resource limits: memory (OOM kill, swap off), pids, CPU quota."""

from __future__ import annotations

import os

import pycontain

HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"
FORKS = """
import os, sys, time
n = 0
kids = []
while n < 200:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    kids.append(pid)
    n += 1
print(n)
sys.stdout.flush()
for k in kids:
    os.kill(k, 9)
"""
BUSY = "import time\nt = time.time()\nwhile time.time() - t < {secs}:\n    pass\n"


def test_oom_kill_cli(rt) -> None:  # type: ignore[no-untyped-def]
    p = rt.cli("run", "--name", "hog", "--memory", "48M", "--", "python3", "-c", HOG)
    assert p.returncode == 137, p.stderr
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "OOM" in lines[0] and "hog" in lines[0]
    info = rt.inspect("hog")
    assert info["oom_killed"] is True
    assert info["exit_code"] == 137 and info["state"] == "stopped"
    assert info["memory"]["limit"] == 48 << 20
    assert 40 << 20 <= info["memory"]["peak"] <= 48 << 20
    rt.cli("rm", "hog", check=0)


def test_oom_kill_api_and_swap_off(rt) -> None:  # type: ignore[no-untyped-def]
    r = pycontain.run(["python3", "-c", HOG], memory="32M", **rt.kw())
    assert r.exit_code == 137 and r.oom_killed
    assert r.stats["oom_kills"] >= 1
    # swap is off: the memory+swap limit equals the memory limit
    c = pycontain.start(["sleep", "30"], memory="32M", **rt.kw())
    try:
        paths = c.cgroup().to_dict().get("paths", {})
        memsw = os.path.join(paths.get("memory", ""), "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            with open(memsw) as f:
                assert int(f.read()) == 32 << 20
    finally:
        c.remove(force=True)


def test_within_limit_is_fine(rt) -> None:  # type: ignore[no-untyped-def]
    r = pycontain.run(["python3", "-c", "b = bytearray(8 << 20); print(len(b))"],
                      memory="64M", capture_output=True, **rt.kw())
    assert r.exit_code == 0 and not r.oom_killed
    assert r.stdout.strip() == str(8 << 20).encode()
    assert r.stats["memory_peak"] >= 8 << 20


def test_fork_bomb_stops_at_pids_limit(rt) -> None:  # type: ignore[no-untyped-def]
    r = pycontain.run(["python3", "-c", FORKS], pids=20, capture_output=True, **rt.kw())
    assert r.exit_code == 0, r.stderr
    forked = int(r.stdout)
    assert 10 <= forked < 20  # init + python itself count too
    assert r.stats["pids_limit_hits"] >= 1


def test_cpus_halves_cpu_share(rt) -> None:  # type: ignore[no-untyped-def]
    secs = 1.0
    full = pycontain.run(["python3", "-c", BUSY.format(secs=secs)], **rt.kw())
    half = pycontain.run(["python3", "-c", BUSY.format(secs=secs)], cpus=0.5, **rt.kw())
    used_full = full.stats["cpu_usage_usec"] / 1e6
    used_half = half.stats["cpu_usage_usec"] / 1e6
    # The quota is a hard ceiling (0.5 CPU-second per second, 100ms periods); the unlimited run
    # gets whatever the (possibly busy) machine gives one thread.
    assert 0.3 * secs < used_half < 0.6 * secs, used_half
    assert used_full > 0.6 * secs, used_full
    assert used_half / used_full < 0.8, (used_half, used_full)
    assert half.stats["cpu_nr_throttled"] > 0


def test_storage_size_caps_the_writable_layer(rt) -> None:  # type: ignore[no-untyped-def]
    """--storage-opt size=8M: the container's writes stop at 8 MiB (a tmpfs upper of that
    size); without it the same writes succeed."""
    script = "dd if=/dev/zero of=/big bs=1M count=20 2>&1; echo rc=$?"
    r = pycontain.run(["sh", "-c", script], storage_size="8M", capture_output=True, **rt.kw())
    out = r.stdout.decode()
    assert "No space left on device" in out and "rc=0" not in out, out
    r = pycontain.run(["sh", "-c", script], capture_output=True, **rt.kw())
    assert "rc=0" in r.stdout.decode()
    p = rt.cli("run", "--rm", "--storage-opt", "size=8M", "--", "sh", "-c", script, check=0)
    assert b"No space left on device" in p.stdout
