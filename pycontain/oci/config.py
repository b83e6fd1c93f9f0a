"""config.json of an OCI bundle: loaded, and checked against what this runtime implements
before anything is created. What cannot be honoured safely is refused (OciError); a field that
is ignored is reported as a warning, never dropped silently."""

from __future__ import annotations

import os

from pycontain import jsonfast as json
from pycontain.errors import ContainerError
from pycontain.oci import INIT_ANNOTATION, PRELOAD_ANNOTATION, OciError  # noqa: F401

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List

SUPPORTED_NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")

# Keys of config.json this runtime implements (anything else is reported as unsupported).
_TOP = {"ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks",
        "annotations", "linux"}
_PROCESS = {"terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities", "rlimits",
            "noNewPrivileges", "oomScoreAdj"}
_USER = {"uid", "gid", "additionalGids", "umask"}
_LINUX = {"namespaces", "resources", "cgroupsPath", "devices", "maskedPaths", "readonlyPaths",
          "sysctl", "seccomp", "rootfsPropagation", "uidMappings", "gidMappings"}
_RESOURCES = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified"}
_MEMORY = {"limit", "swap", "reservation", "swappiness", "disableOOMKiller"}
_CPU = {"quota", "period", "shares", "cpus", "mems", "realtimeRuntime", "realtimePeriod", "idle"}
_BLOCKIO = {"weight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
            "throttleReadIOPSDevice", "throttleWriteIOPSDevice"}
_LINUX_IGNORED_EMPTY = {"personality"}
# Protections and controls this runtime cannot apply: accepted only when empty, else the
# container is refused (runc refuses an AppArmor profile when AppArmor is off, a network
# class without net_cls, ...): a requested protection must never be silently absent.
_REFUSED_UNLESS_EMPTY = {
    "process.apparmorProfile": "AppArmor profiles are not applied by pycontain-oci",
    "process.selinuxLabel": "SELinux labels are not applied by pycontain-oci",
    "linux.mountLabel": "SELinux mount labels are not applied by pycontain-oci",
    "linux.intelRdt": "Intel RDT (resctrl) is not supported",
    "linux.resources.network": "network classes need the net_cls/net_prio controllers, "
                               "which pycontain-oci does not manage",
    "linux.resources.rdma": "the rdma controller is not supported",
}


def load_config(bundle: str) -> Dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise OciError(f"{path} does not exist (is --bundle right?)") from None
    except ValueError as e:
        raise OciError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise OciError(f"{path}: not a JSON object")
    return data


def _unknown(d: Any, known: set, where: str, out: List[str]) -> None:
    if isinstance(d, dict):
        for k in d:
            if k not in known:
                out.append(f"{where}.{k} is not supported (ignored)")


def check_config(cfg: Dict[str, Any], driver_version: int) -> List[str]:
    """Raise OciError for what cannot be honoured safely; return one warning per field that
    is ignored (never silently)."""
    warnings: List[str] = []
    _unknown(cfg, _TOP | {"solaris", "windows", "vm", "zos"}, "config", warnings)
    for other in ("solaris", "windows", "vm", "zos"):
        if cfg.get(other):
            raise OciError(f"config.{other}: not a Linux container")
    proc = cfg.get("process")
    if not isinstance(proc, dict) or not proc.get("args"):
        raise OciError("config.json: process.args is required")
    if not (cfg.get("root") or {}).get("path"):
        raise OciError("config.json: root.path is required")
    for k, v in proc.items():
        if k in _PROCESS or _refused(f"process.{k}", v):
            continue
        warnings.append(f"process.{k} is not supported (ignored)")
    _unknown(proc.get("user"), _USER | {"username"}, "process.user", warnings)
    caps = proc.get("capabilities") or {}
    if isinstance(caps, dict):
        from pycontain.runtime.spec import caps_mask

        for kind, names in caps.items():
            try:
                caps_mask(list(names or []))
            except (ValueError, TypeError) as e:  # the spec: an unmappable value MUST fail
                raise OciError(f"process.capabilities.{kind}: {e}") from None
    for rl in proc.get("rlimits") or []:
        import resource

        if not hasattr(resource, str(rl.get("type"))):
            raise OciError(f"unknown rlimit {rl.get('type')!r}")
    linux = cfg.get("linux") or {}
    for k, v in linux.items():
        if k in _LINUX or _refused(f"linux.{k}", v):
            continue
        if k in _LINUX_IGNORED_EMPTY and not v:
            continue
        warnings.append(f"linux.{k} is not supported (ignored)")
    for ns in linux.get("namespaces") or []:
        kind = ns.get("type")
        if kind not in SUPPORTED_NAMESPACES:
            raise OciError(f"namespace type {kind!r} is not supported")
        if ns.get("path") and not os.path.exists(ns["path"]):
            raise OciError(f"namespace path {ns['path']} does not exist")
    _check_user_namespace(cfg, linux, warnings)
    _check_mount_namespace(cfg, linux, warnings)
    res = linux.get("resources") or {}
    for k, v in res.items():
        _refused(f"linux.resources.{k}", v)
    _unknown(res, _RESOURCES | {"network", "rdma"}, "linux.resources", warnings)
    _unknown(res.get("memory"), _MEMORY | {"kernel", "kernelTCP", "useHierarchy",
                                           "checkBeforeUpdate"}, "linux.resources.memory",
             warnings)
    mem = res.get("memory") or {}
    for k in ("kernel", "kernelTCP", "useHierarchy", "checkBeforeUpdate"):
        if mem.get(k) is not None:
            warnings.append(f"linux.resources.memory.{k} is not supported (ignored)")
    _unknown(res.get("cpu"), _CPU, "linux.resources.cpu", warnings)
    _unknown(res.get("blockIO"), _BLOCKIO | {"leafWeight"}, "linux.resources.blockIO", warnings)
    if (res.get("blockIO") or {}).get("leafWeight") is not None:
        warnings.append("linux.resources.blockIO.leafWeight is not supported (ignored)")
    if driver_version == 1:
        if res.get("unified"):
            raise OciError("linux.resources.unified needs cgroup v2 (this machine uses v1)")
        if (res.get("cpu") or {}).get("idle") is not None:
            warnings.append("linux.resources.cpu.idle needs cgroup v2 (ignored)")
    else:
        if mem.get("swappiness") is not None:
            warnings.append("linux.resources.memory.swappiness has no cgroup v2 equivalent "
                            "(ignored)")
        if mem.get("disableOOMKiller"):
            warnings.append("linux.resources.memory.disableOOMKiller has no cgroup v2 "
                            "equivalent (ignored)")
        if res.get("devices") and any(r.get("allow") is False for r in res["devices"]):
            warnings.append("linux.resources.devices: the cgroup v2 device controller (eBPF) "
                            "is not implemented; only the device nodes created are visible")
    for key in ("sysctl",):
        for name in (linux.get(key) or {}):
            _check_sysctl(name, linux)
    prop = linux.get("rootfsPropagation")
    if prop and prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                             "unbindable", "runbindable"):
        raise OciError(f"invalid rootfsPropagation {prop!r}")
    if linux.get("seccomp") is not None:
        from pycontain.runtime import seccomp

        try:
            warnings += seccomp.check(linux["seccomp"])
        except seccomp.SeccompError as e:
            raise OciError(str(e)) from None
    for m in cfg.get("mounts") or []:
        _unknown(m, {"destination", "type", "source", "options"}, "mounts[]", warnings)
        if not str(m.get("destination", "")).startswith("/"):
            raise OciError(f"mount destination must be absolute: {m.get('destination')!r}")
        for opt in m.get("options") or []:
            if opt in ("idmap", "ridmap", "rro", "copy-symlink"):
                warnings.append(f"mount option {opt} of {m['destination']} is not supported "
                                "(ignored)")
    hooks = cfg.get("hooks") or {}
    _unknown(hooks, set(HOOK_KINDS), "hooks", warnings)
    for kind in HOOK_KINDS:
        for h in hooks.get(kind) or []:
            if not str(h.get("path", "")).startswith("/"):
                raise OciError(f"{kind} hook path must be absolute: {h.get('path')!r}")
    return warnings


def _check_user_namespace(cfg: Dict[str, Any], linux: Dict[str, Any],
                          warnings: List[str]) -> None:
    """A new user namespace needs both maps (the kernel's rule, and runc's); maps without a
    user namespace, a process user they do not map, or ranges the kernel would refuse are
    refused here with the reason, before anything is created."""
    kinds = [n.get("type") for n in linux.get("namespaces") or []]
    if kinds.count("user") > 1:
        raise OciError("linux.namespaces lists the user namespace twice")
    user = next((n for n in linux.get("namespaces") or [] if n.get("type") == "user"), None)
    if user is None and linux.get("uidMappings") is None and linux.get("gidMappings") is None:
        return  # nothing to check (and no userns module to import)
    from pycontain.runtime import userns

    try:
        uids = userns.parse_mappings(linux.get("uidMappings"), "linux.uidMappings")
        gids = userns.parse_mappings(linux.get("gidMappings"), "linux.gidMappings")
    except ContainerError as e:
        raise OciError(str(e)) from None
    if user is None:
        if uids or gids:
            raise OciError("linux.uidMappings/gidMappings are set but linux.namespaces has no "
                           "user namespace")
        return
    if user.get("path"):
        if uids or gids:
            warnings.append("linux.uidMappings/gidMappings are ignored: the user namespace "
                            f"is joined ({user['path']}) with the maps it has")
        return
    if not uids or not gids:
        raise OciError("a new user namespace needs linux.uidMappings and linux.gidMappings")
    proc_user = (cfg.get("process") or {}).get("user") or {}
    for key, maps in (("uid", uids), ("gid", gids)):
        wanted = int(proc_user.get(key, 0) or 0)
        if not userns.maps_inside(maps, wanted):
            raise OciError(f"process.user.{key} {wanted} is not mapped in the user namespace")
    for g in proc_user.get("additionalGids") or []:
        if not userns.maps_inside(gids, int(g)):
            raise OciError(f"process.user.additionalGids: {g} is not mapped in the user "
                           "namespace")


def _refused(key: str, value: Any) -> bool:
    """True for a key of _REFUSED_UNLESS_EMPTY left empty; OciError if it has a value."""
    if key not in _REFUSED_UNLESS_EMPTY:
        return False
    if value:
        raise OciError(f"{key} is set but cannot be applied: {_REFUSED_UNLESS_EMPTY[key]}")
    return True


def _check_mount_namespace(cfg: Dict[str, Any], linux: Dict[str, Any],
                           warnings: List[str]) -> None:
    """Without a mount namespace (new or joined) the container is confined to root.path by
    chroot, and nothing is mounted: masked and read-only paths, a read-only root and
    mounts would all have to change the host's mount table, so the first three are refused
    (as runc does) and the mounts reported as not made."""
    if any(ns.get("type") == "mount" for ns in linux.get("namespaces") or []):
        return
    for key in ("maskedPaths", "readonlyPaths"):
        if linux.get(key):
            raise OciError(f"linux.{key} cannot be applied without a mount namespace")
    if (cfg.get("root") or {}).get("readonly"):
        raise OciError("root.readonly cannot be applied without a mount namespace")
    if cfg.get("mounts"):
        warnings.append("no mount namespace: the container is confined to root.path, and "
                        f"its {len(cfg['mounts'])} mounts are not made")


_NS_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl(name: str, linux: Dict[str, Any]) -> None:
    """Only sysctls that are namespaced (runc's rule): writing anything else would change the
    host."""
    kinds = {n.get("type"): n.get("path") for n in linux.get("namespaces") or []}
    if name in _NS_SYSCTLS or name.startswith("fs.mqueue."):
        if "ipc" in kinds and not kinds["ipc"]:
            return
        raise OciError(f"sysctl {name} needs a new ipc namespace")
    if name.startswith("net."):
        if "network" in kinds and not kinds["network"]:
            return
        raise OciError(f"sysctl {name} needs a new network namespace")
    if name in ("kernel.hostname", "kernel.domainname"):
        if "uts" in kinds and not kinds["uts"]:
            return
        raise OciError(f"sysctl {name} needs a new uts namespace")
    raise OciError(f"sysctl {name} is not namespaced: refused (it would change the host)")
