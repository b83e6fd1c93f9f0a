"""What pycontain-oci is and offers: its version, ``features`` (the runtime-spec features
document that engines query) and ``spec`` (the default config.json ``runc spec`` writes)."""

from __future__ import annotations

import os
import sys

from pycontain.defaults import DEFAULT_PATH
from pycontain.oci.config import HOOK_KINDS, PRELOAD_ANNOTATION, SUPPORTED_NAMESPACES
from pycontain.oci.log import PROG
from pycontain.runtime import seccomp as _seccomp
from pycontain.runtime.rootfs import _FLAGS, _PROPAGATION
from pycontain.runtime.spec import (
    CAP_NUMBERS,
    DEFAULT_CAPS,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"


def default_config() -> Dict[str, Any]:
    """What ``runc spec`` writes (runtime-spec defaults), with pycontain as the hostname."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pycontain",
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def to_rootless(cfg: Dict[str, Any]) -> None:
    """``runc spec --rootless``: a user namespace mapping the caller's own uid and gid to 0,
    no network namespace (a normal user has no way to connect one), /sys bound from the host
    (sysfs needs its own network namespace), no uid=/gid= mount options (ids the map lacks)
    and no cgroup settings."""
    linux = cfg["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"]
                           if n["type"] not in ("network", "user")] + [{"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    mounts = []
    for m in cfg["mounts"]:
        if m["destination"].startswith("/sys"):
            continue
        m["options"] = [x for x in m.get("options", [])
                        if not x.startswith(("uid=", "gid="))]
        mounts.append(m)
    mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                   "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    cfg["mounts"] = mounts
    linux.pop("resources", None)


def features() -> Dict[str, Any]:
    cg_v1 = any(os.path.isdir(f"/sys/fs/cgroup/{c}") for c in ("memory", "pids"))
    cg_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    seccomp_ok = _seccomp.available()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(_FLAGS) | set(_PROPAGATION)),
        "linux": {
            "namespaces": list(SUPPORTED_NAMESPACES),
            "capabilities": sorted(CAP_NUMBERS, key=CAP_NUMBERS.__getitem__),
            "cgroup": {"v1": cg_v1, "v2": cg_v2, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": seccomp_ok,
                "actions": _seccomp.ACTIONS if seccomp_ok else [],
                "operators": _seccomp.OPERATORS if seccomp_ok else [],
                "archs": _seccomp.ARCHES if seccomp_ok else [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.opencontainers.runc.version": "",
            "io.github.pycontain.version": VERSION,
            "io.github.pycontain.libseccomp.version": _seccomp.version(),
            "io.github.pycontain.preload-annotation": PRELOAD_ANNOTATION,
        },
    }


def version() -> str:
    """What ``--version`` prints."""
    lines = [f"{PROG} version {VERSION}", f"spec: {SPEC_VERSION}",
             f"python: {sys.version.split()[0]}"]
    v = _seccomp.version()
    if v:
        lines.append(f"libseccomp: {v}")
    return "\n".join(lines) + "\n"
