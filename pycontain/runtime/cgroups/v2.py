"""The cgroup v2 driver: one directory in the unified hierarchy, its controllers enabled in
the parent's cgroup.subtree_control."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import os

from pycontain.runtime.cgroups import base
from pycontain.runtime.cgroups.base import (
    DEFAULT_PARENT,
    V2_CONTROLLERS,
    Cgroup,
    CgroupError,
    Driver,
    Limits,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List

    from pycontain.runtime.spec import Resources


class CgroupV2(Cgroup):
    version = 2

    def __init__(self, rel: str, path: str) -> None:
        super().__init__(rel)
        self.path = path

    def procs_files(self) -> List[str]:
        return [os.path.join(self.path, "cgroup.procs")]

    def dirs(self) -> List[str]:
        return [self.path]

    def oom_kills(self) -> int:
        return base._read_keyed(os.path.join(self.path, "memory.events")).get("oom_kill", 0)

    def stats(self) -> Dict[str, Any]:
        p = self.path
        ev = base._read_keyed(os.path.join(p, "memory.events"))
        cpu = base._read_keyed(os.path.join(p, "cpu.stat"))
        pev = base._read_keyed(os.path.join(p, "pids.events"))
        return {
            "cgroup_version": 2,
            "memory_current": base._read_int(os.path.join(p, "memory.current")),
            "memory_peak": base._read_int(os.path.join(p, "memory.peak")),
            "memory_limit": base._read_int(os.path.join(p, "memory.max")),
            "memory_failcnt": ev.get("max"),
            "oom_kills": ev.get("oom_kill", 0),
            "pids_current": base._read_int(os.path.join(p, "pids.current")),
            "pids_limit": base._read_int(os.path.join(p, "pids.max")),
            "pids_limit_hits": pev.get("max", 0),
            "cpu_usage_usec": cpu.get("usage_usec"),
            "cpu_nr_throttled": cpu.get("nr_throttled"),
            "cpu_throttled_usec": cpu.get("throttled_usec"),
        }

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        kill_file = os.path.join(self.path, "cgroup.kill")
        if sig == signal.SIGKILL and os.path.exists(kill_file):
            try:
                base._write(kill_file, "1")
                return
            except CgroupError:
                pass
        super().kill_all(sig)

    def freeze(self, timeout: float = 5.0) -> None:
        f = os.path.join(self.path, "cgroup.freeze")
        if not os.path.exists(f):
            raise CgroupError("cannot pause: the kernel's cgroup2 has no cgroup.freeze "
                              "(Linux 5.2 or later)")
        base._write(f, "1")
        events = os.path.join(self.path, "cgroup.events")
        self._freeze_wait(lambda: base._read_keyed(events).get("frozen") == 1,
                          lambda: base._write(f, "0"), timeout)

    def thaw(self) -> None:
        f = os.path.join(self.path, "cgroup.freeze")
        if os.path.exists(f):
            base._write(f, "0")

    def frozen(self) -> bool:
        return base._read_int(os.path.join(self.path, "cgroup.freeze")) == 1

    def update(self, limits: Limits) -> None:
        p = self.path
        if limits.memory is not None:
            base._write(base._need(os.path.join(p, "memory.max"), "memory"),
                   str(limits.memory) if limits.memory > 0 else "max")
        if limits.memory_swap is not None:
            mem = base._read_int(os.path.join(p, "memory.max"))
            if limits.memory_swap < 0 or mem is None:
                swap = "max"
            else:
                swap = str(max(limits.memory_swap - mem, 0))
            base._write(base._need(os.path.join(p, "memory.swap.max"), "memory_swap"), swap)
        if limits.pids is not None:
            base._write(base._need(os.path.join(p, "pids.max"), "pids"),
                   str(limits.pids) if limits.pids > 0 else "max")
        if limits.cpu_quota is not None or limits.cpu_period is not None:
            f = base._need(os.path.join(p, "cpu.max"), "cpu quota")
            cur = base._read(f).split()
            quota = cur[0] if limits.cpu_quota is None else (
                str(limits.cpu_quota) if limits.cpu_quota > 0 else "max")
            period = str(limits.cpu_period) if limits.cpu_period else cur[1]
            base._write(f, f"{quota} {period}")
        if limits.cpu_shares is not None:
            base._write(base._need(os.path.join(p, "cpu.weight"), "cpu shares"),
                   str(base._shares_to_weight(limits.cpu_shares)))
        for value, name in ((limits.cpuset_cpus, "cpuset.cpus"),
                            (limits.cpuset_mems, "cpuset.mems")):
            if value is not None:
                base._write(base._need(os.path.join(p, name), name), value)

    def to_dict(self) -> Dict[str, Any]:
        return {"version": 2, "rel": self.rel, "path": self.path}




_V2_THROTTLE = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))



class V2Driver(Driver):
    version = 2

    def __init__(self, root: str) -> None:
        self.root = root

    def _enable(self, directory: str, controllers: List[str]) -> None:
        current = set(base._read(os.path.join(directory, "cgroup.subtree_control")).split())
        missing = [c for c in controllers if c not in current]
        if missing:
            base._write(os.path.join(directory, "cgroup.subtree_control"),
                   " ".join("+" + c for c in missing))

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        rel = base.relative_path(name, parent)
        try:
            available = set(base._read(os.path.join(self.root, "cgroup.controllers")).split())
        except OSError as e:
            raise CgroupError(f"{self.root} is not a cgroup2 hierarchy: {e.strerror}") from e
        wanted = [c for c in V2_CONTROLLERS if c in available]
        for key, ctrl in (("blockIO", "io"), ("hugepageLimits", "hugetlb")):
            if resources.extra.get(key) and ctrl in available:
                wanted.append(ctrl)
        if resources.cpuset_cpus or resources.cpuset_mems:
            wanted.append("cpuset")
        # A controller is needed only for what is asked of it (runc's rule): a cgroup2 tree
        # without memory/pids/cpu (as /sys/fs/cgroup/unified beside v1) still holds, freezes
        # and kills a container.
        asked = {"memory": resources.memory_limit is not None or resources.memory_swap
                 is not None, "pids": resources.pids_limit is not None,
                 "cpu": resources.cpu_quota is not None or resources.cpu_shares is not None}
        for c, needed in asked.items():
            if needed and c not in available:
                raise CgroupError(f"cgroup2 controller {c!r} is not available in {self.root} "
                                  f"(needed for the {c} limit)")
        path = os.path.join(self.root, rel)
        try:
            # Enable the controllers along the way down from the root.
            d = self.root
            for part in [x for x in parent.split("/") if x]:
                self._enable(d, wanted)
                d = os.path.join(d, part)
                if not os.path.isdir(d):
                    base._mkdir(d)
            self._enable(d, wanted)
            base._mkdir(path)
        except OSError as e:
            raise CgroupError(f"cannot create cgroup {rel}: {e.strerror}") from e
        cg = CgroupV2(rel, path)
        try:
            self._apply(path, resources)
        except CgroupError:
            try:
                cg.remove(timeout=1)
            except CgroupError:
                pass
            raise
        return cg

    def open(self, rel: str) -> Cgroup:
        base.check_rel(rel)
        return CgroupV2(rel, os.path.join(self.root, rel))

    @staticmethod
    def _apply(path: str, r: Resources) -> None:
        if r.memory_limit is not None:
            base._write(os.path.join(path, "memory.max"), str(r.memory_limit))
            if r.memory_swap is None:
                swap = "0"
            elif r.memory_swap < 0:
                swap = "max"
            else:
                swap = str(max(r.memory_swap - r.memory_limit, 0))
            try:
                base._write(os.path.join(path, "memory.swap.max"), swap)
            except CgroupError:
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    raise  # present but refused; absent = no swap accounting, nothing to do
        if r.pids_limit is not None and r.pids_limit > 0:
            base._write(os.path.join(path, "pids.max"), str(r.pids_limit))
        if r.cpu_quota is not None:
            base._write(os.path.join(path, "cpu.max"), f"{r.cpu_quota} {r.cpu_period or 100000}")
        if r.cpu_shares is not None:
            base._write(os.path.join(path, "cpu.weight"), str(base._shares_to_weight(r.cpu_shares)))
        if r.cpuset_cpus:
            base._write(os.path.join(path, "cpuset.cpus"), r.cpuset_cpus)
        if r.cpuset_mems:
            base._write(os.path.join(path, "cpuset.mems"), r.cpuset_mems)
        V2Driver._apply_extra(path, r.extra)

    @staticmethod
    def _apply_extra(path: str, extra: Dict[str, Any]) -> None:
        """The rest of linux.resources that cgroup v2 can express, then ``unified``."""
        m = extra.get("memory") or {}
        if m.get("reservation") is not None:
            base._write(os.path.join(path, "memory.low"), str(m["reservation"]))
        c = extra.get("cpu") or {}
        if c.get("idle") is not None:
            base._write(os.path.join(path, "cpu.idle"), str(c["idle"]))
        bio = extra.get("blockIO") or {}
        if bio.get("weight"):
            weight = 1 + (int(bio["weight"]) - 10) * 9999 // 990
            base._write(os.path.join(path, "io.weight"), f"default {max(1, min(weight, 10000))}")
        for key, name in _V2_THROTTLE:
            for d in bio.get(key) or []:
                base._write(os.path.join(path, "io.max"),
                       f"{d['major']}:{d['minor']} {name}={d['rate']}")
        for h in extra.get("hugepageLimits") or []:
            base._write(os.path.join(path, f"hugetlb.{h['pageSize']}.max"), str(h["limit"]))
        for fname, value in (extra.get("unified") or {}).items():
            if "/" in fname or fname.startswith("."):
                raise CgroupError(f"invalid unified cgroup key {fname!r}")
            base._write(os.path.join(path, fname), str(value))


