"""The cgroup v2 driver against a fake cgroup2 tree (files named and formatted as the kernel's).

The fake "kernel" populates the interface files when a directory is created, the way cgroupfs
does, and removes them on rmdir; everything else is the driver's own file I/O.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from pycontain.runtime import cgroups
from pycontain.runtime.cgroups import base
from pycontain.runtime.cgroups.v2 import CgroupV2, V2Driver
from pycontain.runtime.spec import Resources

ROOT_FILES = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
    "cgroup.subtree_control": "\n",
    "cgroup.procs": "1\n",
    "cgroup.max.depth": "max\n",
}
CHILD_FILES = {
    "cgroup.controllers": "",
    "cgroup.subtree_control": "\n",
    "cgroup.procs": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
    "cgroup.type": "domain\n",
    "memory.current": "0\n",
    "memory.peak": "0\n",
    "memory.max": "max\n",
    "memory.high": "max\n",
    "memory.swap.max": "max\n",
    "memory.swap.current": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "memory.stat": "anon 0\nfile 0\n",
    "pids.current": "0\n",
    "pids.max": "max\n",
    "pids.events": "max 0\n",
    "cpu.max": "max 100000\n",
    "cpu.weight": "100\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\n"
                "throttled_usec 0\nnr_bursts 0\nburst_usec 0\n",
}


@pytest.fixture
def fake_tree(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in ROOT_FILES.items():
        (root / name).write_text(text)

    def fake_mkdir(path: str) -> None:
        os.mkdir(path)
        parent_ctl = (os.path.join(os.path.dirname(path), "cgroup.subtree_control"))
        with open(parent_ctl) as f:
            enabled = f.read().split()
        for name, text in CHILD_FILES.items():
            ctrl = name.split(".")[0]
            if ctrl != "cgroup" and "+" + ctrl not in enabled and ctrl not in enabled:
                continue  # the kernel shows a controller's files only when it is enabled
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
        with open(os.path.join(path, "cgroup.controllers"), "w") as f:
            f.write(" ".join(c.lstrip("+") for c in enabled) + "\n")

    def fake_rmdir(path: str) -> None:
        with open(os.path.join(path, "cgroup.procs")) as f:
            if f.read().strip():
                raise OSError(16, "Device or resource busy")
        shutil.rmtree(path)

    monkeypatch.setattr(base, "_mkdir", fake_mkdir)
    monkeypatch.setattr(base, "_rmdir", fake_rmdir)
    return root


def read(path) -> str:  # type: ignore[no-untyped-def]
    with open(path) as f:
        return f.read().strip()


def test_detect_prefers_unified_mount_with_controllers(fake_tree) -> None:  # type: ignore[no-untyped-def]
    info = (f"41 31 0:38 / {fake_tree} rw,relatime - cgroup2 cgroup2 rw\n")
    d = cgroups.detect(info)
    assert isinstance(d, V2Driver) and d.root == str(fake_tree)
    (fake_tree / "cgroup.controllers").write_text("cpu io\n")  # no memory: not usable
    with pytest.raises(cgroups.CgroupError):
        cgroups.detect(info)


def test_create_applies_limits(fake_tree) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    res = Resources(memory_limit=64 << 20, pids_limit=50, cpu_quota=50000, cpu_period=100000)
    cg = drv.create("c1", res)
    assert isinstance(cg, CgroupV2)
    path = fake_tree / "pycontain" / "c1"
    assert cg.path == str(path)
    # controllers enabled all the way down
    for d in (fake_tree, fake_tree / "pycontain"):
        assert set(read(d / "cgroup.subtree_control").split()) == {"+memory", "+pids", "+cpu"}
    assert read(path / "memory.max") == str(64 << 20)
    assert read(path / "memory.swap.max") == "0"  # swap off by default
    assert read(path / "pids.max") == "50"
    assert read(path / "cpu.max") == "50000 100000"
    assert cg.procs_files() == [str(path / "cgroup.procs")]
    assert cgroups.from_dict(cg.to_dict()).path == cg.path
    cg.remove(timeout=1)
    assert not path.exists()
    assert (fake_tree / "pycontain").is_dir()  # the shared parent stays


def test_swap_allowance_and_unlimited(fake_tree) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    cg = drv.create("c2", Resources(memory_limit=100, memory_swap=300))
    assert read(fake_tree / "pycontain" / "c2" / "memory.swap.max") == "200"
    cg.remove(timeout=1)
    cg = drv.create("c3", Resources(memory_limit=100, memory_swap=-1))
    assert read(fake_tree / "pycontain" / "c3" / "memory.swap.max") == "max"
    cg.remove(timeout=1)


def test_stats_and_oom_detection(fake_tree) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    cg = drv.create("c4", Resources(memory_limit=1 << 20))
    path = fake_tree / "pycontain" / "c4"
    assert cg.oom_kills() == 0
    (path / "memory.current").write_text("4096\n")
    (path / "memory.peak").write_text("1048576\n")
    (path / "memory.events").write_text(
        "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (path / "pids.current").write_text("3\n")
    (path / "pids.events").write_text("max 2\n")
    (path / "cpu.stat").write_text(
        "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\n"
        "nr_throttled 4\nthrottled_usec 5000\n")
    s = cg.stats()
    assert s["cgroup_version"] == 2
    assert s["memory_current"] == 4096
    assert s["memory_peak"] == 1 << 20
    assert s["memory_limit"] == 1 << 20
    assert s["oom_kills"] == 1 and cg.oom_kills() == 1
    assert s["pids_current"] == 3 and s["pids_limit"] is None and s["pids_limit_hits"] == 2
    assert s["cpu_usage_usec"] == 123456
    assert s["cpu_nr_throttled"] == 4 and s["cpu_throttled_usec"] == 5000
    cg.remove(timeout=1)


def test_kill_all_uses_cgroup_kill_and_remove_retries(fake_tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    cg = drv.create("c5", Resources())
    path = fake_tree / "pycontain" / "c5"
    (path / "cgroup.procs").write_text("4242\n")
    kills = []

    real_write = base._write

    def spy_write(p: str, value: str) -> None:
        real_write(p, value)
        if p.endswith("cgroup.kill"):
            kills.append(value)
            (path / "cgroup.procs").write_text("")  # the "kernel" kills everything

    monkeypatch.setattr(base, "_write", spy_write)
    cg.remove(timeout=2)  # busy first, then kill, then empty
    assert kills == ["1"]
    assert not path.exists()


def test_remove_gives_up_with_clear_error(fake_tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    cg = drv.create("c6", Resources())
    path = fake_tree / "pycontain" / "c6"
    (path / "cgroup.procs").write_text("999999\n")
    monkeypatch.setattr(CgroupV2, "kill_all", lambda self, sig=signal.SIGKILL: None)
    with pytest.raises(cgroups.CgroupError, match="still busy"):
        cg.remove(timeout=0.05)
    (path / "cgroup.procs").write_text("")
    cg.remove(timeout=1)


def test_missing_controller_is_an_error(fake_tree) -> None:  # type: ignore[no-untyped-def]
    (fake_tree / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(cgroups.CgroupError, match="memory"):
        V2Driver(str(fake_tree)).create("c7", Resources(memory_limit=64 << 20))
    with pytest.raises(cgroups.CgroupError, match="pids"):
        V2Driver(str(fake_tree)).create("c7", Resources(pids_limit=10))
    assert not (fake_tree / "pycontain" / "c7").exists()
    V2Driver(str(fake_tree)).create("c8", Resources()).remove()  # nothing asked: fine


def _freezing_kernel(monkeypatch, path, delay_reads: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Fake kernel: writing cgroup.freeze sets "frozen" in cgroup.events, after
    ``delay_reads`` reads of cgroup.events (the kernel freezes asynchronously)."""
    real_write, real_read = base._write, base._read
    pending = {"n": 0, "value": None}

    def write(p: str, value: str) -> None:
        real_write(p, value)
        if p == str(path / "cgroup.freeze"):
            pending["n"], pending["value"] = delay_reads, value.strip()
            if not delay_reads:
                real_write(str(path / "cgroup.events"), f"populated 1\nfrozen {value.strip()}\n")

    def read(p: str) -> str:
        if p == str(path / "cgroup.events") and pending["value"] is not None:
            if pending["n"] == 0:
                real_write(p, f"populated 1\nfrozen {pending['value']}\n")
            pending["n"] -= 1
        return real_read(p)

    monkeypatch.setattr(base, "_write", write)
    monkeypatch.setattr(base, "_read", read)


def test_freeze_and_thaw(fake_tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cg = V2Driver(str(fake_tree)).create("f1", Resources())
    path = fake_tree / "pycontain" / "f1"
    _freezing_kernel(monkeypatch, path, delay_reads=3)
    assert not cg.frozen()
    cg.freeze(timeout=2)
    assert read(path / "cgroup.freeze") == "1" and cg.frozen()
    assert "frozen 1" in read(path / "cgroup.events")
    cg.thaw()
    assert read(path / "cgroup.freeze") == "0" and not cg.frozen()
    cg.remove(timeout=1)


def test_freeze_timeout_thaws_back(fake_tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cg = V2Driver(str(fake_tree)).create("f2", Resources())
    path = fake_tree / "pycontain" / "f2"
    _freezing_kernel(monkeypatch, path, delay_reads=10 ** 9)  # never reports frozen
    with pytest.raises(cgroups.CgroupError, match="did not freeze"):
        cg.freeze(timeout=0.05)
    assert read(path / "cgroup.freeze") == "0"  # left thawed, not half frozen
    cg.remove(timeout=1)


def test_freeze_without_cgroup_freeze_file(fake_tree) -> None:  # type: ignore[no-untyped-def]
    cg = V2Driver(str(fake_tree)).create("f3", Resources())
    os.unlink(fake_tree / "pycontain" / "f3" / "cgroup.freeze")  # a kernel older than 5.2
    with pytest.raises(cgroups.CgroupError, match=r"cgroup\.freeze"):
        cg.freeze()
    assert not cg.frozen()
    cg.remove(timeout=1)


def test_sigkill_thaws_a_frozen_cgroup(fake_tree, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cg = V2Driver(str(fake_tree)).create("f4", Resources())
    path = fake_tree / "pycontain" / "f4"
    _freezing_kernel(monkeypatch, path)
    cg.freeze()
    os.unlink(path / "cgroup.kill")  # force the per-process path of kill_all
    cg.kill_all(signal.SIGTERM)
    assert cg.frozen()  # other signals wait for resume, as with runc
    cg.kill_all(signal.SIGKILL)
    assert not cg.frozen()
    cg.remove(timeout=1)


def test_update_writes_only_what_changes(fake_tree) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(str(fake_tree))
    cg = drv.create("u1", Resources(memory_limit=64 << 20, pids_limit=10, cpu_quota=50000,
                                    cpu_period=100000))
    path = fake_tree / "pycontain" / "u1"
    cg.update(cgroups.Limits(memory=128 << 20))
    assert read(path / "memory.max") == str(128 << 20)
    assert read(path / "memory.swap.max") == "0"  # untouched: still no swap
    assert read(path / "pids.max") == "10" and read(path / "cpu.max") == "50000 100000"
    cg.update(cgroups.Limits(memory_swap=192 << 20, pids=-1, cpu_quota=25000, cpu_shares=1024))
    assert read(path / "memory.swap.max") == str(64 << 20)
    assert read(path / "pids.max") == "max"
    assert read(path / "cpu.max") == "25000 100000"
    assert read(path / "cpu.weight") == "39"
    cg.update(cgroups.Limits(memory=-1, memory_swap=-1, cpu_quota=-1, cpu_period=50000))
    assert read(path / "memory.max") == "max" and read(path / "memory.swap.max") == "max"
    assert read(path / "cpu.max") == "max 50000"
    with pytest.raises(cgroups.CgroupError, match="cpuset"):
        cg.update(cgroups.Limits(cpuset_cpus="0"))  # cpuset not enabled for this cgroup
    cg.remove(timeout=1)


# ---------------------------------------------------------------------------------------------
# The real cgroup2 hierarchy beside v1 (/sys/fs/cgroup/unified: core files, no memory, pids or
# cpu controllers): the driver creates, joins, freezes, kills and removes for real there.

UNIFIED = "/sys/fs/cgroup/unified"


def _unified_ok() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split(" - ")[1].startswith("cgroup2 ") and
                       line.split()[4] == UNIFIED for line in f if " - " in line)
    except OSError:
        return False


needs_unified = pytest.mark.skipif(not _unified_ok(),
                                   reason=f"needs root and a cgroup2 hierarchy at {UNIFIED}")


@pytest.fixture
def unified_parent():  # type: ignore[no-untyped-def]
    parent = f"pycontain-test-{os.getpid()}-{os.urandom(3).hex()}"
    yield parent
    path = os.path.join(UNIFIED, parent)
    for d in sorted((e.path for e in os.scandir(path) if e.is_dir()), reverse=True) \
            if os.path.isdir(path) else []:
        os.rmdir(d)
    if os.path.isdir(path):
        os.rmdir(path)


def _events(cg) -> dict:  # type: ignore[no-untyped-def]
    return base._read_keyed(os.path.join(cg.path, "cgroup.events"))


@needs_unified
def test_real_v2_create_join_freeze_kill_remove(unified_parent) -> None:  # type: ignore[no-untyped-def]
    drv = V2Driver(UNIFIED)
    cg = drv.create("c1", Resources(), unified_parent)
    assert os.path.isdir(cg.path) and _events(cg)["populated"] == 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child joins, then counts
        try:
            with open(cg.join_files()[0], "w") as f:
                f.write("0")
            os.write(w, b"j")
            n = 0
            while True:
                n += 1
                if n % 100000 == 0:
                    os.write(w, b".")
        finally:
            os._exit(1)
    try:
        assert os.read(r, 1) == b"j"
        assert cg.pids() == [pid] and _events(cg)["populated"] == 1
        cg.freeze()
        assert cg.frozen() and _events(cg)["frozen"] == 1
        os.set_blocking(r, False)
        while True:  # drain what was written before the freeze took hold
            try:
                if not os.read(r, 65536):
                    break
            except BlockingIOError:
                break
        import time

        time.sleep(0.2)
        with pytest.raises(BlockingIOError):
            os.read(r, 1)  # frozen: it writes nothing
        cg.thaw()
        assert not cg.frozen()
        cg.kill_all()  # cgroup.kill
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        deadline = time.monotonic() + 5
        while _events(cg)["populated"] != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _events(cg)["populated"] == 0
        cg.remove()
        assert not os.path.exists(cg.path)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(cgroups.CgroupError, match="memory"):
        drv.create("c2", Resources(memory_limit=64 << 20), unified_parent)
    assert not os.path.exists(os.path.join(UNIFIED, unified_parent, "c2"))


@needs_unified
def test_a_container_on_the_real_v2_hierarchy(unified_parent, busybox_rootfs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A whole container on the v2 driver: its processes in the v2 cgroup, paused and resumed
    through cgroup.freeze, killed through cgroup.kill, and nothing left."""
    import time

    from pycontain.runtime.runtime import Runtime

    rt = Runtime(str(tmp_path / "root"), str(tmp_path / "storage"), unified_parent)
    rt._driver = V2Driver(UNIFIED)
    c = rt.create(["/bin/sh", "-c", "sleep 30"], rootfs=busybox_rootfs, name="v2c",
                  detach=True)
    c.start()
    try:
        cg = c.cgroup()
        assert cg.version == 2 and c.pid in cg.pids()
        with open(f"/proc/{c.pid}/cgroup") as f:
            assert f"0::/{unified_parent}/" in f.read()
        c.pause()
        assert c.status == "paused"
        c.resume()
        assert c.status == "running"
        c.stop(timeout=0.5)
        assert c.status == "stopped"
    finally:
        c.remove(force=True)
    time.sleep(0.05)
    assert [e.name for e in os.scandir(os.path.join(UNIFIED, unified_parent))
            if e.is_dir()] == []  # the container's cgroup is gone
    assert rt.containers() == []
