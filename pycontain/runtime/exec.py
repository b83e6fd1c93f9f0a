"""Exec into a running container: open its namespaces and root through /proc/PID while its
pid is still the recorded process, fork into its pid namespace, and let the child join the
cgroup, the other namespaces and the root before it execs the command (process.py's
``_exec_child``). Setup errors come back over the close-on-exec pipe, as for ``run``."""

from __future__ import annotations

import os

from pycontain.errors import ContainerError
from pycontain.runtime import _sys, procs
from pycontain.runtime.args import merge_env
from pycontain.runtime.process import _exec_child, _preimport
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
        kinds = JOINED
        if _other_ns(pid, "user"):
            # The user namespace first: the others are its own, and the command must hold
            # the container's ids and capabilities, never the host's. Namespaces the
            # container shares with us are not joined (in the user namespace we could not).
            kinds = ("user", *(k for k in JOINED if k == "pid" or _other_ns(pid, k)))
        for kind in kinds:
            procname = _sys.NAMESPACE_PROC[kind]
            try:
                fd = os.open(f"/proc/{pid}/ns/{procname}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ContainerError(f"cannot open namespace {procname} of {pid}: "
                                     f"{e.strerror}") from None
            nsfds.append((fd, _sys.NAMESPACE_FLAGS[kind], procname))
        rootfd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
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
        err = procs.read_pipe(errr)
        errr = -1
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
    finally:
        for fd in [f for f, _, _ in nsfds] + [rootfd, out_fd, err_fd, errr, errw]:
            if fd >= 0:
                os.close(fd)
