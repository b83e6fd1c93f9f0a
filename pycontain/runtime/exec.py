"""Exec into a running container: open its namespaces and root through /proc/PID while its
pid is still the recorded process, fork into its pid namespace, and let the child join the
cgroup, the other namespaces and the root before it execs the command (process.py's
``_exec_child``). Setup errors come back over the close-on-exec pipe, as for ``run``."""

from __future__ import annotations

import os

from pycontain.errors import ContainerError
from pycontain.runtime import _sys, procs
from pycontain.runtime.args import merge_env
from pycontain.runtime.process import _exec_child, _preimport, join_cgroup
from pycontain.runtime.result import Result
from pycontain.runtime.spec import Spec
from pycontain.runtime.state import alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

    from pycontain.runtime.container import Container
    from pycontain.runtime.spec import Process

    StdioArg = Union[int, Any, None]

# The namespaces exec joins, in this order (the mount namespace last: after it, paths resolve
# inside the container).
JOINED = ("ipc", "uts", "network", "cgroup", "pid", "mount")


def _finish_exec(container: Container, child: int, errr: int, detach: bool,
                 capture_output: bool, out_fd: int, err_fd: int) -> Result:
    """Wait for the exec'd command (its setup error on ``errr``, which is closed here)."""
    err = procs.read_pipe(errr)
    if child < 0:
        raise procs.parse_child_error(err or b"125\tcannot enter the container")
    if detach and not err:
        res = Result(exit_code=0, name=container.name, id=container.id)
        res.pid = child
        return res
    status = procs.waitpid(child)
    if err:
        raise procs.parse_child_error(err)
    res = Result(exit_code=procs.exit_code(status), name=container.name, id=container.id)
    res.pid = child
    if capture_output:
        res.stdout = procs.read_from_start(out_fd)
        res.stderr = procs.read_from_start(err_fd)
    return res


def _fork_in_userns(spec: Spec, nsfds: List[Tuple[int, int, str]], rootfd: int,
                    procs_files: List[str], fds: List[int], command: Sequence[str],
                    env: List[str], cwd: str, errr: int, errw: int, proc: Process,
                    console: int, preserve_fds: int) -> int:
    """Fork a first child that joins the cgroup, then the user and pid namespaces, and forks
    the command's process with CLONE_PARENT; returns that process's pid (or the first child's
    if it failed, its error then on the pipe)."""
    pr, pw = os.pipe()
    with _sys.NonDumpable():
        first = os.fork()
    if first == 0:  # pragma: no cover - runs in the child
        try:
            os.close(errr)
            os.close(pr)
            join_cgroup(procs_files)
            for fd, flag, _ in nsfds:
                if flag in (_sys.CLONE_NEWUSER, _sys.CLONE_NEWPID):
                    _sys.setns(fd, flag, "user/pid namespace")
            rest = [n for n in nsfds if n[1] not in (_sys.CLONE_NEWUSER, _sys.CLONE_NEWPID)]
            pid = _sys.clone_parent()
            if pid == 0:
                os.close(pw)
                _exec_child(spec, rest, rootfd, [], fds, command, env, cwd, errw, proc,
                            console, preserve_fds)
                os._exit(125)
            os.write(pw, str(pid).encode())
            os._exit(0)
        except BaseException as e:
            try:
                os.write(errw, f"125\tcannot enter the container: {e}".encode())
            finally:
                os._exit(125)
    os.close(pw)
    raw = procs.read_pipe(pr)
    procs.waitpid(first)
    return int(raw) if raw else -1


def _ns_source(pid: int) -> int:
    """The process whose namespaces and root exec opens: the container's PID 1, or, when a
    normal user may not open those (PID 1 is pycontain-init, a non-dumpable copy of the
    launcher made before the user namespace: only host root may inspect it), one of its
    children, which were exec'd inside and are the user's to open."""
    try:
        os.stat(f"/proc/{pid}/ns/user")
        return pid
    except PermissionError:
        pass
    except OSError:
        return pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            if ppid == pid:
                os.stat(f"/proc/{entry}/ns/user")
                return int(entry)
        except (OSError, ValueError, IndexError):
            continue
    return pid


def _other_ns(pid: int, kind: str) -> bool:
    """True if process ``pid`` is in a namespace of this kind other than ours."""
    name = _sys.NAMESPACE_PROC[kind]
    try:
        theirs = os.stat(f"/proc/{pid}/ns/{name}")
        ours = os.stat(f"/proc/self/ns/{name}")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)


def exec_in(container: Container, command: Sequence[str],
            env: Union[Sequence[str], Dict[str, str], None], workdir: Optional[str],
            stdio: Tuple[StdioArg, StdioArg, StdioArg], capture_output: bool, *,
            process: Optional[Process] = None, console: int = -1, detach: bool = False,
            preserve_fds: int = 0) -> Result:
    """:meth:`Container.exec <pycontain.runtime.container.Container.exec>`."""
    if process is not None:
        command = process.args
    if not command:
        raise ContainerError("no command given to exec")
    s = container._require_running()
    pid = int(s["pid"])
    spec = container.spec()
    cg = container.cgroup()
    if cg.frozen():
        raise ContainerError(f"container {container.name} is paused: resume it first")
    nsfds: List[Tuple[int, int, str]] = []
    rootfd = -1
    out_fd = err_fd = -1
    errr = errw = -1
    try:
        src = _ns_source(pid)
        kinds = JOINED
        if _other_ns(src, "user"):
            # The user namespace first: the others are its own, and the command must hold
            # the container's ids and capabilities, never the host's. Namespaces the
            # container shares with us are not joined (in the user namespace we could not).
            kinds = ("user", *(k for k in JOINED if k == "pid" or _other_ns(src, k)))
        for kind in kinds:
            procname = _sys.NAMESPACE_PROC[kind]
            try:
                fd = os.open(f"/proc/{src}/ns/{procname}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerError(f"cannot open namespace {procname} of {src}: "
                                     f"{e.strerror}") from None
            nsfds.append((fd, _sys.NAMESPACE_FLAGS[kind], procname))
        rootfd = os.open(f"/proc/{src}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if not alive(pid, s.get("pid_start")):  # the fds must belong to the container
            raise ContainerError(f"container {container.name} is not running")
        fds = [procs.fileno(stdio[0], 0), procs.fileno(stdio[1], 1), procs.fileno(stdio[2], 2)]
        if capture_output:
            out_fd = os.memfd_create("stdout", os.MFD_CLOEXEC)
            err_fd = os.memfd_create("stderr", os.MFD_CLOEXEC)
            fds[1], fds[2] = out_fd, err_fd
        proc = process if process is not None else spec.process
        _preimport(Spec(process=proc, linux=spec.linux), console >= 0)
        proc_env = list(process.env) if process is not None else merge_env(proc.env, env)
        errr, errw = os.pipe()
        if os.geteuid() != 0 and nsfds[0][2] == "user":
            # A normal user may join the pid namespace only from inside the user namespace:
            # a first child enters both and forks the command as our child (CLONE_PARENT).
            child = _fork_in_userns(spec, nsfds, rootfd, cg.join_files(), fds, command,
                                    proc_env, workdir or proc.cwd, errr, errw, proc, console,
                                    preserve_fds)
            os.close(errw)
            errw = -1
            pipe, errr = errr, -1  # _finish_exec closes it
            return _finish_exec(container, child, pipe, detach, capture_output, out_fd,
                                err_fd)
        own_pid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        pidns = next(fd for fd, _, name in nsfds if name == "pid")
        try:
            _sys.setns(pidns, _sys.CLONE_NEWPID, f"/proc/{pid}/ns/pid")
            try:
                with _sys.NonDumpable():  # never a dumpable host interpreter in its namespaces
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
        pipe, errr = errr, -1  # _finish_exec closes it
        return _finish_exec(container, child, pipe, detach, capture_output, out_fd, err_fd)
    finally:
        for fd in [f for f, _, _ in nsfds] + [rootfd, out_fd, err_fd, errr, errw]:
            if fd >= 0:
                os.close(fd)
