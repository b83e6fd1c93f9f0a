"""Container lifecycle: create, run (foreground or detached under a supervisor), exec, kill,
stop, remove, inspect.

Process model. The launching process L (the caller for a foreground run, a double-forked
supervisor for a detached one) unshares only its *children's* pid namespace, forks, and restores
its own (setns back), so the child C is PID 1 of a new pid namespace while L stays its parent and
can waitpid() it. C joins the cgroup (writes "0" to cgroup.procs, so it is inside before anything
else happens), unshares mount/uts/ipc/net/cgroup, builds the root filesystem, pivot_roots, drops
capabilities, sets no_new_privs and execs the workload - either in place (``init=False``) or under
a minimal C init that reaps zombies and forwards signals. Setup errors travel back over a
close-on-exec pipe: EOF means the workload was exec'd. What C does between fork and exec lives
in process.py; this module is the parent's side.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

from pycontain import _sys, cgroups
from pycontain import rootfs as _rootfs
from pycontain.errors import ContainerError
from pycontain.fdutil import read_from_start
from pycontain.images import ImageError, ImageStore
from pycontain.process import (
    Launch,
    _child,
    _exec_child,
    _preimport,
)
from pycontain.spec import DEFAULT_PATH, Mount, Process, Spec, default_spec
from pycontain.state import StateDir, StateError, alive, iter_states, list_names, proc_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

    Size = Union[int, str, None]
    StdioArg = Union[int, Any, None]

DEFAULT_ROOT = "/run/pycontain"
DEFAULT_STORAGE = "/var/lib/pycontain"
PRELOAD_DIR = "/.pyalloc"
PRELOAD_LIB = PRELOAD_DIR + "/libpyalloc.so"
PRELOAD_STATS = PRELOAD_DIR + "/stats"
POLICIES = ("best", "worst", "first", "fifo")


class Result:
    """What a finished container run (or exec) reports."""

    def __init__(
        self,
        exit_code: int,
        oom_killed: bool = False,
        stats: Optional[Dict[str, Any]] = None,
        allocator: Optional[Dict[str, Any]] = None,
        stdout: Optional[bytes] = None,
        stderr: Optional[bytes] = None,
        name: str = "",
        id: str = "",
    ) -> None:
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.stats: Dict[str, Any] = stats if stats is not None else {}
        self.allocator = allocator
        self.stdout = stdout
        self.stderr = stderr
        self.name = name
        self.id = id
        self.pid = 0  # of the process (exec)

    def __repr__(self) -> str:
        return (f"Result(exit_code={self.exit_code}, oom_killed={self.oom_killed}, "
                f"name={self.name!r})")


# ---------------------------------------------------------------------------------------------
# argument parsing helpers

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(value: Size, what: str = "size") -> Optional[int]:
    """'64M', '1g', '512k', '100' (bytes) or an int -> bytes; else raises ContainerError."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ContainerError(f"invalid {what}: {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ContainerError(f"invalid {what}: {value} (must be positive)")
        return value
    # NUMBER[.FRACTION] [k|m|g|t|p][b|ib], case-insensitive (no regex: `re` costs CLI start-up)
    text = str(value).strip().lower()
    for suffix in ("ib", "b"):
        if text.endswith(suffix) and len(text) > len(suffix) and text[-len(suffix) - 1] in (
                "kmgtp" if suffix == "ib" else "kmgtp0123456789"):
            text = text[: -len(suffix)]
            break
    unit = text[-1:] if text[-1:] in _UNITS and text[-1:] else ""
    number = text[: len(text) - len(unit)].rstrip()
    whole, dot, frac = number.partition(".")
    digits = whole + frac
    if not (whole.isdigit() and digits.isdigit() and digits.isascii() and (frac or not dot)):
        raise ContainerError(f"invalid {what}: {value!r} (expected e.g. 64M, 512k, 1G)")
    n = int(float(number) * _UNITS[unit])
    if n <= 0:
        raise ContainerError(f"invalid {what}: {value!r} (must be positive)")
    return n


def parse_cpus(value: Union[float, str, None]) -> Optional[float]:
    if value is None:
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ContainerError(f"invalid --cpus value: {value!r}") from None
    if not cpus > 0 or cpus > 1024:
        raise ContainerError(f"invalid --cpus value: {value!r} (must be > 0)")
    return cpus


def _size_or_unlimited(value: Size, what: str) -> int:
    """parse_size, or -1 (unlimited) for -1 / "-1" / "unlimited" / "max"."""
    if isinstance(value, str) and value.strip().lower() in ("-1", "unlimited", "max"):
        return -1
    if isinstance(value, int) and not isinstance(value, bool) and value == -1:
        return -1
    return int(parse_size(value, what) or 0)


def _int_arg(value: Union[int, str], what: str) -> int:
    """An integer argument; -1, "unlimited" or "max" mean unlimited (-1)."""
    if isinstance(value, str) and value.strip().lower() in ("unlimited", "max"):
        return -1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ContainerError(f"invalid {what}: {value!r} (expected an integer)") from None
    if n == 0 or n < -1:
        raise ContainerError(f"invalid {what}: {value!r} (a positive number, or -1)")
    return n


def _cpus_arg(value: Union[float, str]) -> float:
    """update's cpus: a number of CPUs, 0 for no limit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0.0"):
        return 0.0
    return float(parse_cpus(value) or 0.0)


def parse_volume(spec: str) -> Mount:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ContainerError(f"invalid volume {spec!r} (expected SRC:DST[:ro])")
    src, dst = os.path.abspath(parts[0]), parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ContainerError(f"invalid volume mode {mode!r} in {spec!r} (ro or rw)")
    if not dst.startswith("/"):
        raise ContainerError(f"volume destination must be absolute: {dst!r}")
    if not os.path.exists(src):
        raise ContainerError(f"volume source does not exist: {src}")
    return Mount(dst, "bind", src, ["rbind", mode, "rprivate"])


def _preload_library() -> str:
    try:
        from pyalloc import preload  # type: ignore[import-not-found]

        path = str(preload.library_path())
    except Exception as e:  # ImportError, missing file, ...
        raise ContainerError(f"--preload: libpyalloc.so is not available ({e})") from None
    if not os.path.isfile(path):
        raise ContainerError(f"--preload: libpyalloc.so not found at {path}")
    return path


# ---------------------------------------------------------------------------------------------
# the runtime


_DRIVER: Optional[cgroups.Driver] = None  # detected once per process


class Runtime:
    """Where state and storage live, and which cgroup driver to use."""

    def __init__(
        self,
        root: Optional[str] = None,
        storage: Optional[str] = None,
        cgroup_parent: Optional[str] = None,
    ) -> None:
        self.root = os.path.abspath(root or os.environ.get("PYCONTAIN_ROOT") or DEFAULT_ROOT)
        self.storage = os.path.abspath(
            storage or os.environ.get("PYCONTAIN_STORAGE") or DEFAULT_STORAGE)
        self.cgroup_parent = (cgroup_parent or os.environ.get("PYCONTAIN_CGROUP_PARENT")
                              or cgroups.DEFAULT_PARENT)
        self._driver: Optional[cgroups.Driver] = None

    @property
    def driver(self) -> cgroups.Driver:
        if self._driver is None:
            global _DRIVER
            if _DRIVER is None:
                try:
                    _DRIVER = cgroups.detect()
                except cgroups.CgroupError as e:
                    raise ContainerError(str(e)) from None
            self._driver = _DRIVER
        return self._driver

    @property
    def images(self) -> ImageStore:
        return ImageStore(self.storage, root=self.root)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        if ref and "/" not in ref and not ref.startswith(".") and \
                os.path.exists(os.path.join(self.root, ref, "state.json")):
            return Container(self, ref)
        matches = [s["name"] for s in iter_states(self.root) if s.get("id", "").startswith(ref)]
        if ref and len(matches) == 1:
            return Container(self, matches[0])
        if len(matches) > 1:
            raise ContainerError(f"container reference {ref!r} is ambiguous")
        raise ContainerError(f"no such container: {ref}")

    def containers(self) -> List[Container]:
        return [Container(self, n) for n in list_names(self.root)]

    # -- creation ----------------------------------------------------------------------------
    def create(
        self,
        command: Sequence[str],
        image: Optional[str] = "host",
        *,
        rootfs: Optional[str] = None,
        name: Optional[str] = None,
        memory: Size = None,
        memory_swap: Size = None,
        pids: Optional[int] = None,
        cpus: Union[float, str, None] = None,
        hostname: Optional[str] = None,
        net: str = "none",
        env: Union[Sequence[str], Dict[str, str], None] = None,
        volumes: Sequence[str] = (),
        workdir: Optional[str] = None,
        read_only: bool = False,
        init: bool = True,
        preload: Optional[str] = None,
        detach: bool = False,
        remove: bool = False,
    ) -> Container:
        """Validate everything, then claim the name and create state, upper dir and cgroup."""
        if os.geteuid() != 0:
            raise ContainerError("pycontain must run as root (rootless containers are not "
                                 "supported yet)")
        mem = parse_size(memory, "memory size")
        swap = parse_size(memory_swap, "memory+swap size") if memory_swap not in (-1, "-1") \
            else -1
        ncpus = parse_cpus(cpus)
        if pids is not None:
            try:
                pids = int(pids)
            except (TypeError, ValueError):
                raise ContainerError(f"invalid --pids value: {pids!r}") from None
            if pids <= 0:
                raise ContainerError(f"invalid --pids value: {pids} (must be > 0)")
        if net not in ("none", "host"):
            raise ContainerError(f"invalid --net {net!r} (none or host)")
        if preload is not None and preload not in POLICIES:
            raise ContainerError(f"invalid --preload policy {preload!r} "
                                 f"(one of {', '.join(POLICIES)})")
        mounts = [parse_volume(v) for v in volumes]
        lowers: Optional[List[str]] = None
        if rootfs is not None:
            root_path = os.path.abspath(rootfs)
            if not os.path.isdir(root_path):
                raise ContainerError(f"rootfs is not a directory: {root_path}")
            img_env = [f"PATH={DEFAULT_PATH}"]
            img_wd = "/"
            image_name = None
            img_user: Tuple[int, int, List[int]] = (0, 0, [])
        else:
            try:
                img = self.images.get(image or "host")
            except ImageError as e:
                raise ContainerError(str(e)) from None
            lowers, img_env, img_wd = img.layers, img.env, img.working_dir
            image_name = img.reference
            try:
                img_user = img.resolve_user()
            except ImageError as e:
                raise ContainerError(str(e)) from None
            root_path = ""
        args = list(command) if rootfs is not None else img.argv(command)
        if not args:
            raise ContainerError("no command given (usage: pycontain run [OPTIONS] -- CMD ...)")
        lib = _preload_library() if preload is not None else None

        cid = os.urandom(16).hex()
        name = name or cid[:12]
        sdir = StateDir(self.root, name)
        try:
            sdir.claim()
        except StateError as e:
            raise ContainerError(str(e)) from None
        cdir = os.path.join(self.storage, "containers", cid)
        cg: Optional[cgroups.Cgroup] = None
        try:
            spec = default_spec(args)
            spec.hostname = hostname or name
            spec.root.readonly = read_only
            spec.process.cwd = workdir or img_wd or "/"
            spec.process.user.uid, spec.process.user.gid = img_user[0], img_user[1]
            spec.process.user.additional_gids = list(img_user[2])
            spec.process.env = _build_env(img_env, spec.hostname, env)
            if net == "host":
                spec.linux.namespaces = [n for n in spec.linux.namespaces if n.type != "network"]
            res = spec.linux.resources
            res.memory_limit = mem
            res.memory_swap = swap if (mem is not None and swap is not None) else None
            if mem is None:
                res.memory_swap = None
            res.pids_limit = pids
            if ncpus is not None:
                res.cpu_period = 100000
                res.cpu_quota = int(ncpus * 100000)
            spec.mounts.extend(mounts)
            if lib is not None and preload is not None:
                add_preload(spec, sdir, preload, lib)
            tmpfs_upper = False
            if lowers is not None:
                os.makedirs(os.path.dirname(cdir), mode=0o700, exist_ok=True)
                os.mkdir(cdir, 0o700)
                tmpfs_upper = _rootfs.upper_needs_tmpfs(os.path.dirname(cdir))
                spec.root.path = os.path.join(cdir, "merged")
            else:
                spec.root.path = root_path
            cg = self.driver.create(cid, spec.linux.resources, self.cgroup_parent)
            spec.linux.cgroups_path = "/" + cg.rel
            now = time.time()
            state: Dict[str, Any] = {
                "ociVersion": spec.oci_version,
                "id": cid,
                "name": name,
                "status": "created",
                "pid": 0,
                "bundle": sdir.path,
                "annotations": {},
                "created": now,
                "image": image_name,
                "rootfs": root_path or None,
                "lowers": lowers,
                "container_dir": cdir if lowers is not None else None,
                "tmpfs_upper": tmpfs_upper,
                "command": args,
                "init": bool(init),
                "detached": bool(detach),
                "auto_remove": bool(remove),
                "net": net,
                "volumes": list(volumes),
                "preload": preload,
                "limits": {"memory": mem, "pids": pids, "cpus": ncpus,
                           "memory_swap": res.memory_swap},
                "cgroup": cg.to_dict(),
                "exit_code": None,
                "oom_killed": False,
            }
            sdir.write_json("config.json", spec.to_dict())
            with sdir.lock():
                sdir.write(state)
        except BaseException as e:
            _undo_create(e, ContainerError, sdir, cg, cdir)
            raise
        c = Container(self, name)
        c._spec = spec
        c._state = state
        return c


def add_preload(spec: Spec, sdir: StateDir, policy: str, lib: Optional[str] = None) -> None:
    """Preload libpyalloc.so with ``policy`` into every process of the container: the library
    bind-mounted read-only at /.pyalloc/libpyalloc.so, statistics written to the state dir's
    ``pyalloc/`` (collected when the container stops), LD_PRELOAD and PYALLOC_* set."""
    if policy not in POLICIES:
        raise ContainerError(f"invalid preload policy {policy!r} (one of {', '.join(POLICIES)})")
    lib = lib or _preload_library()
    stats_dir = sdir.file("pyalloc")
    os.mkdir(stats_dir)
    os.chmod(stats_dir, 0o777)
    spec.mounts.append(Mount(PRELOAD_LIB, "bind", lib, ["bind", "ro", "nosuid"]))
    spec.mounts.append(Mount(PRELOAD_STATS, "bind", stats_dir, ["bind", "nosuid"]))
    spec.process.env += [f"LD_PRELOAD={PRELOAD_LIB}", f"PYALLOC_POLICY={policy}",
                         f"PYALLOC_STATS={PRELOAD_STATS}/stats-%p.json"]


def _build_env(image_env: Sequence[str], hostname: str,
               extra: Union[Sequence[str], Dict[str, str], None]) -> List[str]:
    env: Dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image_env:
        k, _, v = item.partition("=")
        env[k] = v
    env["HOSTNAME"] = hostname
    env["TERM"] = os.environ.get("TERM") or "xterm"
    items: List[Tuple[str, Optional[str]]] = []
    if isinstance(extra, dict):
        items = [(k, v) for k, v in extra.items()]
    elif extra:
        for item in extra:
            k, sep, v = item.partition("=")
            items.append((k, v if sep else None))
    for k, maybe in items:
        if not k:
            raise ContainerError(f"invalid environment variable {k!r}")
        if maybe is None:
            if k in os.environ:
                env[k] = os.environ[k]
            continue
        env[k] = maybe
    return [f"{k}={v}" for k, v in env.items()]


def _cgroup_of(s: Dict[str, Any]) -> Optional[cgroups.Cgroup]:
    """The cgroup a state record names, or None."""
    return cgroups.from_dict(s["cgroup"]) if s.get("cgroup") else None


def _kill_now(s: Dict[str, Any], cg: Optional[cgroups.Cgroup]) -> None:
    """SIGKILL what is left of a container (its cgroup's members, then its main process) and
    wait up to 10 s for the main process to be gone."""
    if cg is not None:
        cg.kill_all()
    pid, start = s.get("pid"), s.get("pid_start")
    if pid and alive(pid, start):
        _signal_pid(int(pid), start, signal.SIGKILL)
        _wait_dead(int(pid), start, 10.0)


def _undo_create(e: BaseException, error: Type[Exception], sdir: StateDir,
                 cg: Optional[cgroups.Cgroup], cdir: Optional[str]) -> None:
    """A container's creation failed with ``e``: remove what it had made, and raise ``error``
    with a one-line message for the failures a user can act on (the caller re-raises the
    others as they are)."""
    _destroy(sdir, cg, cdir)
    if isinstance(e, cgroups.CgroupError):
        raise error(str(e)) from None
    if isinstance(e, OSError):
        raise error(f"cannot create container: {e}") from None


def _destroy(sdir: StateDir, cg: Optional[cgroups.Cgroup], cdir: Optional[str]) -> None:
    """Remove every trace: cgroup (killing what is left), upper dir, state dir."""
    if cg is not None:
        try:
            cg.kill_all()
            cg.remove()
        except (cgroups.CgroupError, OSError):
            pass
    if cdir and os.path.isdir(cdir):
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        if os.path.isdir(cdir):  # still mounted somewhere? detach and retry
            try:
                _sys.umount2(cdir, _sys.MNT_DETACH)
            except OSError:
                pass
            shutil.rmtree(cdir, ignore_errors=True)
    if os.path.isdir(sdir.path):
        tomb = os.path.join(sdir.root, f".rm-{sdir.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(sdir.path, tomb)
        except OSError:
            tomb = sdir.path
        import shutil

        shutil.rmtree(tomb, ignore_errors=True)


_SELF_START: Dict[int, Optional[int]] = {}


def _self_start_time() -> Optional[int]:
    pid = os.getpid()
    if pid not in _SELF_START:
        _SELF_START.clear()
        _SELF_START[pid] = proc_start_time(pid)
    return _SELF_START[pid]


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _waitpid(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 255 << 8
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            b = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover
            continue
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def _parse_child_error(raw: bytes) -> ContainerError:
    text = raw.decode(errors="replace")
    code, sep, msg = text.partition("\t")
    if sep and code.isdigit():
        return ContainerError(msg.strip(), int(code))
    return ContainerError(text.strip() or "container setup failed")


class Container:
    """A container known to the runtime (a state directory)."""

    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name
        self.dir = StateDir(runtime.root, name)
        self._spec: Optional[Spec] = None
        self._state: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"<Container {self.name}>"

    # -- state -------------------------------------------------------------------------------
    def state(self, refresh: bool = True) -> Dict[str, Any]:
        if refresh or self._state is None:
            try:
                self._state = self.dir.read()
            except StateError as e:
                raise ContainerError(str(e)) from None
        return self._state

    @property
    def id(self) -> str:
        return str(self.state(refresh=False)["id"])

    @property
    def pid(self) -> int:
        return int(self.state().get("pid") or 0)

    def spec(self) -> Spec:
        if self._spec is None:
            with open(self.dir.file("config.json")) as f:
                self._spec = Spec.from_dict(json.load(f))
        return self._spec

    def cgroup(self) -> cgroups.Cgroup:
        return cgroups.from_dict(self.state(refresh=False)["cgroup"])

    @staticmethod
    def _live_status(s: Dict[str, Any]) -> str:
        status = str(s.get("status", "unknown"))
        if status in ("created", "running"):
            if s.get("pid") and not alive(s.get("pid"), s.get("pid_start")):
                return "stopped"
        return status

    @property
    def status(self) -> str:
        """created, running, paused or stopped."""
        s = self.state()
        return self._paused_status(s, self._live_status(s))

    @staticmethod
    def _paused_status(s: Dict[str, Any], status: str) -> str:
        return "paused" if status == "running" and cgroups.is_frozen(s.get("cgroup")) else status

    def is_running(self) -> bool:
        s = self.state()
        return s.get("status") in ("created", "running") and alive(s.get("pid"),
                                                                   s.get("pid_start"))

    # -- starting ----------------------------------------------------------------------------
    def _fork(self, stdio: Optional[Tuple[int, int, int]],
              launch: Optional[Launch] = None) -> Tuple[int, int]:
        """Fork the container's PID 1 (in its new or joined pid namespace); returns its pid and
        the read end of the error pipe."""
        spec = self.spec()
        state = self.state(refresh=False)
        cg = self.cgroup()
        procs = cg.join_files()
        _preimport(spec, launch is not None and launch.console >= 0)
        errr, errw = os.pipe()
        new_pid_ns = spec.linux.has_namespace("pid")
        join_pid = next((n.path for n in spec.linux.namespaces if n.type == "pid" and n.path), "")
        nsfd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) \
            if new_pid_ns or join_pid else -1
        try:
            if new_pid_ns:
                _sys.unshare(_sys.CLONE_NEWPID)
            elif join_pid:
                target = os.open(join_pid, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _sys.setns(target, _sys.CLONE_NEWPID, join_pid)
                finally:
                    os.close(target)
            try:
                pid = os.fork()
                if pid == 0:
                    os.close(errr)
                    _child(spec, state, procs, errw, stdio, launch)
                    os._exit(125)  # not reached
            finally:
                if nsfd >= 0:
                    _sys.setns(nsfd, _sys.CLONE_NEWPID, "own pid namespace")
        except BaseException:
            os.close(errr)
            raise
        finally:
            if nsfd >= 0:
                os.close(nsfd)
            os.close(errw)
        return pid, errr

    def _spawn(self, stdio: Optional[Tuple[int, int, int]] = None) -> int:
        """Fork the container's PID 1 and wait until the workload is exec'd. Returns its pid."""
        pid, errr = self._fork(stdio)
        # Recorded before the exec completes, so that a caller killed right now still leaves a
        # truthful state behind (the pid dies if setup fails; ps then shows "stopped").
        self._state = self.dir.update(status="running", pid=pid, pid_start=proc_start_time(pid),
                                      started=time.time(), monitor_pid=os.getpid(),
                                      monitor_start=_self_start_time())
        err = _read_all(errr)
        if err:
            _waitpid(pid)
            raise _parse_child_error(err)
        return pid

    def spawn_created(self, launch: Launch,
                      runtime_hooks: Optional[Callable[[int], None]] = None) -> int:
        """The OCI ``create`` step: fork the container process and return its pid once it is
        completely set up and blocked on ``launch.fifo`` (see :class:`Launch`).

        ``runtime_hooks(pid)`` runs (in this process) when the child asks for the prestart and
        createRuntime hooks; a ContainerError it raises fails the creation. On any failure the
        child is reaped and ContainerError raised; the caller cleans up.
        """
        import select

        sync_c2p = sync_p2c = (-1, -1)
        if runtime_hooks is not None:
            sync_c2p = os.pipe()
            sync_p2c = os.pipe()
            launch.sync = (sync_p2c[0], sync_c2p[1])
        try:
            pid, errr = self._fork(None, launch)
        finally:
            for fd in (sync_c2p[1], sync_p2c[0]):
                if fd >= 0:
                    os.close(fd)
        self._state = self.dir.update(pid=pid, pid_start=proc_start_time(pid))
        err = b""
        watch = [errr] + ([sync_c2p[0]] if sync_c2p[0] >= 0 else [])
        try:
            while errr in watch:
                ready, _, _ = select.select(watch, [], [])
                if sync_c2p[0] in ready:
                    if os.read(sync_c2p[0], 1) == b"H" and runtime_hooks is not None:
                        try:
                            runtime_hooks(pid)
                            reply = b"K"
                        except ContainerError as e:
                            reply = str(e).encode() or b"runtime hooks failed"
                        os.write(sync_p2c[1], reply)
                    else:
                        watch.remove(sync_c2p[0])
                if errr in ready:
                    chunk = os.read(errr, 65536)
                    if chunk:
                        err += chunk
                    else:
                        watch.remove(errr)
        finally:
            for fd in (errr, sync_c2p[0], sync_p2c[1]):
                if fd >= 0:
                    os.close(fd)
        if not err:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                err = f"125\tcontainer process died during setup (status {status})".encode()
        if err:
            _waitpid(pid)
            raise _parse_child_error(err)
        return pid

    def run(self, stdin: StdioArg = None, stdout: StdioArg = None, stderr: StdioArg = None,
            capture_output: bool = False, timeout: Optional[float] = None,
            forward_signals: bool = False) -> Result:
        """Run in the foreground and wait; removes the container if it was created with
        ``remove=True``. Setup failures raise ContainerError and leave nothing behind."""
        out_fd = err_fd = -1
        fds = [_fileno(stdin, 0), _fileno(stdout, 1), _fileno(stderr, 2)]
        if capture_output:
            out_fd = os.memfd_create("stdout", os.MFD_CLOEXEC)
            err_fd = os.memfd_create("stderr", os.MFD_CLOEXEC)
            fds[1], fds[2] = out_fd, err_fd
        stdio = (fds[0], fds[1], fds[2])
        old_handlers: Dict[int, Any] = {}
        try:
            try:
                pid = self._spawn(stdio if stdio != (0, 1, 2) else None)
            except ContainerError:
                self._fail()
                raise
            if forward_signals:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                            signal.SIGUSR1, signal.SIGUSR2):
                    old_handlers[sig] = signal.signal(sig, _forwarder(pid))
            status = self._wait_child(pid, timeout)
            result = self._finish(status)
            if capture_output:
                result.stdout = read_from_start(out_fd)
                result.stderr = read_from_start(err_fd)
            return result
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            for fd in (out_fd, err_fd):
                if fd >= 0:
                    os.close(fd)

    def _wait_child(self, pid: int, timeout: Optional[float]) -> int:
        if timeout is None:
            return _waitpid(pid)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() > deadline:
                try:
                    self.cgroup().kill_all()
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                return _waitpid(pid)
            time.sleep(0.005)

    def start(self) -> None:
        """Start detached under a supervisor process; returns once the workload is exec'd."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                os.close(r)
                os.setsid()
                if os.fork() == 0:
                    self._supervise(w)
            except BaseException as e:
                try:
                    os.write(w, f"125\tsupervisor failed: {e}".encode())
                except OSError:
                    code = 1
            os._exit(code)
        os.close(w)
        _waitpid(pid)
        msg = _read_all(r)
        if msg != b"OK":
            self._fail()
            if not msg:
                raise ContainerError("supervisor died during container start")
            raise _parse_child_error(msg)

    def _supervise(self, ready: int) -> None:  # pragma: no cover - runs in the supervisor
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            log = os.open(self.dir.file("container.log"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(ready, 3)
            ready = 3
            os.set_inheritable(3, False)
            _sys.close_from(4)
            try:
                pid = self._spawn()
            except ContainerError as e:
                os.write(ready, f"{e.exit_code}\t{e}".encode())
                os._exit(0)
            os.write(ready, b"OK")
            os.close(ready)
            status = _waitpid(pid)
            self._finish(status)
        except BaseException as e:
            try:
                os.write(ready, f"125\tsupervisor failed: {e}".encode())
            except OSError:
                pass
        os._exit(0)

    def _last_state(self) -> Tuple[Dict[str, Any], Optional[cgroups.Cgroup]]:
        """The state on disk (else the last one read) and its cgroup, for teardown."""
        s = self._state or {}
        try:
            s = self.dir.read()
        except StateError:
            pass
        return s, _cgroup_of(s)

    def _fail(self) -> None:
        """Creation or start failed: remove every trace."""
        s, cg = self._last_state()
        _destroy(self.dir, cg, s.get("container_dir"))

    def _finish(self, status: Optional[int], forced_code: Optional[int] = None) -> Result:
        """Record how the container ended, drop its cgroup, auto-remove if asked."""
        code = _exit_code(status) if status is not None else forced_code
        s, cg = self._last_state()
        stats: Dict[str, Any] = {}
        oom = False
        if cg is not None:
            stats = cg.stats() if os.path.isdir(cg.dirs()[0]) else dict(s.get("stats") or {})
            oom = bool(stats.get("oom_kills")) or bool(s.get("oom_killed"))
            try:
                cg.kill_all()
                cg.remove()
            except (cgroups.CgroupError, OSError):
                pass
        allocator = self._collect_allocator()
        if allocator is not None:
            stats["allocator"] = allocator
        result = Result(exit_code=code if code is not None else -1, oom_killed=oom, stats=stats,
                        allocator=allocator, name=self.name, id=str(s.get("id", "")))
        if s.get("auto_remove"):
            _destroy(self.dir, None, s.get("container_dir"))
        else:
            self._state = self.dir.update(status="stopped", exit_code=code, oom_killed=oom,
                                          finished=time.time(), stats=stats,
                                          allocator=allocator, cgroup_removed=True)
        return result

    def _collect_allocator(self) -> Optional[Dict[str, Any]]:
        d = self.dir.file("pyalloc")
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
        except OSError:
            return None
        per: Dict[str, Any] = {}
        totals: Dict[str, float] = {}
        for n in names:
            try:
                with open(os.path.join(d, n)) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            per[n] = data
            if isinstance(data, dict):
                for k, v in data.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        totals[k] = totals.get(k, 0) + v
        s = self._state or {}
        return {"policy": s.get("preload"), "processes": len(per), "totals": totals,
                "files": per}

    # -- operations on a running container ---------------------------------------------------
    def _require_running(self) -> Dict[str, Any]:
        s = self.state()
        if not (s.get("status") in ("created", "running") and alive(s.get("pid"),
                                                                    s.get("pid_start"))):
            raise ContainerError(f"container {self.name} is not running")
        return s

    def kill(self, sig: Union[int, str] = signal.SIGKILL) -> None:
        """Send a signal to the container's main process; a paused container is resumed so
        that the signal is delivered (as docker does)."""
        signum = parse_signal(sig)
        s = self._require_running()
        _signal_pid(int(s["pid"]), s.get("pid_start"), signum)
        self._thaw_quietly(s)

    def _thaw_quietly(self, s: Dict[str, Any]) -> None:
        if s.get("cgroup"):
            cgroups.from_dict(s["cgroup"])._thaw_after_signal()

    # -- pause and live limits -----------------------------------------------------------------
    def pause(self) -> None:
        """Freeze every process of the container (cgroup freezer) until resume()."""
        s = self._require_running()
        cg = cgroups.from_dict(s["cgroup"])
        try:
            if not cg.frozen():
                cg.freeze()
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot pause container {self.name}: {e}") from None

    def resume(self) -> None:
        s = self._require_running()
        cg = cgroups.from_dict(s["cgroup"])
        try:
            if not cg.frozen():
                raise ContainerError(f"container {self.name} is not paused")
            cg.thaw()
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot resume container {self.name}: {e}") from None

    def update(self, memory: Union[int, str, None] = None, pids: Optional[int] = None,
               cpus: Union[float, str, None] = None, *,
               memory_swap: Union[int, str, None] = None, cpu_shares: Optional[int] = None,
               cpuset_cpus: Optional[str] = None, cpuset_mems: Optional[str] = None) -> None:
        """Change the limits of a running container, as ``docker update`` does: memory and
        memory_swap take bytes or a size ("256M"; -1 for unlimited), pids a count (-1 for
        unlimited), cpus a number of CPUs (0 for unlimited). Values not given are kept;
        the new limits show in inspect()."""
        s = self._require_running()
        lim = cgroups.Limits(
            memory=None if memory is None else _size_or_unlimited(memory, "memory"),
            memory_swap=None if memory_swap is None else _size_or_unlimited(memory_swap,
                                                                            "memory_swap"),
            pids=None if pids is None else _int_arg(pids, "pids"),
            cpu_shares=None if cpu_shares is None else _int_arg(cpu_shares, "cpu_shares"),
            cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems)
        if cpus is not None:
            n = _cpus_arg(cpus)
            lim.cpu_quota, lim.cpu_period = (int(n * 100000), 100000) if n > 0 else (-1, None)
        if lim.empty():
            raise ContainerError("update: nothing to change (give memory, pids or cpus)")
        try:
            cgroups.from_dict(s["cgroup"]).update(lim)
        except cgroups.CgroupError as e:
            raise ContainerError(f"cannot update container {self.name}: {e}") from None
        with self.dir.lock():
            cur = self.dir.read()
            limits = dict(cur.get("limits") or {})
            if lim.memory is not None:
                limits["memory"] = lim.memory if lim.memory > 0 else None
            if lim.memory_swap is not None:
                limits["memory_swap"] = lim.memory_swap
            if lim.pids is not None:
                limits["pids"] = lim.pids if lim.pids > 0 else None
            if cpus is not None:
                limits["cpus"] = _cpus_arg(cpus) or None
            cur["limits"] = limits
            self.dir.write(cur)
        self._state = None

    def wait(self, timeout: Optional[float] = None) -> Result:
        """Wait until the container has stopped and its exit has been recorded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.state()
            if s.get("status") == "stopped":
                return self._result(s)
            if not alive(s.get("pid"), s.get("pid_start")) and not alive(
                    s.get("monitor_pid"), s.get("monitor_start")):
                self._reap_orphan(None)
                return self._result(self.state())
            if deadline is not None and time.monotonic() > deadline:
                raise ContainerError(f"timed out waiting for container {self.name}")
            time.sleep(0.01)

    def _result(self, s: Dict[str, Any]) -> Result:
        code = s.get("exit_code")
        return Result(exit_code=-1 if code is None else int(code),
                      oom_killed=bool(s.get("oom_killed")), stats=dict(s.get("stats") or {}),
                      allocator=s.get("allocator"), name=self.name, id=str(s.get("id", "")))

    def _reap_orphan(self, code: Optional[int]) -> None:
        """The container is dead and nobody is watching it: record what we know, drop cgroup."""
        with self.dir.lock():
            s = self.dir.read()
            if s.get("status") == "stopped":
                return
        self._state = s
        self._finish(None, forced_code=code)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL of the whole cgroup after ``timeout`` seconds."""
        s = self.state()
        if self._live_status(s) != "running":
            if s.get("status") != "stopped":
                self._reap_orphan(None)
            return
        pid, start = int(s["pid"]), s.get("pid_start")
        _signal_pid(pid, start, signal.SIGTERM)
        self._thaw_quietly(s)
        forced = not _wait_dead(pid, start, timeout)
        if forced:
            self.cgroup().kill_all()
            _signal_pid(pid, start, signal.SIGKILL)
            _wait_dead(pid, start, 10.0)
        self._await_record(137 if forced else None)

    def _await_record(self, code: Optional[int]) -> None:
        """Give the monitor a moment to record the exit; do it ourselves if it is gone."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            s = self.state()
            if s.get("status") == "stopped":
                return
            if not alive(s.get("monitor_pid"), s.get("monitor_start")):
                break
            time.sleep(0.005)
        self._reap_orphan(code)

    def remove(self, force: bool = False) -> None:
        s = self.state()
        status = self._live_status(s)
        if status == "running" and not force:
            raise ContainerError(f"container {self.name} is running: stop it first or use rm -f")
        cg = _cgroup_of(s)
        if status == "running" or s.get("status") in ("created", "running"):
            _kill_now(s, cg)
            # Let a live monitor record the exit first, so that it does not race our removal.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and alive(s.get("monitor_pid"),
                                                         s.get("monitor_start")):
                try:
                    if self.dir.read().get("status") == "stopped":
                        break
                except StateError:
                    return
                time.sleep(0.005)
        _destroy(self.dir, cg, s.get("container_dir"))

    def exec(self, command: Sequence[str], env: Union[Sequence[str], Dict[str, str], None] = None,
             workdir: Optional[str] = None, stdin: StdioArg = None, stdout: StdioArg = None,
             stderr: StdioArg = None, capture_output: bool = False, *,
             process: Optional[Process] = None, console: int = -1, detach: bool = False,
             preserve_fds: int = 0) -> Result:
        """Run ``command`` inside the running container (every namespace, cgroup, root).

        ``process`` (an OCI process, as ``runc exec --process``) replaces the container's own
        process settings (args, env, cwd, user, capabilities, rlimits, noNewPrivileges,
        terminal); ``console`` is a connected unix socket that receives the pty master when
        ``process.terminal`` is set; with ``detach`` the call returns as soon as the command is
        exec'd (``Result.exit_code`` 0, ``Result.pid`` its pid) and never waits for it.
        """
        if process is not None:
            command = process.args
        if not command:
            raise ContainerError("no command given to exec")
        s = self._require_running()
        pid = int(s["pid"])
        spec = self.spec()
        cg = self.cgroup()
        if cg.frozen():
            raise ContainerError(f"container {self.name} is paused: resume it first")
        nsfds: List[Tuple[int, int, str]] = []
        rootfd = -1
        out_fd = err_fd = -1
        errr = errw = -1
        try:
            for kind in ("ipc", "uts", "network", "cgroup", "pid", "mount"):
                procname = _sys.NAMESPACE_PROC[kind]
                try:
                    fd = os.open(f"/proc/{pid}/ns/{procname}", os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise ContainerError(f"cannot open namespace {procname} of {pid}: "
                                         f"{e.strerror}") from None
                nsfds.append((fd, _sys.NAMESPACE_FLAGS[kind], procname))
            rootfd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            if not alive(pid, s.get("pid_start")):  # the fds must belong to the container
                raise ContainerError(f"container {self.name} is not running")
            fds = [_fileno(stdin, 0), _fileno(stdout, 1), _fileno(stderr, 2)]
            if capture_output:
                out_fd = os.memfd_create("stdout", os.MFD_CLOEXEC)
                err_fd = os.memfd_create("stderr", os.MFD_CLOEXEC)
                fds[1], fds[2] = out_fd, err_fd
            proc = process if process is not None else spec.process
            _preimport(Spec(process=proc, linux=spec.linux), console >= 0)
            proc_env = list(process.env) if process is not None else _merge_env(proc.env, env)
            errr, errw = os.pipe()
            own_pid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            pidns = next(fd for fd, _, name in nsfds if name == "pid")
            try:
                _sys.setns(pidns, _sys.CLONE_NEWPID, f"/proc/{pid}/ns/pid")
                try:
                    child = os.fork()
                    if child == 0:  # pragma: no cover - runs in the child
                        os.close(errr)
                        _exec_child(spec, nsfds, rootfd, cg.join_files(), fds, command,
                                    proc_env, workdir or proc.cwd, errw, proc, console,
                                    preserve_fds)
                        os._exit(125)
                finally:
                    _sys.setns(own_pid, _sys.CLONE_NEWPID, "own pid namespace")
            finally:
                os.close(own_pid)
            os.close(errw)
            errw = -1
            err = _read_all(errr)
            errr = -1
            if detach and not err:
                res = Result(exit_code=0, name=self.name, id=self.id)
                res.pid = child
                return res
            status = _waitpid(child)
            if err:
                raise _parse_child_error(err)
            res = Result(exit_code=_exit_code(status), name=self.name, id=self.id)
            res.pid = child
            if capture_output:
                res.stdout = read_from_start(out_fd)
                res.stderr = read_from_start(err_fd)
            return res
        finally:
            for fd in [f for f, _, _ in nsfds] + [rootfd, out_fd, err_fd, errr, errw]:
                if fd >= 0:
                    os.close(fd)

    # -- reporting ---------------------------------------------------------------------------
    def logs(self) -> bytes:
        try:
            with open(self.dir.file("container.log"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def inspect(self) -> Dict[str, Any]:
        s = self.state()
        status = self._paused_status(s, self._live_status(s))
        stats = dict(s.get("stats") or {})
        if status in ("running", "created", "paused") and s.get("cgroup"):
            try:
                stats = self.cgroup().stats()
            except OSError:
                pass
        limits = s.get("limits") or {}
        return {
            "id": s.get("id"),
            "name": self.name,
            "state": status,
            "pid": s.get("pid") if status in ("running", "paused") else 0,
            "paused": status == "paused",
            "exit_code": s.get("exit_code"),
            "oom_killed": bool(s.get("oom_killed") or stats.get("oom_kills")),
            "created": s.get("created"),
            "started": s.get("started"),
            "finished": s.get("finished"),
            "image": s.get("image"),
            "rootfs": s.get("rootfs"),
            "command": s.get("command"),
            "init": s.get("init"),
            "detached": s.get("detached"),
            "auto_remove": s.get("auto_remove"),
            "net": s.get("net"),
            "volumes": s.get("volumes"),
            "limits": limits,
            "memory": {"current": stats.get("memory_current"), "peak": stats.get("memory_peak"),
                       "limit": limits.get("memory")},
            "stats": stats,
            "preload": s.get("preload"),
            "allocator": s.get("allocator"),
            "cgroup": s.get("cgroup"),
            "paths": {"state": self.dir.path, "log": self.dir.file("container.log"),
                      "container_dir": s.get("container_dir")},
        }


def _merge_env(base: List[str], extra: Union[Sequence[str], Dict[str, str], None]) -> List[str]:
    env: Dict[str, str] = {}
    for item in base:
        k, _, v = item.partition("=")
        env[k] = v
    if isinstance(extra, dict):
        env.update(extra)
    elif extra:
        for item in extra:
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
            elif k in os.environ:
                env[k] = os.environ[k]
    return [f"{k}={v}" for k, v in env.items()]


def parse_signal(sig: Union[int, str]) -> int:
    if isinstance(sig, int):
        return sig
    text = sig.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ContainerError(f"invalid signal {sig!r}") from None


def _signal_pid(pid: int, start: Optional[int], sig: int) -> None:
    """Signal ``pid`` only if it is still the process we started (pidfd, start time check)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if proc_start_time(pid) == start or start is None:
            signal.pidfd_send_signal(pidfd, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
    finally:
        os.close(pidfd)


def _wait_dead(pid: int, start: Optional[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while alive(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def _forwarder(pid: int) -> Any:
    def handler(signum: int, frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    return handler


def _fileno(obj: StdioArg, default: int) -> int:
    if obj is None:
        return default
    if isinstance(obj, int):
        return obj
    return int(obj.fileno())


