"""The cgroup v1 driver: one directory per controller (memory, pids, cpu, cpuacct, devices,
freezer, and cpuset when asked for), each under its own mount."""

from __future__ import annotations

import os

from pycontain.runtime.cgroups import base
from pycontain.runtime.cgroups.base import (
    DEFAULT_PARENT,
    V1_CONTROLLERS,
    Cgroup,
    CgroupError,
    Driver,
    Limits,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from pycontain.runtime.spec import Resources


class CgroupV1(Cgroup):
    version = 1

    def __init__(self, rel: str, paths: Dict[str, str]) -> None:
        super().__init__(rel)
        self.paths = paths  # controller -> directory

    def procs_files(self) -> List[str]:
        seen = []
        for d in self.paths.values():
            f = os.path.join(d, "cgroup.procs")
            if f not in seen:
                seen.append(f)
        return seen

    def join_files(self) -> List[str]:
        # Writing "0" to ``tasks`` moves only the calling thread, which for a single-threaded
        # child is the whole process - and, unlike cgroup.procs, skips the global threadgroup
        # rwsem, whose write side waits for an RCU grace period (~10ms per container start).
        return [f[: -len("cgroup.procs")] + "tasks" for f in self.procs_files()]

    def pids(self) -> List[int]:
        out: List[int] = []
        for f in self.procs_files():
            for p in base._read_pids(f):
                if p not in out:
                    out.append(p)
        return out

    def dirs(self) -> List[str]:
        return sorted(set(self.paths.values()))

    def _f(self, controller: str, name: str) -> Optional[str]:
        d = self.paths.get(controller)
        return None if d is None else os.path.join(d, name)

    def oom_kills(self) -> int:
        f = self._f("memory", "memory.oom_control")
        return base._read_keyed(f).get("oom_kill", 0) if f else 0

    def stats(self) -> Dict[str, Any]:
        s: Dict[str, Any] = {"cgroup_version": 1}
        if "memory" in self.paths:
            m = self.paths["memory"]
            s["memory_current"] = base._read_int(os.path.join(m, "memory.usage_in_bytes"))
            s["memory_peak"] = base._read_int(os.path.join(m, "memory.max_usage_in_bytes"))
            limit = base._read_int(os.path.join(m, "memory.limit_in_bytes"))
            s["memory_limit"] = None if limit is None or limit >= 1 << 62 else limit
            s["memory_failcnt"] = base._read_int(os.path.join(m, "memory.failcnt"))
            s["oom_kills"] = self.oom_kills()
        if "pids" in self.paths:
            p = self.paths["pids"]
            s["pids_current"] = base._read_int(os.path.join(p, "pids.current"))
            s["pids_limit"] = base._read_int(os.path.join(p, "pids.max"))
            s["pids_limit_hits"] = base._read_keyed(os.path.join(p, "pids.events")).get("max", 0)
        if "cpuacct" in self.paths:
            usage = base._read_int(os.path.join(self.paths["cpuacct"], "cpuacct.usage"))
            s["cpu_usage_usec"] = None if usage is None else usage // 1000
        if "cpu" in self.paths:
            st = base._read_keyed(os.path.join(self.paths["cpu"], "cpu.stat"))
            s["cpu_nr_throttled"] = st.get("nr_throttled")
            tt = st.get("throttled_time")
            s["cpu_throttled_usec"] = None if tt is None else tt // 1000
        return s

    def _freezer_state(self) -> str:
        f = self._f("freezer", "freezer.state")
        if f is None:
            raise CgroupError("cannot pause: the container has no freezer cgroup (the freezer "
                              "controller is not mounted, or it was created without one)")
        return f

    def freeze(self, timeout: float = 5.0) -> None:
        f = self._freezer_state()
        base._write(f, "FROZEN")
        # FREEZING until every task has stopped; writing FROZEN again moves stragglers on.
        self._freeze_wait(lambda: base._read(f).strip() == "FROZEN",
                          lambda: base._write(f, "THAWED"), timeout,
                          retry=lambda: base._write(f, "FROZEN"))

    def thaw(self) -> None:
        base._write(self._freezer_state(), "THAWED")

    def frozen(self) -> bool:
        f = self._f("freezer", "freezer.state")
        try:
            return f is not None and base._read(f).strip() != "THAWED"
        except OSError:
            return False

    def update(self, limits: Limits) -> None:
        mem = self.paths.get("memory")
        if limits.memory is not None or limits.memory_swap is not None:
            lim = base._need(mem and os.path.join(mem, "memory.limit_in_bytes"), "memory")
            memsw = os.path.join(os.path.dirname(lim), "memory.memsw.limit_in_bytes")
            cur = base._read_int(lim)
            new = cur if limits.memory is None else (limits.memory if limits.memory > 0 else -1)
            writes = [] if limits.memory is None else [(lim, str(new))]
            if os.path.exists(memsw):
                cur_sw = base._read_int(memsw)
                sw: Optional[int] = None
                if limits.memory_swap is not None:
                    sw = -1 if limits.memory_swap < 0 or new == -1 else max(limits.memory_swap,
                                                                            new or 0)
                elif limits.memory is not None and cur_sw == cur:
                    sw = new  # it had no swap: keep it so
                if sw is not None:
                    # The kernel wants memory <= memory+swap after every write: raise the
                    # memory+swap limit first, lower it last.
                    grow = sw == -1 or cur_sw is None or sw > cur_sw
                    step = (memsw, str(sw))
                    writes = [step, *writes] if grow else [*writes, step]
            elif limits.memory_swap is not None and limits.memory_swap != limits.memory:
                raise CgroupError("cannot set memory_swap: this kernel does not account swap "
                                  "(no memory.memsw.limit_in_bytes)")
            for path, value in writes:
                base._write(path, value)
        if limits.pids is not None:
            base._write(base._need(self._f("pids", "pids.max"), "pids"),
                   str(limits.pids) if limits.pids > 0 else "max")
        if limits.cpu_period is not None:
            base._write(base._need(self._f("cpu", "cpu.cfs_period_us"), "cpu period"),
                   str(limits.cpu_period))
        if limits.cpu_quota is not None:
            base._write(base._need(self._f("cpu", "cpu.cfs_quota_us"), "cpu quota"),
                   str(limits.cpu_quota) if limits.cpu_quota > 0 else "-1")
        if limits.cpu_shares is not None:
            base._write(base._need(self._f("cpu", "cpu.shares"), "cpu shares"),
                        str(limits.cpu_shares))
        for value, name in ((limits.cpuset_cpus, "cpuset.cpus"),
                            (limits.cpuset_mems, "cpuset.mems")):
            if value is not None:
                base._write(base._need(self._f("cpuset", name), name), value)

    def to_dict(self) -> Dict[str, Any]:
        return {"version": 1, "rel": self.rel, "paths": dict(self.paths)}




_V1_THROTTLE = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


class V1Driver(Driver):
    version = 1

    def __init__(self, mounts: Dict[str, str]) -> None:
        self.mounts = mounts  # controller -> mount point

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        rel = base.relative_path(name, parent)
        wanted = [c for c in V1_CONTROLLERS if c in self.mounts]
        if resources.extra.get("blockIO") and "blkio" in self.mounts:
            wanted.append("blkio")
        if resources.extra.get("hugepageLimits"):
            if "hugetlb" not in self.mounts:
                raise CgroupError("hugepageLimits: the hugetlb controller is not mounted")
            wanted.append("hugetlb")
        if resources.cpuset_cpus or resources.cpuset_mems:
            if "cpuset" not in self.mounts:
                raise CgroupError("cpuset controller is not mounted")
            wanted.append("cpuset")
        for c in ("memory", "pids"):
            if c not in self.mounts:
                raise CgroupError(f"cgroup v1 controller {c!r} is not mounted")
        paths: Dict[str, str] = {}
        created: List[str] = []
        cg = CgroupV1(rel, paths)
        try:
            for c in wanted:
                path = os.path.join(self.mounts[c], rel)
                paths[c] = path
                if path in created:
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if c == "cpuset":
                    self._init_cpuset(os.path.dirname(path), self.mounts[c])
                base._mkdir(path)
                created.append(path)
            self._apply(paths, resources)
        except OSError as e:
            self._undo(created)
            raise CgroupError(f"cannot create cgroup {rel}: {e.strerror}") from e
        except CgroupError:
            self._undo(created)
            raise
        return cg

    def open(self, rel: str) -> Cgroup:
        base.check_rel(rel)
        controllers = [*V1_CONTROLLERS, "blkio", "hugetlb", "cpuset"]
        return CgroupV1(rel, {c: os.path.join(self.mounts[c], rel) for c in controllers
                              if c in self.mounts})

    @staticmethod
    def _undo(created: List[str]) -> None:
        for d in reversed(created):
            try:
                base._rmdir(d)
            except OSError:
                pass

    @staticmethod
    def _init_cpuset(parent: str, mount: str) -> None:
        """A v1 cpuset takes no tasks, nor children with CPUs, while its own cpus/mems are
        empty (as a fresh mkdir leaves them): fill every empty one from the hierarchy's
        root down to ``parent`` from the level above (runc does the same)."""
        rel = os.path.relpath(parent, mount)
        levels = [] if rel == "." else rel.split(os.sep)
        d = mount
        for part in levels:
            above, d = d, os.path.join(d, part)
            for f in ("cpuset.cpus", "cpuset.mems"):
                path = os.path.join(d, f)
                if not base._read(path).strip():
                    base._write(path, base._read(os.path.join(above, f)).strip())

    @staticmethod
    def _apply(paths: Dict[str, str], r: Resources) -> None:
        mem = paths.get("memory")
        if mem and r.memory_limit is not None:
            base._write(os.path.join(mem, "memory.limit_in_bytes"), str(r.memory_limit))
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                if r.memory_swap is None:
                    base._write(memsw, str(r.memory_limit))
                elif r.memory_swap > 0:
                    base._write(memsw, str(max(r.memory_swap, r.memory_limit)))
            elif r.memory_swap is None:
                try:
                    base._write(os.path.join(mem, "memory.swappiness"), "0")
                except CgroupError:
                    pass
        pids = paths.get("pids")
        if pids and r.pids_limit is not None and r.pids_limit > 0:
            base._write(os.path.join(pids, "pids.max"), str(r.pids_limit))
        cpu = paths.get("cpu")
        if cpu:
            if r.cpu_quota is not None:
                base._write(os.path.join(cpu, "cpu.cfs_period_us"), str(r.cpu_period or 100000))
                base._write(os.path.join(cpu, "cpu.cfs_quota_us"), str(r.cpu_quota))
            if r.cpu_shares is not None:
                base._write(os.path.join(cpu, "cpu.shares"), str(r.cpu_shares))
        cpuset = paths.get("cpuset")
        if cpuset:
            parent = os.path.dirname(cpuset)
            base._write(os.path.join(cpuset, "cpuset.cpus"),
                   r.cpuset_cpus or base._read(os.path.join(parent, "cpuset.cpus")).strip())
            base._write(os.path.join(cpuset, "cpuset.mems"),
                   r.cpuset_mems or base._read(os.path.join(parent, "cpuset.mems")).strip())
        dev = paths.get("devices")
        if dev and r.devices:
            for rule in r.devices:
                kind = rule.get("type") or "a"
                major = rule.get("major")
                minor = rule.get("minor")
                access = rule.get("access") or "rwm"
                if kind == "a":
                    line = "a"
                else:
                    line = (f"{kind} {'*' if major is None or major < 0 else major}:"
                            f"{'*' if minor is None or minor < 0 else minor} {access}")
                name = "devices.allow" if rule.get("allow") else "devices.deny"
                base._write(os.path.join(dev, name), line)
        V1Driver._apply_extra(paths, r.extra)

    @staticmethod
    def _apply_extra(paths: Dict[str, str], extra: Dict[str, Any]) -> None:
        """The rest of linux.resources that cgroup v1 can express."""
        mem = paths.get("memory")
        m = extra.get("memory") or {}
        if mem and m:
            if m.get("reservation") is not None:
                base._write(os.path.join(mem, "memory.soft_limit_in_bytes"), str(m["reservation"]))
            if m.get("swappiness") is not None and 0 <= int(m["swappiness"]) <= 100:
                base._write(os.path.join(mem, "memory.swappiness"), str(m["swappiness"]))
            if m.get("disableOOMKiller"):
                base._write(os.path.join(mem, "memory.oom_control"), "1")
        cpu = paths.get("cpu")
        c = extra.get("cpu") or {}
        if cpu and c:
            if c.get("realtimePeriod"):
                base._write(os.path.join(cpu, "cpu.rt_period_us"), str(c["realtimePeriod"]))
            if c.get("realtimeRuntime"):
                base._write(os.path.join(cpu, "cpu.rt_runtime_us"), str(c["realtimeRuntime"]))
        bio = extra.get("blockIO") or {}
        blk = paths.get("blkio")
        if bio and blk:
            wfile = "blkio.weight"
            if not os.path.exists(os.path.join(blk, wfile)):
                wfile = "blkio.bfq.weight"
            if bio.get("weight"):
                base._write(os.path.join(blk, wfile), str(bio["weight"]))
            for line in base._blkio_lines(bio, "weightDevice", "weight"):
                base._write(os.path.join(blk, wfile + "_device"), line)
            for key, fname in _V1_THROTTLE:
                for line in base._blkio_lines(bio, key, "rate"):
                    base._write(os.path.join(blk, fname), line)
        huge = paths.get("hugetlb")
        for h in extra.get("hugepageLimits") or []:
            if huge:
                base._write(os.path.join(huge, f"hugetlb.{h['pageSize']}.limit_in_bytes"),
                       str(h["limit"]))


