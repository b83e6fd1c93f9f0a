"""Cgroups: one interface, a v1 driver and a v2 driver, chosen from what the machine mounts.

``detect()`` reads /proc/self/mountinfo: cgroup2 mounted at /sys/fs/cgroup means the unified
hierarchy (v2); otherwise the v1 controllers are used (memory, pids, cpu, cpuacct, devices,
freezer and, when asked for, cpuset), each under its own mount; a cgroup2 tree mounted
elsewhere is used only if it offers the memory controller. Every cgroup the runtime creates
lives under one parent (``pycontain`` by default) of each hierarchy; nothing else is ever
written or removed. Containers can be frozen (pause) and their limits changed while they run
(update).
"""

from __future__ import annotations

import errno
import os
import signal
import time

from pycontain.spec import Resources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

DEFAULT_PARENT = "pycontain"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "devices", "freezer")
V2_CONTROLLERS = ("memory", "pids", "cpu")


class CgroupError(RuntimeError):
    """A cgroup could not be created, configured or removed."""


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: str) -> Optional[int]:
    try:
        raw = _read(path).strip()
    except OSError:
        return None
    if raw == "max":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _read_keyed(path: str) -> Dict[str, int]:
    """Parse a flat-keyed file ("key value" per line)."""
    out: Dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise CgroupError(f"cannot open {path}: {e.strerror}") from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(f"cannot write {value!r} to {path}: {e.strerror}") from e
    finally:
        os.close(fd)


# Directory operations go through these two names so that tests can drive the drivers against
# a fake hierarchy (where mkdir must populate the interface files, as the kernel does).
def _mkdir(path: str) -> None:
    os.mkdir(path)


def _rmdir(path: str) -> None:
    os.rmdir(path)


def _read_pids(procs_file: str) -> List[int]:
    try:
        return [int(x) for x in _read(procs_file).split()]
    except (OSError, ValueError):
        return []


def _signal_members(pids: List[int], sig: int, rel: str) -> int:
    """Send ``sig`` to those of ``pids`` still in cgroup ``rel``, race-free via pidfds."""
    sent = 0
    suffix = ":" + rel.rstrip("/")
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            lines = _read(f"/proc/{pid}/cgroup").splitlines()
            if any(line.endswith(suffix) for line in lines):
                signal.pidfd_send_signal(pidfd, sig)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return sent


class Limits:
    """New values for Cgroup.update(); None keeps the current value. Memory and pids: a
    value <= 0 means unlimited; memory_swap is memory plus swap, as in OCI (-1: unlimited
    swap); cpu_quota (microseconds per cpu_period): <= 0 means unlimited."""

    def __init__(self, memory: Optional[int] = None, memory_swap: Optional[int] = None,
                 pids: Optional[int] = None, cpu_quota: Optional[int] = None,
                 cpu_period: Optional[int] = None, cpu_shares: Optional[int] = None,
                 cpuset_cpus: Optional[str] = None, cpuset_mems: Optional[str] = None) -> None:
        self.memory = memory
        self.memory_swap = memory_swap
        self.pids = pids
        self.cpu_quota = cpu_quota
        self.cpu_period = cpu_period
        self.cpu_shares = cpu_shares
        self.cpuset_cpus = cpuset_cpus
        self.cpuset_mems = cpuset_mems

    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())


def _shares_to_weight(shares: int) -> int:
    """The usual conversion from v1 cpu shares (2..262144) to v2 cpu.weight (1..10000)."""
    weight = 1 + ((shares - 2) * 9999) // 262142
    return max(1, min(weight, 10000))


def _need(path: Optional[str], what: str) -> str:
    if path is None or not os.path.exists(path):
        name = os.path.basename(path or what)
        raise CgroupError(f"cannot set {what}: the container's cgroup has no {name}")
    return path


class Cgroup:
    """One container's cgroup (possibly one directory per v1 controller)."""

    version = 0

    def __init__(self, rel: str) -> None:
        self.rel = rel  # path relative to each hierarchy's root, e.g. "pycontain/ab12"

    # -- membership ----------------------------------------------------------------------
    def procs_files(self) -> List[str]:
        """The cgroup.procs files (one per hierarchy) listing the member processes."""
        raise NotImplementedError

    def join_files(self) -> List[str]:
        """The files a single-threaded process writes "0" to in order to join."""
        return self.procs_files()

    def add(self, pid: int) -> None:
        for f in self.procs_files():
            _write(f, str(pid))

    def pids(self) -> List[int]:
        files = self.procs_files()
        return _read_pids(files[0]) if files else []

    # -- stats ---------------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        raise NotImplementedError

    def oom_kills(self) -> int:
        raise NotImplementedError

    # -- teardown ------------------------------------------------------------------------
    def dirs(self) -> List[str]:
        raise NotImplementedError

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        _signal_members(self.pids(), sig, "/" + self.rel)
        if sig == signal.SIGKILL:
            self._thaw_after_signal()  # a frozen process dies only once thawed

    def _thaw_after_signal(self) -> None:
        """A frozen process acts on a signal only once thawed: thaw a frozen cgroup whose
        members were just signalled, so that the signal is delivered."""
        try:
            if self.frozen():
                self.thaw()
        except (CgroupError, OSError):
            pass

    # -- freezing ------------------------------------------------------------------------
    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process of the cgroup where it is, until thaw()."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def _freeze_wait(self, done: Callable[[], bool], undo: Callable[[], None],
                     timeout: float, retry: Optional[Callable[[], None]] = None) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while not done():
            if time.monotonic() > deadline:
                undo()
                raise CgroupError(f"cgroup {self.rel} did not freeze within {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
            if retry is not None:
                retry()

    # -- live limits ---------------------------------------------------------------------
    def update(self, limits: Limits) -> None:
        """Change the limits of a live cgroup; fields left None keep their value."""
        raise NotImplementedError

    def remove(self, timeout: float = 10.0) -> None:
        """Kill whatever is left and remove every directory, retrying until empty."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        pending = [d for d in self.dirs() if os.path.isdir(d)]
        while pending:
            left = []
            for d in pending:
                try:
                    _rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                        raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}") from e
                    left.append(d)
            pending = left
            if not pending:
                return
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {pending[0]} still busy after {timeout:.0f}s")
            self.kill_all()
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def to_dict(self) -> Dict[str, Any]:
        raise NotImplementedError


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
            for p in _read_pids(f):
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
        return _read_keyed(f).get("oom_kill", 0) if f else 0

    def stats(self) -> Dict[str, Any]:
        s: Dict[str, Any] = {"cgroup_version": 1}
        if "memory" in self.paths:
            m = self.paths["memory"]
            s["memory_current"] = _read_int(os.path.join(m, "memory.usage_in_bytes"))
            s["memory_peak"] = _read_int(os.path.join(m, "memory.max_usage_in_bytes"))
            limit = _read_int(os.path.join(m, "memory.limit_in_bytes"))
            s["memory_limit"] = None if limit is None or limit >= 1 << 62 else limit
            s["memory_failcnt"] = _read_int(os.path.join(m, "memory.failcnt"))
            s["oom_kills"] = self.oom_kills()
        if "pids" in self.paths:
            p = self.paths["pids"]
            s["pids_current"] = _read_int(os.path.join(p, "pids.current"))
            s["pids_limit"] = _read_int(os.path.join(p, "pids.max"))
            s["pids_limit_hits"] = _read_keyed(os.path.join(p, "pids.events")).get("max", 0)
        if "cpuacct" in self.paths:
            usage = _read_int(os.path.join(self.paths["cpuacct"], "cpuacct.usage"))
            s["cpu_usage_usec"] = None if usage is None else usage // 1000
        if "cpu" in self.paths:
            st = _read_keyed(os.path.join(self.paths["cpu"], "cpu.stat"))
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
        _write(f, "FROZEN")
        # FREEZING until every task has stopped; writing FROZEN again moves stragglers on.
        self._freeze_wait(lambda: _read(f).strip() == "FROZEN", lambda: _write(f, "THAWED"),
                          timeout, retry=lambda: _write(f, "FROZEN"))

    def thaw(self) -> None:
        _write(self._freezer_state(), "THAWED")

    def frozen(self) -> bool:
        f = self._f("freezer", "freezer.state")
        try:
            return f is not None and _read(f).strip() != "THAWED"
        except OSError:
            return False

    def update(self, limits: Limits) -> None:
        mem = self.paths.get("memory")
        if limits.memory is not None or limits.memory_swap is not None:
            lim = _need(mem and os.path.join(mem, "memory.limit_in_bytes"), "memory")
            memsw = os.path.join(os.path.dirname(lim), "memory.memsw.limit_in_bytes")
            cur = _read_int(lim)
            new = cur if limits.memory is None else (limits.memory if limits.memory > 0 else -1)
            writes = [] if limits.memory is None else [(lim, str(new))]
            if os.path.exists(memsw):
                cur_sw = _read_int(memsw)
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
                _write(path, value)
        if limits.pids is not None:
            _write(_need(self._f("pids", "pids.max"), "pids"),
                   str(limits.pids) if limits.pids > 0 else "max")
        if limits.cpu_period is not None:
            _write(_need(self._f("cpu", "cpu.cfs_period_us"), "cpu period"),
                   str(limits.cpu_period))
        if limits.cpu_quota is not None:
            _write(_need(self._f("cpu", "cpu.cfs_quota_us"), "cpu quota"),
                   str(limits.cpu_quota) if limits.cpu_quota > 0 else "-1")
        if limits.cpu_shares is not None:
            _write(_need(self._f("cpu", "cpu.shares"), "cpu shares"), str(limits.cpu_shares))
        for value, name in ((limits.cpuset_cpus, "cpuset.cpus"),
                            (limits.cpuset_mems, "cpuset.mems")):
            if value is not None:
                _write(_need(self._f("cpuset", name), name), value)

    def to_dict(self) -> Dict[str, Any]:
        return {"version": 1, "rel": self.rel, "paths": dict(self.paths)}


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
        return _read_keyed(os.path.join(self.path, "memory.events")).get("oom_kill", 0)

    def stats(self) -> Dict[str, Any]:
        p = self.path
        ev = _read_keyed(os.path.join(p, "memory.events"))
        cpu = _read_keyed(os.path.join(p, "cpu.stat"))
        pev = _read_keyed(os.path.join(p, "pids.events"))
        return {
            "cgroup_version": 2,
            "memory_current": _read_int(os.path.join(p, "memory.current")),
            "memory_peak": _read_int(os.path.join(p, "memory.peak")),
            "memory_limit": _read_int(os.path.join(p, "memory.max")),
            "memory_failcnt": ev.get("max"),
            "oom_kills": ev.get("oom_kill", 0),
            "pids_current": _read_int(os.path.join(p, "pids.current")),
            "pids_limit": _read_int(os.path.join(p, "pids.max")),
            "pids_limit_hits": pev.get("max", 0),
            "cpu_usage_usec": cpu.get("usage_usec"),
            "cpu_nr_throttled": cpu.get("nr_throttled"),
            "cpu_throttled_usec": cpu.get("throttled_usec"),
        }

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        kill_file = os.path.join(self.path, "cgroup.kill")
        if sig == signal.SIGKILL and os.path.exists(kill_file):
            try:
                _write(kill_file, "1")
                return
            except CgroupError:
                pass
        super().kill_all(sig)

    def freeze(self, timeout: float = 5.0) -> None:
        f = os.path.join(self.path, "cgroup.freeze")
        if not os.path.exists(f):
            raise CgroupError("cannot pause: the kernel's cgroup2 has no cgroup.freeze "
                              "(Linux 5.2 or later)")
        _write(f, "1")
        events = os.path.join(self.path, "cgroup.events")
        self._freeze_wait(lambda: _read_keyed(events).get("frozen") == 1,
                          lambda: _write(f, "0"), timeout)

    def thaw(self) -> None:
        f = os.path.join(self.path, "cgroup.freeze")
        if os.path.exists(f):
            _write(f, "0")

    def frozen(self) -> bool:
        return _read_int(os.path.join(self.path, "cgroup.freeze")) == 1

    def update(self, limits: Limits) -> None:
        p = self.path
        if limits.memory is not None:
            _write(_need(os.path.join(p, "memory.max"), "memory"),
                   str(limits.memory) if limits.memory > 0 else "max")
        if limits.memory_swap is not None:
            mem = _read_int(os.path.join(p, "memory.max"))
            if limits.memory_swap < 0 or mem is None:
                swap = "max"
            else:
                swap = str(max(limits.memory_swap - mem, 0))
            _write(_need(os.path.join(p, "memory.swap.max"), "memory_swap"), swap)
        if limits.pids is not None:
            _write(_need(os.path.join(p, "pids.max"), "pids"),
                   str(limits.pids) if limits.pids > 0 else "max")
        if limits.cpu_quota is not None or limits.cpu_period is not None:
            f = _need(os.path.join(p, "cpu.max"), "cpu quota")
            cur = _read(f).split()
            quota = cur[0] if limits.cpu_quota is None else (
                str(limits.cpu_quota) if limits.cpu_quota > 0 else "max")
            period = str(limits.cpu_period) if limits.cpu_period else cur[1]
            _write(f, f"{quota} {period}")
        if limits.cpu_shares is not None:
            _write(_need(os.path.join(p, "cpu.weight"), "cpu shares"),
                   str(_shares_to_weight(limits.cpu_shares)))
        for value, name in ((limits.cpuset_cpus, "cpuset.cpus"),
                            (limits.cpuset_mems, "cpuset.mems")):
            if value is not None:
                _write(_need(os.path.join(p, name), name), value)

    def to_dict(self) -> Dict[str, Any]:
        return {"version": 2, "rel": self.rel, "path": self.path}


class Driver:
    """Creates cgroups in one kind of hierarchy."""

    version = 0

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        raise NotImplementedError


def _check_name(name: str, parent: str) -> str:
    """``parent/name`` after checking every part ("" as parent: directly under the root)."""
    for part in (name, *(parent.split("/") if parent else ())):
        if not part or part in (".", "..") or "/" in name:
            raise CgroupError(f"invalid cgroup name {parent}/{name}")
    return f"{parent}/{name}" if parent else name


def _blkio_lines(bio: Dict[str, Any], key: str, field: str) -> List[str]:
    return [f"{d['major']}:{d['minor']} {d[field]}" for d in bio.get(key) or []
            if d.get(field) is not None]


_V1_THROTTLE = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))
_V2_THROTTLE = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))


class V1Driver(Driver):
    version = 1

    def __init__(self, mounts: Dict[str, str]) -> None:
        self.mounts = mounts  # controller -> mount point

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        rel = _check_name(name, parent)
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
                    self._init_cpuset(os.path.dirname(path))
                _mkdir(path)
                created.append(path)
            self._apply(paths, resources)
        except OSError as e:
            self._undo(created)
            raise CgroupError(f"cannot create cgroup {rel}: {e.strerror}") from e
        except CgroupError:
            self._undo(created)
            raise
        return cg

    @staticmethod
    def _undo(created: List[str]) -> None:
        for d in reversed(created):
            try:
                _rmdir(d)
            except OSError:
                pass

    @staticmethod
    def _init_cpuset(parent: str) -> None:
        for f in ("cpuset.cpus", "cpuset.mems"):
            path = os.path.join(parent, f)
            if not _read(path).strip():
                _write(path, _read(os.path.join(os.path.dirname(parent), f)).strip())

    @staticmethod
    def _apply(paths: Dict[str, str], r: Resources) -> None:
        mem = paths.get("memory")
        if mem and r.memory_limit is not None:
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(r.memory_limit))
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                if r.memory_swap is None:
                    _write(memsw, str(r.memory_limit))
                elif r.memory_swap > 0:
                    _write(memsw, str(max(r.memory_swap, r.memory_limit)))
            elif r.memory_swap is None:
                try:
                    _write(os.path.join(mem, "memory.swappiness"), "0")
                except CgroupError:
                    pass
        pids = paths.get("pids")
        if pids and r.pids_limit is not None and r.pids_limit > 0:
            _write(os.path.join(pids, "pids.max"), str(r.pids_limit))
        cpu = paths.get("cpu")
        if cpu:
            if r.cpu_quota is not None:
                _write(os.path.join(cpu, "cpu.cfs_period_us"), str(r.cpu_period or 100000))
                _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(r.cpu_quota))
            if r.cpu_shares is not None:
                _write(os.path.join(cpu, "cpu.shares"), str(r.cpu_shares))
        cpuset = paths.get("cpuset")
        if cpuset:
            parent = os.path.dirname(cpuset)
            _write(os.path.join(cpuset, "cpuset.cpus"),
                   r.cpuset_cpus or _read(os.path.join(parent, "cpuset.cpus")).strip())
            _write(os.path.join(cpuset, "cpuset.mems"),
                   r.cpuset_mems or _read(os.path.join(parent, "cpuset.mems")).strip())
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
                _write(os.path.join(dev, name), line)
        V1Driver._apply_extra(paths, r.extra)

    @staticmethod
    def _apply_extra(paths: Dict[str, str], extra: Dict[str, Any]) -> None:
        """The rest of linux.resources that cgroup v1 can express."""
        mem = paths.get("memory")
        m = extra.get("memory") or {}
        if mem and m:
            if m.get("reservation") is not None:
                _write(os.path.join(mem, "memory.soft_limit_in_bytes"), str(m["reservation"]))
            if m.get("swappiness") is not None and 0 <= int(m["swappiness"]) <= 100:
                _write(os.path.join(mem, "memory.swappiness"), str(m["swappiness"]))
            if m.get("disableOOMKiller"):
                _write(os.path.join(mem, "memory.oom_control"), "1")
        cpu = paths.get("cpu")
        c = extra.get("cpu") or {}
        if cpu and c:
            if c.get("realtimePeriod"):
                _write(os.path.join(cpu, "cpu.rt_period_us"), str(c["realtimePeriod"]))
            if c.get("realtimeRuntime"):
                _write(os.path.join(cpu, "cpu.rt_runtime_us"), str(c["realtimeRuntime"]))
        bio = extra.get("blockIO") or {}
        blk = paths.get("blkio")
        if bio and blk:
            wfile = "blkio.weight"
            if not os.path.exists(os.path.join(blk, wfile)):
                wfile = "blkio.bfq.weight"
            if bio.get("weight"):
                _write(os.path.join(blk, wfile), str(bio["weight"]))
            for line in _blkio_lines(bio, "weightDevice", "weight"):
                _write(os.path.join(blk, wfile + "_device"), line)
            for key, fname in _V1_THROTTLE:
                for line in _blkio_lines(bio, key, "rate"):
                    _write(os.path.join(blk, fname), line)
        huge = paths.get("hugetlb")
        for h in extra.get("hugepageLimits") or []:
            if huge:
                _write(os.path.join(huge, f"hugetlb.{h['pageSize']}.limit_in_bytes"),
                       str(h["limit"]))


class V2Driver(Driver):
    version = 2

    def __init__(self, root: str) -> None:
        self.root = root

    def _enable(self, directory: str, controllers: List[str]) -> None:
        current = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
        missing = [c for c in controllers if c not in current]
        if missing:
            _write(os.path.join(directory, "cgroup.subtree_control"),
                   " ".join("+" + c for c in missing))

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        rel = _check_name(name, parent)
        try:
            available = set(_read(os.path.join(self.root, "cgroup.controllers")).split())
        except OSError as e:
            raise CgroupError(f"{self.root} is not a cgroup2 hierarchy: {e.strerror}") from e
        wanted = [c for c in V2_CONTROLLERS if c in available]
        for key, ctrl in (("blockIO", "io"), ("hugepageLimits", "hugetlb")):
            if resources.extra.get(key) and ctrl in available:
                wanted.append(ctrl)
        if resources.cpuset_cpus or resources.cpuset_mems:
            wanted.append("cpuset")
        for c in ("memory", "pids"):
            if c not in available:
                raise CgroupError(f"cgroup2 controller {c!r} is not available")
        path = os.path.join(self.root, rel)
        try:
            # Enable the controllers along the way down from the root.
            d = self.root
            for part in [x for x in parent.split("/") if x]:
                self._enable(d, wanted)
                d = os.path.join(d, part)
                if not os.path.isdir(d):
                    _mkdir(d)
            self._enable(d, wanted)
            _mkdir(path)
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

    @staticmethod
    def _apply(path: str, r: Resources) -> None:
        if r.memory_limit is not None:
            _write(os.path.join(path, "memory.max"), str(r.memory_limit))
            if r.memory_swap is None:
                swap = "0"
            elif r.memory_swap < 0:
                swap = "max"
            else:
                swap = str(max(r.memory_swap - r.memory_limit, 0))
            try:
                _write(os.path.join(path, "memory.swap.max"), swap)
            except CgroupError:
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    raise  # present but refused; absent = no swap accounting, nothing to do
        if r.pids_limit is not None and r.pids_limit > 0:
            _write(os.path.join(path, "pids.max"), str(r.pids_limit))
        if r.cpu_quota is not None:
            _write(os.path.join(path, "cpu.max"), f"{r.cpu_quota} {r.cpu_period or 100000}")
        if r.cpu_shares is not None:
            _write(os.path.join(path, "cpu.weight"), str(_shares_to_weight(r.cpu_shares)))
        if r.cpuset_cpus:
            _write(os.path.join(path, "cpuset.cpus"), r.cpuset_cpus)
        if r.cpuset_mems:
            _write(os.path.join(path, "cpuset.mems"), r.cpuset_mems)
        V2Driver._apply_extra(path, r.extra)

    @staticmethod
    def _apply_extra(path: str, extra: Dict[str, Any]) -> None:
        """The rest of linux.resources that cgroup v2 can express, then ``unified``."""
        m = extra.get("memory") or {}
        if m.get("reservation") is not None:
            _write(os.path.join(path, "memory.low"), str(m["reservation"]))
        c = extra.get("cpu") or {}
        if c.get("idle") is not None:
            _write(os.path.join(path, "cpu.idle"), str(c["idle"]))
        bio = extra.get("blockIO") or {}
        if bio.get("weight"):
            weight = 1 + (int(bio["weight"]) - 10) * 9999 // 990
            _write(os.path.join(path, "io.weight"), f"default {max(1, min(weight, 10000))}")
        for key, name in _V2_THROTTLE:
            for d in bio.get(key) or []:
                _write(os.path.join(path, "io.max"),
                       f"{d['major']}:{d['minor']} {name}={d['rate']}")
        for h in extra.get("hugepageLimits") or []:
            _write(os.path.join(path, f"hugetlb.{h['pageSize']}.max"), str(h["limit"]))
        for fname, value in (extra.get("unified") or {}).items():
            if "/" in fname or fname.startswith("."):
                raise CgroupError(f"invalid unified cgroup key {fname!r}")
            _write(os.path.join(path, fname), str(value))


def parse_mountinfo(text: str) -> List[Tuple[str, str, str]]:
    """(mount point, fs type, super options) for every cgroup/cgroup2 mount."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype = rfields[0]
        if fstype in ("cgroup", "cgroup2"):
            mnt = fields[4].replace("\\040", " ")
            out.append((mnt, fstype, rfields[2]))
    return out


def detect(mountinfo: Optional[str] = None) -> Driver:
    """Pick the driver for this machine (see the module docstring)."""
    if mountinfo is None:
        mountinfo = _read("/proc/self/mountinfo")
    mounts = parse_mountinfo(mountinfo)
    v1: Dict[str, str] = {}
    v2: List[str] = []
    for mnt, fstype, opts in mounts:
        if fstype == "cgroup2":
            v2.append(mnt)
            continue
        for opt in opts.split(","):
            if opt in ("memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer"):
                v1.setdefault(opt, mnt)
    if "/sys/fs/cgroup" in v2:
        return V2Driver("/sys/fs/cgroup")
    if "memory" in v1:
        return V1Driver(v1)
    for mnt in v2:
        try:
            if "memory" in _read(os.path.join(mnt, "cgroup.controllers")).split():
                return V2Driver(mnt)
        except OSError:
            continue
    raise CgroupError("no usable cgroup hierarchy (need cgroup v1 memory or cgroup2)")


def is_frozen(record: Optional[Dict[str, Any]]) -> bool:
    """Whether the cgroup of a to_dict() record is frozen (False when there is none or it is
    gone)."""
    if not record:
        return False
    try:
        return from_dict(record).frozen()
    except (CgroupError, OSError, KeyError):
        return False


def from_dict(d: Dict[str, Any]) -> Cgroup:
    if d.get("version") == 2:
        return CgroupV2(d["rel"], d["path"])
    return CgroupV1(d["rel"], dict(d["paths"]))
