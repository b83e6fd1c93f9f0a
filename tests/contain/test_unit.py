"""Pure-Python parts: size parsing, the OCI config model, mount options, paths, state files."""

from __future__ import annotations

import json
import os

import pytest

from pycontain.errors import ContainerError
from pycontain.runtime import cgroups, rootfs, spec, state
from pycontain.runtime.args import parse_cpus, parse_signal, parse_size, parse_volume
from pycontain.runtime.cgroups.v1 import V1Driver
from pycontain.runtime.cgroups.v2 import V2Driver


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64M", 64 << 20), ("64m", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("100", 100),
     ("64MB", 64 << 20), ("64MiB", 64 << 20), ("1.5G", 3 << 29), (4096, 4096)],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["12XB", "", "M", "-5M", "0", "1.2.3M", "64 M B", "iB", 0, -1])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ContainerError) as exc:
        parse_size(bad, "memory size")  # type: ignore[arg-type]
    assert exc.value.exit_code == 125
    assert "memory size" in str(exc.value)


def test_parse_cpus() -> None:
    assert parse_cpus("0.5") == 0.5
    for bad in ("0", "-1", "half", "nan"):
        with pytest.raises(ContainerError):
            parse_cpus(bad)


def test_parse_volume(tmp_path: object) -> None:
    m = parse_volume(f"{tmp_path}:/data:ro")
    assert (m.destination, m.type, m.source) == ("/data", "bind", str(tmp_path))
    assert "ro" in m.options and "rbind" in m.options
    for bad in ("nocolon", f"{tmp_path}:relative", f"{tmp_path}:/x:rx", "/does/not/exist:/x"):
        with pytest.raises(ContainerError):
            parse_volume(bad)


def test_parse_signal() -> None:
    assert parse_signal("TERM") == 15
    assert parse_signal("SIGKILL") == 9
    assert parse_signal("10") == 10
    with pytest.raises(ContainerError):
        parse_signal("NOPE")


def test_default_spec_matches_runc_defaults() -> None:
    s = spec.default_spec(["/bin/true"])
    d = s.to_dict()
    assert d["process"]["args"] == ["/bin/true"]
    assert d["process"]["capabilities"]["bounding"] == [
        "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert "/proc/kcore" in d["linux"]["maskedPaths"]
    assert "/proc/sys" in d["linux"]["readonlyPaths"]
    assert {n["type"] for n in d["linux"]["namespaces"]} == {
        "pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert [m["destination"] for m in d["mounts"]][:2] == ["/proc", "/dev"]


def test_spec_round_trip_keeps_unknown_keys() -> None:
    s = spec.default_spec(["sh"])
    s.hostname = "box"
    s.linux.resources.memory_limit = 1 << 26
    s.linux.resources.pids_limit = 10
    d = s.to_dict()
    d["vendorExtension"] = {"x": 1}
    again = spec.Spec.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d
    assert again.linux.resources.memory_limit == 1 << 26
    assert again.process.getenv("PATH") == spec.DEFAULT_PATH


def test_caps_mask() -> None:
    assert spec.caps_mask(["CAP_KILL", "net_bind_service"]) == (1 << 5) | (1 << 10)
    with pytest.raises(ValueError):
        spec.caps_mask(["CAP_NOPE"])


def test_parse_mount_options() -> None:
    from pycontain.runtime import _sys

    flags, prop, data = rootfs.parse_options(["nosuid", "ro", "mode=755", "rprivate", "size=1k"])
    assert flags == _sys.MS_NOSUID | _sys.MS_RDONLY
    assert prop == _sys.MS_PRIVATE | _sys.MS_REC
    assert data == "mode=755,size=1k"
    flags, _, _ = rootfs.parse_options(["ro", "rw", "rbind"])
    assert flags == _sys.MS_BIND | _sys.MS_REC


def test_secure_join_stays_inside(tmp_path: object) -> None:
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "a"))
    os.symlink("/etc", os.path.join(root, "abs"))
    os.symlink("../../../..", os.path.join(root, "a", "up"))
    assert rootfs.secure_join(root, "/abs/passwd") == os.path.join(root, "etc", "passwd")
    assert rootfs.secure_join(root, "/a/up/x") == os.path.join(root, "x")
    assert rootfs.secure_join(root, "/../../x") == os.path.join(root, "x")


def test_state_dir_atomic_and_claim(tmp_path: object) -> None:
    sd = state.StateDir(str(tmp_path), "c1")
    sd.claim()
    with pytest.raises(state.StateError):
        state.StateDir(str(tmp_path), "c1").claim()
    with pytest.raises(state.StateError):
        state.StateDir(str(tmp_path), "bad/name").claim()
    with sd.lock():
        sd.write({"id": "x", "status": "created"})
    assert sd.update(status="running")["status"] == "running"
    assert sd.read() == {"id": "x", "status": "running"}
    assert state.list_names(str(tmp_path)) == ["c1"]
    assert not [n for n in os.listdir(sd.path) if n.startswith(".")]


def test_liveness_uses_start_time() -> None:
    me = os.getpid()
    start = state.proc_start_time(me)
    assert start is not None
    assert state.alive(me, start)
    assert not state.alive(me, start + 1)  # same pid, different process: pid reuse
    assert not state.alive(0, None)
    assert not state.alive(2**22 + 12345, None)


MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
MOUNTINFO_COMOUNT = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""
MOUNTINFO_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_detect_drivers() -> None:
    d1 = cgroups.detect(MOUNTINFO_V1)
    assert isinstance(d1, V1Driver)
    assert d1.mounts["memory"] == "/sys/fs/cgroup/memory"
    assert d1.mounts["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    d2 = cgroups.detect(MOUNTINFO_COMOUNT)
    assert isinstance(d2, V1Driver)
    assert d2.mounts["cpu"] == d2.mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    d3 = cgroups.detect(MOUNTINFO_V2)
    assert isinstance(d3, V2Driver) and d3.root == "/sys/fs/cgroup"
    with pytest.raises(cgroups.CgroupError):
        cgroups.detect("")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--rm", "--", "true"],
        ["run", "--name", "x", "-m", "64M", "--pids=10", "--cpus", "0.5", "-e", "A=1", "-e", "B",
         "-v", "/tmp:/t:ro", "--net", "host", "-d", "--no-init", "--read-only", "-w", "/tmp",
         "--storage-opt", "size=1G",
         "--rootfs", "/r", "--hostname", "h", "--memory-swap", "-1", "--root", "/s", "sh", "-c",
         "echo --rm"],
        ["run", "--image", "host", "python3", "-c", "pass"],
        ["run", "--init", "--storage", "/x", "--", "--weird-arg"],
    ],
)
def test_fast_run_parser_matches_argparse(argv: list) -> None:
    from pycontain.cli import parser

    fast = parser.fast_run_args(argv)
    assert fast is not None
    slow = parser.build_parser().parse_args(argv)
    slow_vars = vars(slow)
    slow_vars["command"] = parser.strip_dashdash(slow_vars["command"])
    fast_vars = vars(fast)
    fast_vars["command"] = parser.strip_dashdash(fast_vars["command"])
    assert fast_vars == slow_vars


@pytest.mark.parametrize(
    "argv", [["run", "--preload", "--", "x"], ["run", "-h"], ["run", "--bogus", "x"],
             ["run", "--name"], ["ps"], ["run", "--image", "a", "--rootfs", "/r", "x"]])
def test_fast_run_parser_defers_to_argparse(argv: list) -> None:
    from pycontain.cli import parser

    assert parser.fast_run_args(argv) is None
