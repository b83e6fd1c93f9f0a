"""Cgroups: one interface (base.py), a v1 driver (v1.py) and a v2 driver (v2.py), chosen from
what the machine mounts.

``detect()`` reads /proc/self/mountinfo: cgroup2 mounted at /sys/fs/cgroup means the unified
hierarchy (v2); otherwise the v1 controllers are used (memory, pids, cpu, cpuacct, devices,
freezer and, when asked for, cpuset), each under its own mount; a cgroup2 tree mounted
elsewhere is used only if it offers the memory controller. Every cgroup the runtime creates
lives under one parent (``pycontain`` by default) of each hierarchy; nothing else is ever
written or removed. Containers can be frozen (pause) and their limits changed while they run
(update). Only the driver in use is imported.
"""

from __future__ import annotations

import os

from pycontain.runtime.cgroups import base
from pycontain.runtime.cgroups.base import (  # noqa: F401 - the interface, re-exported
    DEFAULT_PARENT,
    Cgroup,
    CgroupError,
    Driver,
    Limits,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    from pycontain.runtime.cgroups.none import NoCgroup, NoDriver, delegated  # noqa: F401

_NONE = ("NoCgroup", "NoDriver", "delegated")  # none.py: only for containers without a cgroup


def __getattr__(name: str) -> Any:
    if name in _NONE:
        from pycontain.runtime.cgroups import none

        return getattr(none, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        mountinfo = base._read("/proc/self/mountinfo")
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
        from pycontain.runtime.cgroups.v2 import V2Driver

        return V2Driver("/sys/fs/cgroup")
    if "memory" in v1:
        from pycontain.runtime.cgroups.v1 import V1Driver

        return V1Driver(v1)
    for mnt in v2:
        try:
            if "memory" in base._read(os.path.join(mnt, "cgroup.controllers")).split():
                from pycontain.runtime.cgroups.v2 import V2Driver

                return V2Driver(mnt)
        except OSError:
            continue
    raise base.CgroupError("no usable cgroup hierarchy (need cgroup v1 memory or cgroup2)")


def is_frozen(record: Optional[Dict[str, Any]]) -> bool:
    """Whether the cgroup of a to_dict() record is frozen (False when there is none or it is
    gone)."""
    if not record:
        return False
    try:
        return from_dict(record).frozen()
    except (base.CgroupError, OSError, KeyError):
        return False


def from_dict(d: Dict[str, Any]) -> Cgroup:
    """The cgroup a ``to_dict()`` record (kept in a container's state) names."""
    if d.get("version") == 0:
        from pycontain.runtime.cgroups.none import NoCgroup

        return NoCgroup(str(d.get("rel", "")), str(d.get("why", "")))
    if d.get("version") == 2:
        from pycontain.runtime.cgroups.v2 import CgroupV2

        return CgroupV2(d["rel"], d["path"])
    from pycontain.runtime.cgroups.v1 import CgroupV1

    return CgroupV1(d["rel"], dict(d["paths"]))
