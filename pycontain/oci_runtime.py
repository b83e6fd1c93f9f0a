"""The OCI runtime operations (create, start, state, kill, delete, exec, list, ps) on pycontain's
runtime core: the same state directories, cgroup drivers, rootfs setup and container process
(:mod:`pycontain.container`) as the docker-like ``pycontain``; this module only maps the OCI
runtime-spec lifecycle onto them.

Lifecycle (runtime-spec "Lifecycle", runc's process model):

* ``create``: read ``<bundle>/config.json``, report what is not supported, claim
  ``<root>/<id>/`` (status ``creating``), create the cgroup (``linux.cgroupsPath``), fork the
  container process, which sets up every namespace, mount, device, sysctl, rlimit, capability,
  the console and (without noNewPrivileges) seccomp, then blocks on ``<root>/<id>/exec.fifo``;
  prestart/createRuntime hooks run here when it asks (before its pivot_root), createContainer
  hooks in it. Status ``created``, ``--pid-file`` written, the command exits: the container
  process is reparented (to the engine's subreaper, e.g. conmon, which reaps it).
* ``start``: one byte into the fifo; the process runs the startContainer hooks and execs the
  user program. Status ``running``; poststart hooks run.
* ``state``: status is never taken from the file alone: a recorded pid that no longer exists
  (or was reused: start times are compared) means ``stopped``.
* ``kill``: a signal to the container process (``--all``: to every process of its cgroup).
* ``delete``: only a stopped container (``--force``: kill it first); cgroup and state removed,
  poststop hooks run.
"""

from __future__ import annotations

import json
import os
import signal
import time

from pycontain import cgroups
from pycontain.container import (
    POLICIES,
    Container,
    ContainerError,
    Runtime,
    _cgroup_of,
    _destroy,
    _kill_now,
    _signal_pid,
    _undo_create,
    add_preload,
    parse_signal,
)
from pycontain.process import Launch, _run_hooks
from pycontain.spec import DEFAULT_DEVICE_RULES, Spec
from pycontain.state import StateDir, StateError, alive, list_names, proc_start_time, valid_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

DEFAULT_ROOT = "/run/pycontain-oci"
PRELOAD_ANNOTATION = "org.pyalloc.preload"
INIT_ANNOTATION = "org.pycontain.init"
FIFO = "exec.fifo"

SUPPORTED_NAMESPACES = ("pid", "network", "ipc", "uts", "mount", "cgroup")
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
_LINUX_IGNORED_EMPTY = {"mountLabel", "intelRdt", "personality"}
_PROCESS_IGNORED_EMPTY = {"apparmorProfile", "selinuxLabel"}
# Fields a runtime may ignore: they only matter to security modules this machine lacks.
_SECURITY_MODULES = {"apparmorProfile": "/sys/kernel/security/apparmor",
                     "selinuxLabel": "/sys/fs/selinux", "mountLabel": "/sys/fs/selinux"}


class OciError(ContainerError):
    """An OCI operation failed (runc's convention: exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


# ---------------------------------------------------------------------------------------------
# config.json


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
        if k in _PROCESS:
            continue
        if k in _SECURITY_MODULES and (not v or not os.path.exists(_SECURITY_MODULES[k])):
            if v:
                warnings.append(f"process.{k} ignored: the security module is not enabled")
            continue
        if k in _PROCESS_IGNORED_EMPTY and not v:
            continue
        warnings.append(f"process.{k} is not supported (ignored)")
    _unknown(proc.get("user"), _USER | {"username"}, "process.user", warnings)
    for rl in proc.get("rlimits") or []:
        import resource

        if not hasattr(resource, str(rl.get("type"))):
            raise OciError(f"unknown rlimit {rl.get('type')!r}")
    linux = cfg.get("linux") or {}
    for k, v in linux.items():
        if k in _LINUX:
            continue
        if k in _SECURITY_MODULES and not os.path.exists(_SECURITY_MODULES[k]):
            if v:
                warnings.append(f"linux.{k} ignored: the security module is not enabled")
            continue
        if k in _LINUX_IGNORED_EMPTY and not v:
            continue
        warnings.append(f"linux.{k} is not supported (ignored)")
    for ns in linux.get("namespaces") or []:
        kind = ns.get("type")
        if kind == "user":
            raise OciError("user namespaces (rootless / idmapped containers) are not supported")
        if kind not in SUPPORTED_NAMESPACES:
            raise OciError(f"namespace type {kind!r} is not supported")
        if ns.get("path") and not os.path.exists(ns["path"]):
            raise OciError(f"namespace path {ns['path']} does not exist")
    if linux.get("uidMappings") or linux.get("gidMappings"):
        raise OciError("uid/gid mappings need a user namespace, which is not supported")
    res = linux.get("resources") or {}
    _unknown(res, _RESOURCES, "linux.resources", warnings)
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
        from pycontain import oci_seccomp

        try:
            warnings += oci_seccomp.check(linux["seccomp"])
        except oci_seccomp.SeccompError as e:
            raise OciError(str(e)) from None
    for m in cfg.get("mounts") or []:
        _unknown(m, {"destination", "type", "source", "options"}, "mounts[]", warnings)
        if not str(m.get("destination", "")).startswith("/"):
            raise OciError(f"mount destination must be absolute: {m.get('destination')!r}")
        for opt in m.get("options") or []:
            if opt in ("tmpcopyup", "idmap", "ridmap", "rro", "copy-symlink"):
                warnings.append(f"mount option {opt} of {m['destination']} is not supported "
                                "(ignored)")
    hooks = cfg.get("hooks") or {}
    _unknown(hooks, set(HOOK_KINDS), "hooks", warnings)
    for kind in HOOK_KINDS:
        for h in hooks.get(kind) or []:
            if not str(h.get("path", "")).startswith("/"):
                raise OciError(f"{kind} hook path must be absolute: {h.get('path')!r}")
    return warnings


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


def _cgroup_location(path: str, cid: str) -> List[str]:
    """(parent, name) of the container's cgroup from linux.cgroupsPath."""
    if not path:
        return [cgroups.DEFAULT_PARENT + "-oci", cid]
    if ":" in path:
        raise OciError(f"cgroupsPath {path!r} is a systemd slice: systemd cgroups are not "
                       "supported (use cgroupfs, e.g. cgroup_manager=\"cgroupfs\" for podman)")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise OciError(f"invalid cgroupsPath {path!r}")
    return ["/".join(parts[:-1]), parts[-1]]


def _device_rules(spec: Spec) -> List[Dict[str, Any]]:
    """The config's device rules, then (like runc) the devices every container gets and the
    nodes listed in linux.devices."""
    rules = list(spec.linux.resources.devices)
    rules += [r for r in DEFAULT_DEVICE_RULES if r.get("allow")]
    rules += [{"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"}]
    for d in spec.linux.devices:
        rules.append({"allow": True, "type": d.type if d.type in ("b", "c") else "c",
                      "major": d.major, "minor": d.minor, "access": "rwm"})
    return rules


def rfc3339(t: float) -> str:
    frac = f"{t % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + frac + "Z"


# ---------------------------------------------------------------------------------------------
# the runtime


class OciRuntime:
    """OCI operations over pycontain's runtime core, with its state under ``root``."""

    def __init__(self, root: Optional[str] = None,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        self.root = os.path.abspath(root or DEFAULT_ROOT)
        self.rt = Runtime(root=self.root, storage=os.path.join(self.root, ".storage"))
        self.warn = warn or (lambda msg: None)

    # -- lookup ------------------------------------------------------------------------------
    def _dir(self, cid: str) -> StateDir:
        if not cid:
            raise OciError("container id cannot be empty")
        if not valid_name(cid):
            raise OciError(f"invalid container id {cid!r}")
        return StateDir(self.root, cid)

    def _read(self, cid: str) -> Dict[str, Any]:
        try:
            return self._dir(cid).read()
        except StateError:
            raise OciError(f"container {cid} does not exist") from None
        except ValueError:
            raise OciError(f"state of container {cid} is corrupt") from None

    @staticmethod
    def status_of(s: Dict[str, Any]) -> str:
        status = str(s.get("status", "stopped"))
        if status in ("created", "running") and not alive(s.get("pid"), s.get("pid_start")):
            return "stopped"
        if status == "creating" and s.get("pid") and not alive(s.get("pid"), s.get("pid_start")):
            return "stopped"
        if status in ("created", "running") and cgroups.is_frozen(s.get("cgroup")):
            return "paused"
        return status

    def state(self, cid: str) -> Dict[str, Any]:
        """The OCI state of container ``cid`` (runtime-spec "State", plus runc's extras)."""
        s = self._read(cid)
        status = self.status_of(s)
        return {
            "ociVersion": s.get("ociVersion", "1.0.2"),
            "id": cid,
            "pid": int(s.get("pid") or 0) if status != "stopped" else 0,
            "status": status,
            "bundle": s.get("bundle", ""),
            "rootfs": s.get("rootfs", ""),
            "created": s.get("created_at", ""),
            "owner": "",
            "annotations": dict(s.get("annotations") or {}),
        }

    def _oci_state(self, s: Dict[str, Any], status: str, pid: Optional[int] = None) -> Dict:
        return {"ociVersion": s.get("ociVersion", "1.0.2"), "id": s["id"], "status": status,
                "pid": int(pid if pid is not None else s.get("pid") or 0),
                "bundle": s.get("bundle", ""), "annotations": dict(s.get("annotations") or {})}

    def list(self) -> List[Dict[str, Any]]:
        out = []
        for name in list_names(self.root):
            try:
                out.append(self.state(name))
            except OciError:
                continue
        return out

    # -- create ------------------------------------------------------------------------------
    def create(self, cid: str, bundle: str, pid_file: Optional[str] = None,
               console_socket: Optional[str] = None, preserve_fds: int = 0) -> int:
        """Set the container up and leave its process blocked before the user program."""
        if os.geteuid() != 0:
            raise OciError("pycontain-oci must run as root (rootless containers are not "
                           "supported)")
        sdir = self._dir(cid)
        bundle = os.path.abspath(bundle or ".")
        cfg = load_config(bundle)
        driver = self.rt.driver
        for w in check_config(cfg, driver.version):
            self.warn(w)
        try:
            spec = Spec.from_dict(cfg)
        except (KeyError, TypeError, ValueError) as e:
            raise OciError(f"config.json: invalid value: {e}") from None
        root = spec.root.path
        root = os.path.realpath(root if os.path.isabs(root) else os.path.join(bundle, root))
        if not os.path.isdir(root):
            raise OciError(f"root.path {root} is not a directory")
        spec.root.path = root
        policy = spec.annotations.get(PRELOAD_ANNOTATION)
        if policy is not None and policy not in POLICIES:
            raise OciError(f"annotation {PRELOAD_ANNOTATION}: invalid policy {policy!r} "
                           f"(one of {', '.join(POLICIES)})")
        if spec.process.terminal and not console_socket:
            raise OciError("process.terminal is true: --console-socket is required")
        if console_socket and not spec.process.terminal:
            raise OciError("--console-socket given but process.terminal is false")
        parent, name = _cgroup_location(spec.linux.cgroups_path, cid)
        spec.linux.resources.devices = _device_rules(spec)
        try:
            sdir.claim()
        except StateError as e:
            raise OciError(f"container {cid} already exists" if "in use" in str(e)
                           else str(e)) from None
        cg: Optional[cgroups.Cgroup] = None
        pid = 0
        sock = None
        try:
            if policy is not None:
                add_preload(spec, sdir, policy)
            cg = driver.create(name, spec.linux.resources, parent)
            spec.linux.cgroups_path = "/" + cg.rel
            now = time.time()
            state: Dict[str, Any] = {
                "ociVersion": spec.oci_version, "id": cid, "name": cid, "status": "creating",
                "pid": 0, "bundle": bundle, "rootfs": root,
                "annotations": dict(spec.annotations), "created": now,
                "created_at": rfc3339(now), "oci": True, "init": False,
                "preload": policy, "cgroup": cg.to_dict(), "exit_code": None,
                "oom_killed": False, "command": list(spec.process.args), "lowers": None,
                "container_dir": None,
            }
            sdir.write_json("config.json", spec.to_dict())
            with sdir.lock():
                sdir.write(state)
            fifo = sdir.file(FIFO)
            os.mkfifo(fifo, 0o600)
            console = -1
            if console_socket:
                import socket

                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(console_socket)
                except OSError as e:
                    raise OciError(f"cannot connect to console socket {console_socket}: "
                                   f"{e.strerror}") from None
                console = sock.fileno()
            init = spec.annotations.get(INIT_ANNOTATION, "").lower() in ("1", "true", "yes")
            launch = Launch(fifo=fifo, console=console, preserve_fds=preserve_fds, init=init,
                            hook_state=self._oci_state(state, "creating"))
            c = Container(self.rt, cid)
            c._spec = spec
            c._state = state
            hooks = spec.hooks
            runtime_hooks = None
            if hooks.get("prestart") or hooks.get("createRuntime"):
                def runtime_hooks(child: int) -> None:
                    st = self._oci_state(state, "creating", child)
                    _run_hooks(hooks.get("prestart") or [], st, "prestart")
                    _run_hooks(hooks.get("createRuntime") or [], st, "createRuntime")
            if spec.linux.seccomp is not None:
                self.prepare_seccomp(spec.linux.seccomp)
            pid = c.spawn_created(launch, runtime_hooks)
            sdir.update(status="created", pid=pid, pid_start=proc_start_time(pid))
            if pid_file:
                _write_pid_file(pid_file, pid)
        except BaseException as e:
            if pid:
                _signal_pid(pid, None, signal.SIGKILL)
            _undo_create(e, OciError, sdir, cg, None)
            raise
        finally:
            if sock is not None:
                sock.close()
        return pid

    def prepare_seccomp(self, cfg: Dict[str, Any]) -> None:
        from pycontain import oci_seccomp

        try:
            oci_seccomp.prepare(cfg, os.path.join(self.root, ".seccomp-cache"))
        except oci_seccomp.SeccompError as e:
            raise OciError(str(e)) from None

    # -- start -------------------------------------------------------------------------------
    def start(self, cid: str) -> None:
        import errno

        sdir = self._dir(cid)
        s = self._read(cid)
        status = self.status_of(s)
        if status != "created":
            raise OciError(f"cannot start container {cid}: it is {status}, not created")
        try:
            fd = os.open(sdir.file(FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):
                raise OciError(f"cannot start container {cid}: its process is not waiting "
                               "(already started?)") from None
            raise
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        try:
            os.unlink(sdir.file(FIFO))
        except OSError:
            pass
        s = sdir.update(status="running", started=time.time())
        hooks = self._hooks(sdir)
        for h in hooks.get("poststart") or []:
            try:
                _run_hooks([h], self._oci_state(s, "running"), "poststart")
            except ContainerError as e:
                self.warn(str(e))

    def _hooks(self, sdir: StateDir) -> Dict[str, List[Dict[str, Any]]]:
        try:
            with open(sdir.file("config.json")) as f:
                return dict(json.load(f).get("hooks") or {})
        except (OSError, ValueError):
            return {}

    # -- kill / delete -----------------------------------------------------------------------
    def kill(self, cid: str, sig: str = "SIGTERM", all_processes: bool = False) -> None:
        s = self._read(cid)
        status = self.status_of(s)
        try:
            signum = parse_signal(sig)
        except ContainerError as e:
            raise OciError(str(e)) from None
        if status not in ("created", "running", "paused"):
            raise OciError(f"cannot kill container {cid}: it is {status}")
        cg = _cgroup_of(s)
        if all_processes and cg is not None:
            cg.kill_all(signum)
        _signal_pid(int(s["pid"]), s.get("pid_start"), signum)
        if cg is not None and status == "paused" and signum == signal.SIGKILL:
            cg.thaw()  # as runc: a paused container that is SIGKILLed dies at once

    # -- pause / resume / update ----------------------------------------------------------------
    def _live_cgroup(self, cid: str, verb: str, want: Sequence[str]) -> cgroups.Cgroup:
        s = self._read(cid)
        status = self.status_of(s)
        if status not in want:
            raise OciError(f"cannot {verb} container {cid}: it is {status}")
        if not s.get("cgroup"):
            raise OciError(f"cannot {verb} container {cid}: it has no cgroup")
        return cgroups.from_dict(s["cgroup"])

    def pause(self, cid: str) -> None:
        try:
            self._live_cgroup(cid, "pause", ("created", "running")).freeze()
        except cgroups.CgroupError as e:
            raise OciError(f"cannot pause container {cid}: {e}") from None

    def resume(self, cid: str) -> None:
        try:
            self._live_cgroup(cid, "resume", ("paused",)).thaw()
        except cgroups.CgroupError as e:
            raise OciError(f"cannot resume container {cid}: {e}") from None

    def stats(self, cid: str) -> Dict[str, Any]:
        """runc events' stats record ("data" of a {"type": "stats"} event) for a live
        container: cpu, memory and pids in runc's field names."""
        st = self._live_cgroup(cid, "read the stats of",
                               ("created", "running", "paused")).stats()
        usec = st.get("cpu_usage_usec")
        return {
            "cpu": {"usage": {"total": None if usec is None else usec * 1000},
                    "throttling": {"throttledPeriods": st.get("cpu_nr_throttled"),
                                   "throttledTime": None if st.get("cpu_throttled_usec") is None
                                   else st["cpu_throttled_usec"] * 1000}},
            "memory": {"usage": {"usage": st.get("memory_current"),
                                 "max": st.get("memory_peak"),
                                 "limit": st.get("memory_limit"),
                                 "failcnt": st.get("memory_failcnt")},
                       "oom_kills": st.get("oom_kills", 0)},
            "pids": {"current": st.get("pids_current"), "limit": st.get("pids_limit")},
        }

    def update(self, cid: str, limits: cgroups.Limits) -> None:
        """runc update: new limits for a live container (None fields unchanged)."""
        if limits.empty():
            raise OciError("update: no resources to change")
        try:
            self._live_cgroup(cid, "update", ("created", "running", "paused")).update(limits)
        except cgroups.CgroupError as e:
            raise OciError(f"cannot update container {cid}: {e}") from None

    def delete(self, cid: str, force: bool = False) -> None:
        sdir = self._dir(cid)
        s = self._read(cid)
        status = self.status_of(s)
        if status != "stopped" and not force:
            raise OciError(f"cannot delete container {cid}: it is {status} (not stopped); "
                           "use --force")
        cg = _cgroup_of(s)
        if status != "stopped":
            _kill_now(s, cg)
        hooks = self._hooks(sdir)
        try:
            if cg is not None:
                cg.kill_all()
                cg.remove()
        except (cgroups.CgroupError, OSError) as e:
            self.warn(f"cgroup of {cid} not removed: {e}")
        _destroy(sdir, None, None)
        for h in hooks.get("poststop") or []:
            try:
                _run_hooks([h], self._oci_state(s, "stopped"), "poststop")
            except ContainerError as e:
                self.warn(str(e))

    # -- exec / ps ---------------------------------------------------------------------------
    def container(self, cid: str) -> Container:
        self._read(cid)
        return Container(self.rt, cid)

    def pids(self, cid: str) -> List[int]:
        s = self._read(cid)
        if self.status_of(s) == "stopped" or not s.get("cgroup"):
            return []
        return cgroups.from_dict(s["cgroup"]).pids()

    def wait(self, cid: str, pid: int) -> int:
        """Wait for our own child ``pid`` (``run``) and return its exit code."""
        from pycontain.container import _exit_code, _waitpid

        return _exit_code(_waitpid(pid))


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


write_pid_file = _write_pid_file
