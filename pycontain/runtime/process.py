"""The container's own process, from fork to exec: joining the cgroup, namespaces, root
filesystem and pivot_root, sysctls, hooks, console, rlimits, capabilities and user, and the
final exec (or the wait for ``start`` on the OCI ``create`` path, see :class:`Launch`).

Everything here runs in the forked child (or in the child of ``exec``); container.py drives it
from the parent. The module is imported with container.py, before any fork, so nothing needs
importing after pivot_root.
"""

from __future__ import annotations

import os

from pycontain.defaults import DEFAULT_PATH
from pycontain.errors import ContainerError
from pycontain.runtime import _sys, cgroups
from pycontain.runtime import rootfs as _rootfs
from pycontain.runtime.spec import Process, Spec, caps_mask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple


class Launch:
    """How the container process ends its setup on the OCI ``create`` path (pycontain-oci).

    Everything (namespaces, cgroup, mounts, devices, pivot_root, sysctls, console, rlimits,
    capabilities, user) is set up as usual; then, instead of exec'ing, the process closes the
    error pipe (the parent's "ready") and blocks reading ``fifo`` until ``start`` writes to it,
    runs the ``startContainer`` hooks and execs the user program (seccomp loaded last when
    noNewPrivileges is set).

    * ``fifo``: path of the exec fifo (opened before pivot_root; see :func:`_open_fifo`).
    * ``console``: connected unix socket (``--console-socket``): with ``process.terminal`` a pty
      is created inside the container and its master sent there with SCM_RIGHTS.
    * ``sync``: (read fd, write fd) to the parent, which runs the ``prestart`` and
      ``createRuntime`` hooks in the runtime namespace when asked (before pivot_root).
    * ``hook_state``: the OCI state given to ``createContainer`` / ``startContainer`` hooks.
    * ``preserve_fds``: fds 3.. passed on to the workload; ``init``: run it under the C init.
    """

    def __init__(self, fifo: str = "", console: int = -1,
                 sync: Optional[Tuple[int, int]] = None,
                 hook_state: Optional[Dict[str, Any]] = None, preserve_fds: int = 0,
                 init: bool = False) -> None:
        self.fifo = fifo
        self.console = console
        self.sync = sync
        self.hook_state = hook_state or {}
        self.preserve_fds = preserve_fds
        self.init = init
        self.fifo_fds: Tuple[int, int] = (-1, -1)


def _which(cmd: str, path: str) -> Optional[str]:
    if "/" in cmd:
        return cmd
    for d in path.split(":"):
        p = os.path.join(d or ".", cmd)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


# ---------------------------------------------------------------------------------------------
# the child side: runs in the forked process, never returns


def _child(spec: Spec, state: Dict[str, Any], procs_files: List[str], errw: int,
           stdio: Optional[Tuple[int, int, int]], launch: Optional[Launch] = None,
           parent_fd: int = -1, staged: bool = False) -> None:
    """The container's PID 1 from its fork to the exec. ``staged``: the user stage (below)
    has already joined the cgroup, opened the fifo and entered the namespaces given by path
    and the user namespace."""
    try:
        _die_with_parent(parent_fd)
        if stdio is not None:
            for target, fd in enumerate(stdio):
                if fd != target:
                    os.dup2(fd, target)
        os.setsid()
        if staged:
            _current_caps()  # this process's own, in the user namespace
        else:
            _host_side_setup(spec, procs_files, launch)
        flags = 0
        for ns in spec.linux.namespaces:
            if ns.type in ("pid", "user") or (staged and ns.path):
                continue
            flag = _sys.NAMESPACE_FLAGS.get(ns.type)
            if flag is None:
                raise ContainerError(f"unknown namespace type {ns.type!r}")
            if ns.path:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                _sys.setns(fd, flag, ns.path)
                os.close(fd)
            else:
                flags |= flag
        os.umask(0o022)
        _sys.unshare(flags)
        if _GATE[0] >= 0:
            _network_gate()
        if any(ns.type == "mount" for ns in spec.linux.namespaces):  # new, or joined by path
            _setup_rootfs(spec, state, launch)
        else:
            _confine_to_root(spec, launch)
        if spec.hostname and spec.linux.has_namespace("uts"):
            _sys.sethostname(spec.hostname)
        if spec.linux.has_namespace("network") or state.get("network"):
            _sys.lo_up()  # (a namespace made for CNI networks has its loopback down)
        if launch is not None and launch.console >= 0 and spec.process.terminal:
            _setup_console(launch.console, spec.process)
        as_init = launch.init if launch is not None else bool(state.get("init", True))
        _exec_process(spec, errw, as_init, launch)
    except BaseException as e:  # report and die: nothing here may return to the caller
        try:
            msg = _describe(e)
            os.write(errw, f"{getattr(e, 'exit_code', 125)}\t{msg}".encode())
        finally:
            os._exit(125)


def join_cgroup(procs_files: List[str]) -> None:
    """Move this (single-threaded) process into the cgroup: "0" to each of its files."""
    for f in procs_files:
        fd = os.open(f, os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)


def _host_side_setup(spec: Spec, procs_files: List[str], launch: Optional[Launch]) -> None:
    """What must happen with the launcher's credentials, before any namespace is entered:
    join the cgroup (everything after is accounted), oom_score_adj, open the exec fifo."""
    join_cgroup(procs_files)
    if spec.process.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(spec.process.oom_score_adj))
    if launch is not None and launch.fifo:
        launch.fifo_fds = _open_fifo(launch.fifo)
    _current_caps()  # read now: /proc may be out of reach once namespaces are joined


def _user_stage(spec: Spec, state: Dict[str, Any], procs_files: List[str], errw: int,
                stdio: Optional[Tuple[int, int, int]], launch: Optional[Launch],
                parent_fd: int, chan: Tuple[int, int]) -> None:
    """The first child of a container with a user namespace (runc's nsexec stages, in
    Python): with the launcher's credentials it joins the cgroup and the namespaces given by
    path, then enters the user namespace (joined by path, or new: it asks the launcher over
    ``chan`` (read fd, write fd) to write the id maps and waits), becomes root in it and
    unshares the pid namespace, so that both are owned by the user namespace, and forks the
    container's PID 1 with CLONE_PARENT: a child of the launcher, which waits for it as for
    any container. It sends "P<pid>" and exits; PID 1 goes on in :func:`_child`."""
    rfd, wfd = chan
    try:
        _die_with_parent(parent_fd)
        _host_side_setup(spec, procs_files, launch)
        _rootfs.clone_bind_sources(spec.mounts)
        user = next(n for n in spec.linux.namespaces if n.type == "user")
        joined = [n for n in spec.linux.namespaces if n.path and n.type != "user"]
        if user.path:
            _setns_path(user.path, _sys.CLONE_NEWUSER)
        for ns in joined:  # still privileged where they were made
            _setns_path(ns.path, _sys.NAMESPACE_FLAGS[ns.type])
        if not user.path:
            _sys.unshare(_sys.CLONE_NEWUSER)
            unprivileged = os.geteuid() != 0
            if unprivileged:  # /proc/PID/*_map must be the user's for them to be written
                _sys.prctl(_sys.PR_SET_DUMPABLE, 1)
            os.write(wfd, b"U")
            reply = os.read(rfd, 65536)
            _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
            if reply != b"K":
                raise ContainerError(reply.decode(errors="replace") or "no user namespace map")
        _become_root()
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)  # a credential change may have reset it
        if spec.linux.has_namespace("pid"):
            _sys.unshare(_sys.CLONE_NEWPID)
        pid = _sys.clone_parent()
        if pid == 0:
            os.close(rfd)
            os.close(wfd)
            _child(spec, state, [], errw, stdio, launch, -1, staged=True)
            os._exit(125)  # not reached
        os.write(wfd, b"P%d" % pid)
        os._exit(0)
    except BaseException as e:
        try:
            os.write(errw, f"{getattr(e, 'exit_code', 125)}\t{_describe(e)}".encode())
        finally:
            os._exit(125)


def _setns_path(path: str, flag: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _sys.setns(fd, flag, path)
    finally:
        os.close(fd)


def _become_root() -> None:
    """Root of the user namespace just entered, where 0 is mapped (files the setup creates
    need a mapped owner); supplementary groups dropped where setgroups is allowed."""
    for call in (lambda: os.setresgid(0, 0, 0), lambda: os.setresuid(0, 0, 0)):
        try:
            call()
        except OSError:  # 0 is not mapped: keep the ids the map gives
            pass
    try:
        os.setgroups([])
    except OSError:  # setgroups is "deny" in this namespace
        pass


_PARENT_FD = [-1]
# When the launcher sets up the network of PID 1's new namespace itself (slirp4netns needs
# its pid): the ends PID 1 uses, (read "go", write "here"), and the launcher's two ends, set
# by the launcher before the fork.
_GATE = [-1, -1, -1, -1]


def _network_gate() -> None:
    """Tell the launcher the network namespace exists, and wait until it is set up."""
    go_r, here_w, mine_go_w, mine_here_r = _GATE
    os.close(mine_go_w)
    os.close(mine_here_r)
    # slirp4netns, run as the user, opens our /proc/PID/ns/{user,net}: dumpable for that
    # moment only (rootless: nothing inside has more rights than the user, nothing runs yet)
    _sys.prctl(_sys.PR_SET_DUMPABLE, 1)
    try:
        os.write(here_w, b"H")
        os.close(here_w)
        if os.read(go_r, 1) != b"1":
            raise ContainerError("the container's user-mode network was not set up")
    finally:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
    os.close(go_r)


def _die_with_parent(parent_fd: int = -1) -> None:
    """A foreground container does not outlive the process that runs it (as a foreground
    process would not; bwrap's --die-with-parent): PR_SET_PDEATHSIG SIGKILL, then a check
    that the parent (``parent_fd``, its pidfd) did not die before that. The kernel clears the
    setting when credentials change, so it is armed again just before the exec."""
    if parent_fd >= 0:
        _PARENT_FD[0] = parent_fd
    fd = _PARENT_FD[0]
    if fd < 0:
        return
    import select  # imported by the parent before the fork

    _sys.prctl(_sys.PR_SET_PDEATHSIG, 9)  # SIGKILL
    if select.select([fd], [], [], 0)[0]:  # readable: the parent has exited
        os._exit(125)


def _describe(e: BaseException) -> str:
    if isinstance(e, ContainerError):
        return str(e)
    if isinstance(e, OSError):
        return f"container setup failed: {e.strerror or e} ({e.filename or ''})".replace(
            " ()", "") if e.filename else f"container setup failed: {e}"
    return f"container setup failed: {type(e).__name__}: {e}"


def _setup_rootfs(spec: Spec, state: Dict[str, Any], launch: Optional[Launch] = None) -> None:
    propagation = spec.linux.rootfs_propagation
    if propagation:
        _rootfs.make_rslave() if "shared" in propagation or "slave" in propagation \
            else _rootfs.make_private()
    else:
        _rootfs.make_private()
    lowers = state.get("lowers")
    if lowers:
        cdir = state["container_dir"]
        root = os.path.join(cdir, "merged")
        layers = (list(lowers), os.path.join(cdir, "upper"), os.path.join(cdir, "work"), root)
        host_rootless = bool(state.get("rootless")) and list(lowers) == ["/"]
        userxattr = bool(state.get("rootless"))
        if state.get("tmpfs_upper"):
            size = state.get("upper_size")
            _rootfs.mount_tmpfs(cdir, f"mode=700,size={size}" if size else "mode=700")
            if host_rootless:
                _rootfs.mount_host_overlays(*layers[1:])
            else:
                _rootfs.mount_overlay(*layers, userxattr=userxattr)
        elif host_rootless:
            _rootfs.mount_host_overlays(*layers[1:])
        else:
            try:
                _rootfs.mount_overlay(*layers, userxattr=userxattr)
            except OSError:
                # The storage cannot hold an upper dir (e.g. it is itself an overlay): keep the
                # writable layer on a tmpfs private to this mount namespace instead.
                _rootfs.mount_tmpfs(cdir, "mode=700")
                _rootfs.mount_overlay(*layers, userxattr=userxattr)
    else:
        root = spec.root.path
        _rootfs.bind_self(root)
    for m in spec.mounts:
        if m.type == "cgroup":
            _rootfs.mount_cgroup(root, m, cgroups.from_dict(state["cgroup"]),
                                 spec.linux.has_namespace("cgroup"))
        else:
            _rootfs.mount_one(root, m)
    if os.path.ismount(os.path.join(root, "dev")):
        _rootfs.create_devices(root, spec.linux.devices)
        _rootfs.dev_symlinks(root)
    if launch is not None:
        _run_setup_hooks(spec, launch)
    _rootfs.pivot(root)
    if propagation:
        _rootfs.set_propagation("/", propagation)
    if spec.linux.sysctl or spec.domainname:
        _write_sysctls(spec)
    _rootfs.mask_paths(spec.linux.masked_paths)
    _rootfs.readonly_paths(spec.linux.readonly_paths)
    if spec.root.readonly:
        _rootfs.remount_root_readonly()


def _confine_to_root(spec: Spec, launch: Optional[Launch] = None) -> None:
    """No mount namespace (an OCI config may leave it out): nothing can be mounted without
    changing the host's mount table, but the process is still confined to root.path, as runc
    does (chroot; the config checks refuse masked and read-only paths in this case)."""
    if launch is not None:
        _run_setup_hooks(spec, launch)
    os.chroot(spec.root.path)
    os.chdir("/")


def _write_sysctls(spec: Spec) -> None:
    """linux.sysctl (and the NIS domain name) through /proc/sys, before it is made read-only."""
    items = dict(spec.linux.sysctl)
    if spec.domainname:
        items["kernel.domainname"] = spec.domainname
    for key, value in items.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ContainerError(f"cannot set sysctl {key}={value}: {e.strerror}") from None


def _preimport(spec: Spec, terminal: bool = False) -> None:
    """Import in the parent what the child needs after pivot_root/chroot, when the host's
    Python library (extension modules, libseccomp) is out of its reach."""
    if spec.process.rlimits:
        import resource  # noqa: F401
    if terminal:
        import array  # noqa: F401
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401
    if any(spec.hooks.get(k) for k in ("createContainer", "startContainer")):
        import subprocess  # noqa: F401

        from pycontain.runtime import hooks  # noqa: F401
    if spec.linux.seccomp is not None:
        from pycontain.runtime import seccomp as _seccomp

        try:
            _seccomp.prepare(spec.linux.seccomp)
        except _seccomp.SeccompError as e:
            raise ContainerError(str(e)) from None


def _open_fifo(path: str) -> Tuple[int, int]:
    """Open the exec fifo for reading *and* writing (so that a read blocks until ``start``
    writes one byte, instead of seeing EOF for want of a writer)."""
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    wfd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.set_blocking(rfd, True)
    return rfd, wfd


def _run_setup_hooks(spec: Spec, launch: Launch) -> None:
    """Before pivot_root: ask the parent to run prestart + createRuntime hooks (runtime
    namespace), then run the createContainer hooks here (container namespaces)."""
    hooks = spec.hooks
    try:  # our pid as the host sees it (the host's /proc is still mounted here)
        launch.hook_state["pid"] = int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        pass
    if launch.sync is not None and (hooks.get("prestart") or hooks.get("createRuntime")):
        r, w = launch.sync
        os.write(w, b"H")
        reply = os.read(r, 65536)
        if reply != b"K":
            raise ContainerError(reply.decode(errors="replace") or "runtime hooks failed")
    if hooks.get("createContainer"):
        from pycontain.runtime.hooks import run_hooks  # imported by _preimport

        run_hooks(hooks["createContainer"], launch.hook_state, "createContainer")


def _setup_console(sock: int, proc: Any) -> None:
    """Create a pty inside the container, send its master over ``sock`` (SCM_RIGHTS, the way
    runc does for --console-socket) and make the slave the controlling terminal and stdio."""
    import array
    import fcntl
    import socket
    import struct
    import termios

    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        size = proc.extra.get("consoleSize") or {}
        if size.get("height") or size.get("width"):
            fcntl.ioctl(slave, termios.TIOCSWINSZ,
                        struct.pack("HHHH", int(size.get("height", 0)),
                                    int(size.get("width", 0)), 0, 0))
        os.fchown(slave, proc.user.uid, -1)
        s = socket.socket(fileno=os.dup(sock))
        try:
            s.sendmsg([name.encode()],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))])
        finally:
            s.close()
    finally:
        os.close(master)
    os.close(sock)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def _await_start(errw: int, launch: Launch, spec: Spec) -> None:
    """Tell the parent everything is set up (EOF on the error pipe), then wait for ``start``."""
    rfd, wfd = launch.fifo_fds
    os.close(errw)
    while True:
        try:
            if os.read(rfd, 1):
                break
        except InterruptedError:  # pragma: no cover
            continue
    os.close(rfd)
    os.close(wfd)
    state = dict(launch.hook_state, status="created")
    if spec.hooks.get("startContainer"):
        from pycontain.runtime.hooks import run_hooks  # imported by _preimport

        run_hooks(spec.hooks["startContainer"], state, "startContainer")


def _apply_rlimits(spec: Spec) -> None:
    import resource

    for rl in spec.process.rlimits:
        key = getattr(resource, rl.type, None)
        if key is None:
            raise ContainerError(f"unknown rlimit {rl.type}")
        resource.setrlimit(key, (rl.soft, rl.hard))


def _set_groups(gids: List[int]) -> None:
    try:
        os.setgroups(gids)
    except PermissionError:
        # A user namespace whose setgroups is "deny" (an unprivileged single-id map) has no
        # supplementary groups to drop; asking for some there cannot be honoured.
        if gids or _setgroups_allowed():
            raise ContainerError(f"cannot set supplementary groups {gids}: setgroups is "
                                 "denied in this user namespace") from None


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


_CAPS: List[Any] = []  # [(pid, caps)]


def _current_caps() -> Tuple[int, int, int]:
    """(effective, permitted, inheritable) of this process, from /proc/self/status; read once
    (first, before any namespace is joined) per process: they only change when dropped."""
    if _CAPS and _CAPS[0][0] == os.getpid():
        return _CAPS[0][1]
    found: Dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("CapEff:", "CapPrm:", "CapInh:")):
                key, _, value = line.partition(":")
                found[key] = int(value.strip(), 16)
    caps = (found["CapEff"], found["CapPrm"], found["CapInh"])
    _CAPS[:] = [(os.getpid(), caps)]
    return caps


_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_ALL_CAPS = (1 << 64) - 1  # as a bounding mask: drop nothing


def _exec_process(spec: Spec, errw: int, as_init: bool, launch: Optional[Launch] = None) -> None:
    proc = spec.process
    if proc.rlimits:
        _apply_rlimits(spec)
    try:
        os.chdir(proc.cwd or "/")
    except OSError as e:
        raise ContainerError(f"cannot enter working directory {proc.cwd}: {e.strerror}") from None
    if not proc.args:
        raise ContainerError("process.args is empty: no command to run")
    path = _which(proc.args[0], proc.getenv("PATH") or DEFAULT_PATH)
    if path is None:
        raise ContainerError(f"exec {proc.args[0]}: executable file not found in $PATH", 127)
    if launch is not None and launch.fifo and not os.access(path, os.X_OK):
        # exec happens after `create` has returned: report what we can now, as runc does
        raise ContainerError(f"exec {path}: not found or not executable", 127)
    seccomp = spec.linux.seccomp
    if seccomp is not None and not proc.no_new_privileges:
        # needs CAP_SYS_ADMIN without no_new_privs: load now
        from pycontain.runtime import seccomp as _seccomp

        _seccomp.load(seccomp)
    # runc's order: bounding set, then user and groups (still privileged; KEEPCAPS keeps the
    # permitted set across setuid), then the other capability sets, then ambient ones.
    caps = proc.capabilities
    uid, gid = proc.user.uid, proc.user.gid
    if caps is not None:
        _sys.drop_caps(caps_mask(caps.bounding), *_current_caps())
    _set_groups(list(proc.user.additional_gids))
    # (also when both are 0: a process that joined a user namespace holds unmapped ids)
    if uid != 0 or gid != 0 or os.getresuid() != (0, 0, 0) or os.getresgid() != (0, 0, 0):
        if caps is not None and uid != 0:
            _sys.prctl(_PR_SET_KEEPCAPS, 1)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if caps is not None and uid != 0:
            _sys.prctl(_PR_SET_KEEPCAPS, 0)
    if caps is not None:
        _sys.drop_caps(_ALL_CAPS, caps_mask(caps.effective), caps_mask(caps.permitted),
                       caps_mask(caps.inheritable))
        for name in caps.ambient:
            bit = caps_mask([name]).bit_length() - 1
            try:  # the kernel wants it permitted *and* inheritable; like runc, skip it if not
                _sys.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, bit)
            except PermissionError:
                pass
    if proc.no_new_privileges:
        _sys.set_no_new_privs()
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    keep = 0
    if launch is not None:
        keep = launch.preserve_fds
        if launch.fifo:
            _await_start(errw, launch, spec)
            errw = -1
    if seccomp is not None and proc.no_new_privileges:
        from pycontain.runtime import seccomp as _seccomp

        _seccomp.load(seccomp)
    _die_with_parent()
    _sys.execute(path, proc.args, proc.env, errw, as_init, keep)


# ---------------------------------------------------------------------------------------------
# the container object


def _exec_child(spec: Spec, nsfds: List[Tuple[int, int, str]], rootfd: int,
                procs_files: List[str], stdio: List[int], command: Sequence[str],
                env: List[str], cwd: str, errw: int, proc: Optional[Process] = None,
                console: int = -1, preserve_fds: int = 0) -> None:  # pragma: no cover - child
    try:
        for target, fd in enumerate(stdio):
            if fd != target:
                os.dup2(fd, target)
        join_cgroup(procs_files)
        if proc is None:
            proc = spec.process
        if proc.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc.oom_score_adj))
        for fd, flag, name in nsfds:
            if flag != _sys.CLONE_NEWPID:
                _sys.setns(fd, flag, name)
        os.fchdir(rootfd)
        os.chroot(".")
        os.setsid()
        if console >= 0 and proc.terminal:
            _setup_console(console, proc)
        exec_spec = Spec(process=type(proc)(
            args=list(command), env=env, cwd=cwd, user=proc.user,
            capabilities=proc.capabilities, rlimits=proc.rlimits,
            no_new_privileges=proc.no_new_privileges))
        exec_spec.linux.seccomp = spec.linux.seccomp
        _exec_process(exec_spec, errw, False, Launch(preserve_fds=preserve_fds))
    except BaseException as e:
        try:
            os.write(errw, f"{getattr(e, 'exit_code', 125)}\t{_describe(e)}".encode())
        finally:
            os._exit(125)
