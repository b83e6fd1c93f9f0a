"""The cgroup interface both drivers implement (Cgroup, Driver, Limits, CgroupError) and the
file operations they share. Every read, write, mkdir and rmdir of an interface file goes through
this module's functions, so that tests can drive the drivers against a fake hierarchy by
replacing them (where mkdir must populate the interface files, as the kernel does)."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import errno
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from pycontain.runtime.spec import Resources

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




class Driver:
    """Creates cgroups in one kind of hierarchy."""

    version = 0

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        raise NotImplementedError

    def open(self, rel: str) -> Cgroup:
        """The cgroup at ``rel`` (``parent/name``) in every hierarchy this driver uses, whether
        or not its directories exist: for removing one whose creator died before recording
        it (Cgroup.remove skips the directories that are not there)."""
        raise NotImplementedError


def relative_path(name: str, parent: str) -> str:
    """``parent/name`` after checking every part ("" as parent: directly under the root)."""
    for part in (name, *(parent.split("/") if parent else ())):
        if not part or part in (".", "..") or "/" in name:
            raise CgroupError(f"invalid cgroup name {parent}/{name}")
    return f"{parent}/{name}" if parent else name


def check_rel(rel: str) -> str:
    """``rel`` (``parent/name``, as a state record keeps it) after the same checks."""
    parent, _, name = rel.rpartition("/")
    return relative_path(name, parent)


def _blkio_lines(bio: Dict[str, Any], key: str, field: str) -> List[str]:
    return [f"{d['major']}:{d['minor']} {d[field]}" for d in bio.get(key) or []
            if d.get(field) is not None]


