"""The OCI runtime operations (create, start, state, kill, delete, exec, list, ps) on pycontain's
runtime core: the same state directories, cgroup drivers, rootfs setup and container process
(:mod:`pycontain.runtime`) as the docker-like ``pycontain``; this module only maps the OCI
runtime-spec lifecycle onto them (config.json is checked in :mod:`pycontain.oci.config`).

Lifecycle (runtime-spec "Lifecycle", runc's process model):

* ``create``: read ``<bundle>/config.json``, report what is not supported, publish
  ``<root>/<id>/`` whole (status ``creating``, naming the cgroup to be made: see
  :meth:`StateDir.publish <pycontain.runtime.state.StateDir.publish>`), create the cgroup
  (``linux.cgroupsPath``), fork the container process, which sets up every namespace, mount,
  device, sysctl, rlimit, capability, the console and (without noNewPrivileges) seccomp, then
  blocks on ``<root>/<id>/exec.fifo``; prestart/createRuntime hooks run here when it asks
  (before its pivot_root), createContainer hooks in it. Status ``created``, ``--pid-file``
  written, the command exits: the container process is reparented (to the engine's subreaper,
  e.g. conmon, which reaps it).
* ``start``: one byte into the fifo; the process runs the startContainer hooks and execs the
  user program. Status ``running``; poststart hooks run.
* ``state``: status is never taken from the file alone: a recorded pid that no longer exists
  (or was reused: start times are compared) means ``stopped``.
* ``kill``: a signal to the container process (``--all``: to every process of its cgroup).
* ``delete``: only a stopped container (``--force``: kill it first); cgroup and state removed,
  poststop hooks run.
"""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import os
import time

from pycontain import jsonfast as json
from pycontain.errors import ContainerError
from pycontain.oci import INIT_ANNOTATION, PRELOAD_ANNOTATION, OciError
from pycontain.oci.log import rfc3339
from pycontain.runtime import cgroups, procs
from pycontain.runtime.state import (
    StateDir,
    StateError,
    alive,
    list_names,
    proc_start_time,
    remove_stale_partials,
    valid_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

    from pycontain.runtime.container import Container
    from pycontain.runtime.runtime import Runtime
    from pycontain.runtime.spec import Spec

# The state-only verbs (state, list, kill, pause, delete, ...) import neither the container
# process nor the syscall layer: engines call them several times per container.

DEFAULT_ROOT = "/run/pycontain-oci"
FIFO = "exec.fifo"


def default_root() -> str:
    """/run/pycontain-oci as root; a normal user's own place otherwise (runc's
    $XDG_RUNTIME_DIR/runc), as for the docker-like CLI."""
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    from pycontain.defaults import user_runtime_dir

    return user_runtime_dir("pycontain-oci")


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
    from pycontain.runtime.spec import DEFAULT_DEVICE_RULES

    rules = list(spec.linux.resources.devices)
    rules += [r for r in DEFAULT_DEVICE_RULES if r.get("allow")]
    rules += [{"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"}]
    for d in spec.linux.devices:
        if d.type == "p":  # a FIFO is no device: the devices cgroup has nothing to allow
            continue
        rules.append({"allow": True, "type": d.type if d.type in ("b", "c") else "c",
                      "major": d.major, "minor": d.minor, "access": "rwm"})
    return rules


# ---------------------------------------------------------------------------------------------
# the runtime


class OciRuntime:
    """OCI operations over pycontain's runtime core, with its state under ``root``."""

    def __init__(self, root: Optional[str] = None,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self.warn = warn or (lambda msg: None)
        self._rt: Optional[Runtime] = None

    @property
    def rt(self) -> Runtime:
        """The runtime core, with its state in this root (made when first needed)."""
        if self._rt is None:
            from pycontain.runtime.runtime import Runtime

            self._rt = Runtime(root=self.root, storage=os.path.join(self.root, ".storage"))
        return self._rt

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
        if status == "creating" and not alive(s.get("pid"), s.get("pid_start")) and not alive(
                s.get("monitor_pid"), s.get("monitor_start")):
            return "stopped"  # its create died before finishing: delete removes what it made
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
        remove_stale_partials(self.root)  # creates killed before publishing
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
        from pycontain.oci.config import check_config, load_config
        from pycontain.runtime import cleanup
        from pycontain.runtime.container import Container
        from pycontain.runtime.hooks import run_hooks
        from pycontain.runtime.preload import POLICIES, add_preload
        from pycontain.runtime.process import Launch
        from pycontain.runtime.spec import Spec

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
        if os.geteuid() != 0:
            if not any(n.type == "user" for n in spec.linux.namespaces):
                raise OciError("as a normal user the config needs a user namespace (see "
                               "pycontain-oci spec --rootless)")
            try:  # a cgroup only in a subtree delegated to the user (cgroupsPath's parent)
                driver = cgroups.delegated(cgroups.detect(), parent)
            except cgroups.CgroupError as e:
                driver = cgroups.NoDriver(str(e))
        try:
            cg_rel = cgroups.base.relative_path(name, parent)
        except cgroups.CgroupError as e:
            raise OciError(str(e)) from None
        now = time.time()
        # Published whole, naming the cgroup before it exists and its creator, so that a
        # create killed at any moment leaves a record that list shows and delete removes.
        state: Dict[str, Any] = {
            "ociVersion": spec.oci_version, "id": cid, "name": cid, "status": "creating",
            "pid": 0, "bundle": bundle, "rootfs": root,
            "annotations": dict(spec.annotations), "created": now,
            "created_at": rfc3339(now), "oci": True, "init": False,
            "preload": policy, "cgroup": None, "cgroup_rel": cg_rel, "exit_code": None,
            "oom_killed": False, "command": list(spec.process.args), "lowers": None,
            "container_dir": None, "monitor_pid": os.getpid(),
            "monitor_start": procs.self_start_time(),
        }
        try:
            sdir.publish(state, {"config.json": spec.to_dict()})
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
            state["cgroup"] = cg.to_dict()
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
                            hook_state=self._oci_state(state, "created"))
            c = Container(self.rt, cid)
            c._spec = spec
            c._state = state
            hooks = spec.hooks
            runtime_hooks = None
            if hooks.get("prestart") or hooks.get("createRuntime"):
                def runtime_hooks(child: int) -> None:
                    # runc (and runtime-tools' hooks_stdin) give the setup hooks status "created"
                    st = self._oci_state(state, "created", child)
                    run_hooks(hooks.get("prestart") or [], st, "prestart")
                    run_hooks(hooks.get("createRuntime") or [], st, "createRuntime")
            if spec.linux.seccomp is not None:
                self.prepare_seccomp(spec.linux.seccomp)
            pid = c.spawn_created(launch, runtime_hooks)
            sdir.update(status="created", pid=pid, pid_start=proc_start_time(pid))
            if pid_file:
                _write_pid_file(pid_file, pid)
        except BaseException as e:
            if pid:
                procs.signal_pid(pid, None, signal.SIGKILL)
            cleanup.undo_create(e, OciError, sdir, cg or cleanup.cgroup_of(state), None)
            raise
        finally:
            if sock is not None:
                sock.close()
        return pid

    def prepare_seccomp(self, cfg: Dict[str, Any]) -> None:
        from pycontain.runtime import seccomp

        try:
            seccomp.prepare(cfg, os.path.join(self.root, ".seccomp-cache"))
        except seccomp.SeccompError as e:
            raise OciError(str(e)) from None

    # -- start -------------------------------------------------------------------------------
    def start(self, cid: str) -> None:
        import errno

        from pycontain.runtime.hooks import run_hooks

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
                run_hooks([h], self._oci_state(s, "running"), "poststart")
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
        from pycontain.runtime import cleanup
        from pycontain.runtime.args import parse_signal

        s = self._read(cid)
        status = self.status_of(s)

        try:
            signum = parse_signal(sig)
        except ContainerError as e:
            raise OciError(str(e)) from None
        if status not in ("created", "running", "paused"):
            raise OciError(f"cannot kill container {cid}: it is {status}")
        cg = cleanup.cgroup_of(s)
        if all_processes and cg is not None:
            cg.kill_all(signum)
        procs.signal_pid(int(s["pid"]), s.get("pid_start"), signum)
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
        from pycontain.runtime import cleanup
        from pycontain.runtime.hooks import run_hooks

        sdir = self._dir(cid)
        s = self._read(cid)
        status = self.status_of(s)
        if status != "stopped" and not force:
            raise OciError(f"cannot delete container {cid}: it is {status} (not stopped); "
                           "use --force")
        cg = cleanup.cgroup_of(s)
        if status != "stopped":
            cleanup.kill_now(s, cg)
        hooks = self._hooks(sdir)
        try:
            if cg is not None:
                cg.kill_all()
                cg.remove()
        except (cgroups.CgroupError, OSError) as e:
            self.warn(f"cgroup of {cid} not removed: {e}")
        cleanup.destroy(sdir, None, None)
        for h in hooks.get("poststop") or []:
            try:
                run_hooks([h], self._oci_state(s, "stopped"), "poststop")
            except ContainerError as e:
                self.warn(str(e))

    # -- exec / ps ---------------------------------------------------------------------------
    def container(self, cid: str) -> Container:
        from pycontain.runtime.container import Container

        self._read(cid)
        return Container(self.rt, cid)

    def pids(self, cid: str) -> List[int]:
        s = self._read(cid)
        if self.status_of(s) == "stopped" or not s.get("cgroup"):
            return []
        return cgroups.from_dict(s["cgroup"]).pids()

    def wait(self, cid: str, pid: int) -> int:
        """Wait for our own child ``pid`` (``run``) and return its exit code."""

        return procs.exit_code(procs.waitpid(pid))


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


write_pid_file = _write_pid_file

