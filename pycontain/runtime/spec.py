"""The OCI runtime-spec configuration model (the parts pycontain implements).

Mirrors ``config.json`` of the OCI runtime-spec: process, root, hostname, mounts,
linux.namespaces, linux.resources, linux.devices, maskedPaths, readonlyPaths. ``to_dict`` and
``from_dict`` use the spec's JSON keys, so a bundle's config.json loads as is (unknown keys are
kept in ``extra`` and ignored by the runtime). The docker-like CLI builds a Spec from its flags
with :func:`default_spec`, which matches ``runc spec``'s defaults.
"""

from __future__ import annotations

from pycontain.defaults import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses cost ~10ms of import time: the CLI must start fast
    from typing import Any, Dict, List, Optional


OCI_VERSION = "1.0.2"

# runc's default capability set (``runc spec``).
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}  # fmt: skip

# runc's defaults for masked and read-only paths.
DEFAULT_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]  # fmt: skip
DEFAULT_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]



class _Factory:
    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn


_REQ = object()


class _Record:
    """A tiny dataclass replacement (dataclasses cost ~10ms of import time on the CLI path).

    Subclasses list ``_fields`` as (name, default) pairs; a default may be ``_REQ`` (required)
    or ``_Factory(callable)``.
    """

    _fields: tuple = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes at most {len(fields)} arguments")
        for (name, _), value in zip(fields, args):
            setattr(self, name, value)
        for name, default in fields[len(args) :]:
            if name in kwargs:
                setattr(self, name, kwargs.pop(name))
            elif default is _REQ:
                raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
            elif isinstance(default, _Factory):
                setattr(self, name, default.fn())
            else:
                setattr(self, name, default)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected {sorted(kwargs)}")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n, _ in self._fields
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self._fields)
        return f"{type(self).__name__}({inner})"


def caps_mask(names: List[str]) -> int:
    """Bit mask of capability names ("CAP_KILL" or "kill"); unknown names raise ValueError."""
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key not in CAP_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAP_NUMBERS[key]
    return mask


class User(_Record):
    uid: int
    gid: int
    additional_gids: List[int]
    umask: Optional[int]
    _fields = (("uid", 0), ("gid", 0), ("additional_gids", _Factory(list)), ("umask", None))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            d["additionalGids"] = list(self.additional_gids)
        if self.umask is not None:
            d["umask"] = self.umask
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> User:
        umask = d.get("umask")
        return cls(int(d.get("uid", 0)), int(d.get("gid", 0)),
                   [int(g) for g in d.get("additionalGids", None) or []],
                   None if umask is None else int(umask))


class Capabilities(_Record):
    bounding: List[str]
    effective: List[str]
    permitted: List[str]
    inheritable: List[str]
    ambient: List[str]
    _fields = (
        ("bounding", _Factory(lambda: list(DEFAULT_CAPS))),
        ("effective", _Factory(lambda: list(DEFAULT_CAPS))),
        ("permitted", _Factory(lambda: list(DEFAULT_CAPS))),
        ("inheritable", _Factory(list)),
        ("ambient", _Factory(list)),
    )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "bounding": list(self.bounding),
            "effective": list(self.effective),
            "permitted": list(self.permitted),
            "inheritable": list(self.inheritable),
            "ambient": list(self.ambient),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Capabilities:
        return cls(
            *(
                list(d.get(k, None) or [])
                for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
            )
        )


class Rlimit(_Record):
    type: str
    hard: int
    soft: int
    _fields = (("type", _REQ), ("hard", _REQ), ("soft", _REQ))

    def to_dict(self) -> Dict[str, Any]:
        return {"type": self.type, "hard": self.hard, "soft": self.soft}


class Process(_Record):
    args: List[str]
    env: List[str]
    cwd: str
    terminal: bool
    user: User
    capabilities: Optional[Capabilities]
    rlimits: List[Rlimit]
    no_new_privileges: bool
    oom_score_adj: Optional[int]
    extra: Dict[str, Any]  # keys of the spec this model does not know (kept for round trips)
    _fields = (
        ("args", _Factory(list)),
        ("env", _Factory(lambda: [f"PATH={DEFAULT_PATH}"])),
        ("cwd", "/"),
        ("terminal", False),
        ("user", _Factory(User)),
        ("capabilities", _Factory(Capabilities)),
        ("rlimits", _Factory(list)),
        ("no_new_privileges", True),
        ("oom_score_adj", None),
        ("extra", _Factory(dict)),
    )

    _KNOWN = frozenset(("args", "env", "cwd", "terminal", "user", "capabilities", "rlimits",
                        "noNewPrivileges", "oomScoreAdj"))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update({
            "terminal": self.terminal,
            "user": self.user.to_dict(),
            "args": list(self.args),
            "env": list(self.env),
            "cwd": self.cwd,
            "noNewPrivileges": self.no_new_privileges,
        })
        if self.capabilities is not None:
            d["capabilities"] = self.capabilities.to_dict()
        if self.rlimits:
            d["rlimits"] = [r.to_dict() for r in self.rlimits]
        if self.oom_score_adj is not None:
            d["oomScoreAdj"] = self.oom_score_adj
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Process:
        caps = d.get("capabilities")
        oom = d.get("oomScoreAdj")
        return cls(
            args=list(d.get("args", None) or []),
            env=list(d.get("env", None) or []),
            cwd=d.get("cwd", "/") or "/",
            terminal=bool(d.get("terminal", False)),
            user=User.from_dict(d.get("user", None) or {}),
            capabilities=None if caps is None else Capabilities.from_dict(caps),
            rlimits=[
                Rlimit(r["type"], int(r["hard"]), int(r["soft"]))
                for r in d.get("rlimits", None) or []
            ],
            no_new_privileges=bool(d.get("noNewPrivileges", False)),
            oom_score_adj=None if oom is None else int(oom),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )

    def getenv(self, key: str) -> Optional[str]:
        prefix = key + "="
        for item in reversed(self.env):
            if item.startswith(prefix):
                return item[len(prefix) :]
        return None


class Root(_Record):
    path: str
    readonly: bool
    _fields = (("path", "rootfs"), ("readonly", False))

    def to_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "readonly": self.readonly}


class Mount(_Record):
    destination: str
    type: str
    source: str
    options: List[str]
    _fields = (("destination", _REQ), ("type", "bind"), ("source", ""), ("options", _Factory(list)))

    def to_dict(self) -> Dict[str, Any]:
        return {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Mount:
        return cls(
            d["destination"],
            d.get("type", "bind") or "bind",
            d.get("source", "") or "",
            list(d.get("options", None) or []),
        )


class Namespace(_Record):
    type: str
    path: str
    _fields = (("type", _REQ), ("path", ""))

    def to_dict(self) -> Dict[str, Any]:
        d = {"type": self.type}
        if self.path:
            d["path"] = self.path
        return d


class Device(_Record):
    path: str
    type: str  # "c" (or "u"), "b", or "p" (a FIFO, which has no device numbers)
    major: int
    minor: int
    file_mode: int
    uid: int
    gid: int
    _fields = (
        ("path", _REQ),
        ("type", _REQ),
        ("major", _REQ),
        ("minor", _REQ),
        ("file_mode", 0o666),
        ("uid", 0),
        ("gid", 0),
    )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "major": self.major,
            "minor": self.minor,
            "fileMode": self.file_mode,
            "uid": self.uid,
            "gid": self.gid,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Device:
        kind = d.get("type", "c")
        return cls(
            d["path"],
            kind,
            int(d.get("major", 0) if kind == "p" else d["major"]),
            int(d.get("minor", 0) if kind == "p" else d["minor"]),
            int(d.get("fileMode", 0o666)),
            int(d.get("uid", 0)),
            int(d.get("gid", 0)),
        )


# The devices every container gets (runc creates the same set regardless of the config).
DEFAULT_DEVICES = [
    Device("/dev/null", "c", 1, 3),
    Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7),
    Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9),
    Device("/dev/tty", "c", 5, 0),
]
# Device cgroup rules allowing exactly those devices plus ptmx and the pts ones.
DEFAULT_DEVICE_RULES: List[Dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    *(
        {"allow": True, "type": "c", "major": d.major, "minor": d.minor, "access": "rwm"}
        for d in DEFAULT_DEVICES
    ),
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


class Resources(_Record):
    memory_limit: Optional[int]  # bytes
    memory_swap: Optional[int]  # bytes of memory+swap (OCI semantics); None = no swap
    pids_limit: Optional[int]
    cpu_quota: Optional[int]  # microseconds per period
    cpu_period: Optional[int]
    cpu_shares: Optional[int]
    cpuset_cpus: Optional[str]
    cpuset_mems: Optional[str]
    devices: List[Dict[str, Any]]
    _fields = (
        ("memory_limit", None),
        ("memory_swap", None),
        ("pids_limit", None),
        ("cpu_quota", None),
        ("cpu_period", None),
        ("cpu_shares", None),
        ("cpuset_cpus", None),
        ("cpuset_mems", None),
        ("devices", _Factory(lambda: list(DEFAULT_DEVICE_RULES))),
        ("extra", _Factory(dict)),
    )
    # The rest of linux.resources (memory.reservation, blockIO, hugepageLimits, unified, ...):
    # kept as in the spec, applied by the cgroup drivers where they can.
    extra: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {}
        mem = {
            k: v
            for k, v in (("limit", self.memory_limit), ("swap", self.memory_swap))
            if v is not None
        }
        if mem:
            d["memory"] = mem
        if self.pids_limit is not None:
            d["pids"] = {"limit": self.pids_limit}
        cpu = {
            k: v
            for k, v in (
                ("quota", self.cpu_quota),
                ("period", self.cpu_period),
                ("shares", self.cpu_shares),
                ("cpus", self.cpuset_cpus),
                ("mems", self.cpuset_mems),
            )
            if v is not None
        }
        if cpu:
            d["cpu"] = cpu
        d["devices"] = [dict(r) for r in self.devices]
        for k, v in self.extra.items():
            if isinstance(v, dict) and isinstance(d.get(k), dict):
                d[k] = {**v, **d[k]}
            else:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Resources:
        mem = d.get("memory", {}) or {}
        cpu = d.get("cpu", {}) or {}
        pids = d.get("pids", {}) or {}
        extra: Dict[str, Any] = {}
        for key, value in d.items():
            if key in ("memory", "cpu", "pids"):
                known = _MODELED[key]
                rest = {k: v for k, v in (value or {}).items() if k not in known}
                if rest:
                    extra[key] = rest
            elif key != "devices":
                extra[key] = value
        return cls(
            memory_limit=mem.get("limit"),
            memory_swap=mem.get("swap"),
            pids_limit=pids.get("limit"),
            cpu_quota=cpu.get("quota"),
            cpu_period=cpu.get("period"),
            cpu_shares=cpu.get("shares"),
            cpuset_cpus=cpu.get("cpus") or None,
            cpuset_mems=cpu.get("mems") or None,
            devices=list(d.get("devices", None) or []),
            extra=extra,
        )


_MODELED = {"memory": ("limit", "swap"), "cpu": ("quota", "period", "shares", "cpus", "mems"),
            "pids": ("limit",)}


class Linux(_Record):
    namespaces: List[Namespace]
    resources: Resources
    devices: List[Device]
    masked_paths: List[str]
    readonly_paths: List[str]
    cgroups_path: str
    sysctl: Dict[str, str]
    seccomp: Optional[Dict[str, Any]]
    rootfs_propagation: str
    uid_mappings: List[Dict[str, int]]
    gid_mappings: List[Dict[str, int]]
    extra: Dict[str, Any]
    _fields = (
        (
            "namespaces",
            _Factory(
                lambda: [Namespace(t) for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
            ),
        ),
        ("resources", _Factory(Resources)),
        ("devices", _Factory(list)),
        ("masked_paths", _Factory(lambda: list(DEFAULT_MASKED_PATHS))),
        ("readonly_paths", _Factory(lambda: list(DEFAULT_READONLY_PATHS))),
        ("cgroups_path", ""),
        ("sysctl", _Factory(dict)),
        ("seccomp", None),
        ("rootfs_propagation", ""),
        ("uid_mappings", _Factory(list)),
        ("gid_mappings", _Factory(list)),
        ("extra", _Factory(dict)),
    )

    _KNOWN = frozenset(("namespaces", "resources", "devices", "maskedPaths", "readonlyPaths",
                        "cgroupsPath", "sysctl", "seccomp", "rootfsPropagation", "uidMappings",
                        "gidMappings"))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update({
            "namespaces": [n.to_dict() for n in self.namespaces],
            "resources": self.resources.to_dict(),
            "maskedPaths": list(self.masked_paths),
            "readonlyPaths": list(self.readonly_paths),
        })
        if self.devices:
            d["devices"] = [x.to_dict() for x in self.devices]
        if self.cgroups_path:
            d["cgroupsPath"] = self.cgroups_path
        if self.sysctl:
            d["sysctl"] = dict(self.sysctl)
        if self.seccomp is not None:
            d["seccomp"] = self.seccomp
        if self.rootfs_propagation:
            d["rootfsPropagation"] = self.rootfs_propagation
        if self.uid_mappings:
            d["uidMappings"] = list(self.uid_mappings)
        if self.gid_mappings:
            d["gidMappings"] = list(self.gid_mappings)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Linux:
        return cls(
            namespaces=[Namespace(n["type"], n.get("path", "") or "")
                        for n in d.get("namespaces", None) or []],
            resources=Resources.from_dict(d.get("resources", {}) or {}),
            devices=[Device.from_dict(x) for x in d.get("devices", None) or []],
            masked_paths=list(d.get("maskedPaths", None) or []),
            readonly_paths=list(d.get("readonlyPaths", None) or []),
            cgroups_path=d.get("cgroupsPath", "") or "",
            sysctl={str(k): str(v) for k, v in (d.get("sysctl", None) or {}).items()},
            seccomp=d.get("seccomp"),
            rootfs_propagation=d.get("rootfsPropagation", "") or "",
            uid_mappings=list(d.get("uidMappings", None) or []),
            gid_mappings=list(d.get("gidMappings", None) or []),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )

    def has_namespace(self, kind: str) -> bool:
        return any(n.type == kind and not n.path for n in self.namespaces)


def default_mounts() -> List[Mount]:
    """The mounts of ``runc spec`` (minus /sys/fs/cgroup)."""
    return [
        Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        Mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        Mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
    ]


class Spec(_Record):
    process: Process
    root: Root
    hostname: str
    mounts: List[Mount]
    linux: Linux
    annotations: Dict[str, str]
    oci_version: str
    extra: Dict[str, Any]
    hooks: Dict[str, List[Dict[str, Any]]]
    domainname: str
    _fields = (
        ("process", _Factory(Process)),
        ("root", _Factory(Root)),
        ("hostname", ""),
        ("mounts", _Factory(default_mounts)),
        ("linux", _Factory(Linux)),
        ("annotations", _Factory(dict)),
        ("oci_version", OCI_VERSION),
        ("extra", _Factory(dict)),
        ("hooks", _Factory(dict)),
        ("domainname", ""),
    )

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.extra)
        d.update(
            {
                "ociVersion": self.oci_version,
                "process": self.process.to_dict(),
                "root": self.root.to_dict(),
                "hostname": self.hostname,
                "mounts": [m.to_dict() for m in self.mounts],
                "linux": self.linux.to_dict(),
            }
        )
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.hooks:
            d["hooks"] = {k: list(v) for k, v in self.hooks.items()}
        if self.domainname:
            d["domainname"] = self.domainname
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Spec:
        known = {"ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations",
                 "hooks", "domainname"}
        root = d.get("root", {}) or {}
        return cls(
            process=Process.from_dict(d.get("process", {}) or {}),
            root=Root(root.get("path", "rootfs"), bool(root.get("readonly", False))),
            hostname=d.get("hostname", "") or "",
            mounts=[Mount.from_dict(m) for m in d.get("mounts", None) or []],
            linux=Linux.from_dict(d.get("linux", {}) or {}),
            annotations=dict(d.get("annotations", {}) or {}),
            oci_version=d.get("ociVersion", OCI_VERSION),
            extra={k: v for k, v in d.items() if k not in known},
            hooks={k: list(v or []) for k, v in (d.get("hooks", None) or {}).items()},
            domainname=d.get("domainname", "") or "",
        )


def default_spec(args: Optional[List[str]] = None) -> Spec:
    """A config equivalent to ``runc spec`` (plus a cgroup namespace) running ``args``."""
    spec = Spec()
    spec.process.args = list(args or [])
    return spec
