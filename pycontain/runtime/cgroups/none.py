"""Containers without a cgroup (rootless mode with no delegated subtree), and the check that
picks a delegated subtree when a normal user has one.

A container without a cgroup still has its pid namespace: SIGKILL to its PID 1 ends every
process in it, so teardown needs no cgroup. What only a cgroup gives (memory, pids and cpu
limits, pause, live update, usage statistics) fails with a one-line reason instead.
"""

from __future__ import annotations

import os

from pycontain.runtime.cgroups.base import DEFAULT_PARENT, Cgroup, CgroupError, Driver, Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List

    from pycontain.runtime.spec import Resources

HOW_TO_DELEGATE = ("a normal user gets cgroups only from a delegated subtree: on cgroup v1, a "
                   "directory an administrator made in each controller's hierarchy and chowned "
                   "to the user, named by PYCONTAIN_CGROUP_PARENT; on cgroup v2, systemd's "
                   "user delegation")


class NoCgroup(Cgroup):
    """The record of a container that has no cgroup."""

    version = 0

    def __init__(self, rel: str = "", why: str = "") -> None:
        super().__init__(rel)
        self.why = why

    def procs_files(self) -> List[str]:
        return []

    def pids(self) -> List[int]:
        return []

    def stats(self) -> Dict[str, Any]:
        return {}

    def oom_kills(self) -> int:
        return 0

    def dirs(self) -> List[str]:
        return []

    def kill_all(self, sig: int = 9) -> None:
        return None  # the callers signal PID 1, which takes its pid namespace with it

    def _thaw_after_signal(self) -> None:
        return None

    def _unsupported(self, what: str) -> CgroupError:
        return CgroupError(f"{what} needs a cgroup, and this container has none ({self.why})")

    def freeze(self, timeout: float = 5.0) -> None:
        raise self._unsupported("pause")

    def thaw(self) -> None:
        raise self._unsupported("unpause")

    def frozen(self) -> bool:
        return False

    def update(self, limits: Limits) -> None:
        raise self._unsupported("update")

    def remove(self, timeout: float = 10.0) -> None:
        return None

    def to_dict(self) -> Dict[str, Any]:
        return {"version": 0, "rel": self.rel, "why": self.why}


class NoDriver(Driver):
    """Creates containers without a cgroup; refuses the limits that would need one."""

    version = 0

    def __init__(self, why: str) -> None:
        self.why = why

    def create(self, name: str, resources: Resources, parent: str = DEFAULT_PARENT) -> Cgroup:
        asked = [flag for flag, value in (
            ("--memory", resources.memory_limit), ("--memory-swap", resources.memory_swap),
            ("--pids", resources.pids_limit), ("--cpus", resources.cpu_quota),
            ("cpu shares", resources.cpu_shares), ("--cpuset-cpus", resources.cpuset_cpus),
            ("--cpuset-mems", resources.cpuset_mems)) if value is not None]
        if asked:
            raise CgroupError(f"{', '.join(asked)}: limits need a cgroup, and {self.why}")
        return NoCgroup(name, self.why)

    def open(self, rel: str) -> Cgroup:
        return NoCgroup(rel, self.why)


def delegated(driver: Driver, parent: str) -> Driver:
    """``driver`` restricted to the subtree ``parent`` if this user may create cgroups there
    (the directory exists and is writable in every hierarchy the driver would use), else a
    NoDriver saying why."""
    if isinstance(driver, NoDriver):
        return driver
    if driver.version == 1:
        from pycontain.runtime.cgroups.v1 import V1Driver

        assert isinstance(driver, V1Driver)
        # Not the devices controller: its rules need CAP_SYS_ADMIN on the host, and a user
        # namespace cannot create device nodes anyway (the host's are bound, with their
        # own permissions).
        mounts = {c: m for c, m in driver.mounts.items()
                  if c != "devices" and _writable(os.path.join(m, parent))}
        if "memory" in mounts and "pids" in mounts:
            return V1Driver(mounts)
        return NoDriver(f"no cgroup v1 subtree {parent!r} is delegated to uid {os.geteuid()} "
                        f"({HOW_TO_DELEGATE})")
    sub = os.path.join(getattr(driver, "root", "/sys/fs/cgroup"), parent)
    if _writable(sub) and os.access(os.path.join(sub, "cgroup.procs"), os.W_OK):
        return driver
    return NoDriver(f"no cgroup v2 subtree {parent!r} is delegated to uid {os.geteuid()} "
                    f"({HOW_TO_DELEGATE})")


def _writable(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK)
