"""Syscall wrappers over the cffi module pycontain.runtime._sys_native.

Every wrapper raises an OSError subclass (PermissionError, FileNotFoundError, ...) chosen from
errno, whose message names the call and its main arguments, e.g.
``[Errno 1] mount(proc -> /proc): Operation not permitted``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Sequence

try:
    from pycontain.runtime._sys_native import ffi, lib
except ImportError as exc:  # pragma: no cover - build or environment problem
    if exc.name == "_cffi_backend":  # built, but cffi's runtime is not on this sys.path
        raise ImportError(
            "cffi's _cffi_backend cannot be imported (sys.path has no cffi: an interpreter "
            "started with -S or another environment?); pycontain.runtime._sys_native needs it",
            name=exc.name) from exc
    raise ImportError(
        "pycontain.runtime._sys_native is not built: run `python3 setup.py build_ext --inplace` "
        "or `python3 pycontain/runtime/_sys_build.py`", name=exc.name
    ) from exc

CLONE_NEWNS: int = lib.CLONE_NEWNS
CLONE_NEWUTS: int = lib.CLONE_NEWUTS
CLONE_NEWIPC: int = lib.CLONE_NEWIPC
CLONE_NEWNET: int = lib.CLONE_NEWNET
CLONE_NEWPID: int = lib.CLONE_NEWPID
CLONE_NEWCGROUP: int = lib.CLONE_NEWCGROUP
CLONE_NEWUSER: int = lib.CLONE_NEWUSER

MS_RDONLY: int = lib.MS_RDONLY
MS_NOSUID: int = lib.MS_NOSUID
MS_NODEV: int = lib.MS_NODEV
MS_NOEXEC: int = lib.MS_NOEXEC
MS_SYNCHRONOUS: int = lib.MS_SYNCHRONOUS
MS_REMOUNT: int = lib.MS_REMOUNT
MS_MANDLOCK: int = lib.MS_MANDLOCK
MS_DIRSYNC: int = lib.MS_DIRSYNC
MS_NOATIME: int = lib.MS_NOATIME
MS_NODIRATIME: int = lib.MS_NODIRATIME
MS_BIND: int = lib.MS_BIND
MS_MOVE: int = lib.MS_MOVE
MS_REC: int = lib.MS_REC
MS_SILENT: int = lib.MS_SILENT
MS_UNBINDABLE: int = lib.MS_UNBINDABLE
MS_PRIVATE: int = lib.MS_PRIVATE
MS_SLAVE: int = lib.MS_SLAVE
MS_SHARED: int = lib.MS_SHARED
MS_RELATIME: int = lib.MS_RELATIME
MS_STRICTATIME: int = lib.MS_STRICTATIME
MS_LAZYTIME: int = lib.MS_LAZYTIME

MNT_DETACH: int = lib.MNT_DETACH
MNT_FORCE: int = lib.MNT_FORCE

PR_SET_NO_NEW_PRIVS: int = lib.PR_SET_NO_NEW_PRIVS
PR_SET_CHILD_SUBREAPER: int = lib.PR_SET_CHILD_SUBREAPER
PR_SET_PDEATHSIG: int = lib.PR_SET_PDEATHSIG
PR_CAPBSET_DROP: int = lib.PR_CAPBSET_DROP
PR_SET_NAME: int = lib.PR_SET_NAME
PR_SET_DUMPABLE: int = lib.PR_SET_DUMPABLE
PR_GET_DUMPABLE: int = lib.PR_GET_DUMPABLE

S_IFCHR: int = lib.S_IFCHR
S_IFBLK: int = lib.S_IFBLK

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}
# Name of each namespace under /proc/PID/ns/.
NAMESPACE_PROC = {
    "mount": "mnt",
    "uts": "uts",
    "ipc": "ipc",
    "network": "net",
    "pid": "pid",
    "cgroup": "cgroup",
    "user": "user",
}


def _fail(call: str) -> OSError:
    err = ffi.errno
    return OSError(err, f"{call}: {os.strerror(err)}")


def _b(s: Optional[str]) -> object:
    return ffi.NULL if s is None else s.encode()


def unshare(flags: int) -> None:
    if lib.unshare(flags) < 0:
        raise _fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    if lib.setns(fd, nstype) < 0:
        raise _fail(f"setns({what or fd})")


def mount(
    source: Optional[str],
    target: str,
    fstype: Optional[str] = None,
    flags: int = 0,
    data: Optional[str] = None,
) -> None:
    if lib.mount(_b(source), target.encode(), _b(fstype), flags, _b(data)) < 0:
        kind = fstype or ("bind" if flags & MS_BIND else "flags")
        raise _fail(f"mount({kind} {source} -> {target})")


def mount_overlay_fd(lowers: Sequence[str], upper: str, work: str, target: str,
                     userxattr: bool = False) -> None:
    """overlayfs with each lower layer given on its own (the new mount API, Linux 6.8+)."""
    keep = [ffi.new("char[]", p.encode()) for p in lowers]
    arr = ffi.new("char *[]", keep)
    if lib.pyc_mount_overlay(arr, len(keep), upper.encode(), work.encode(),
                             target.encode(), 1 if userxattr else 0) < 0:
        raise _fail(f"fsmount(overlay, {len(keep)} layers -> {target})")


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount at ``path`` (with its submounts if ``recursive``)."""
    fd = int(lib.pyc_open_tree(path.encode(), 1 if recursive else 0))
    if fd < 0:
        raise _fail(f"open_tree({path})")
    return fd


def move_mount(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` at ``target``."""
    if lib.pyc_move_mount(fd, target.encode()) < 0:
        raise _fail(f"move_mount(-> {target})")


def umount2(target: str, flags: int = 0) -> None:
    if lib.umount2(target.encode(), flags) < 0:
        raise _fail(f"umount2({target})")


def pivot_root(new_root: str, put_old: str) -> None:
    if lib.pyc_pivot_root(new_root.encode(), put_old.encode()) < 0:
        raise _fail(f"pivot_root({new_root}, {put_old})")


def sethostname(name: str) -> None:
    raw = name.encode()
    if lib.sethostname(raw, len(raw)) < 0:
        raise _fail(f"sethostname({name})")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    ret: int = lib.prctl(option, a2, a3, a4, a5)
    if ret < 0:
        raise _fail(f"prctl({option})")
    return ret


class NonDumpable:
    """``with NonDumpable(): pid = os.fork()``: the child is born non-dumpable (PR_SET_DUMPABLE
    0), so that from its first instruction until its execve no process in the namespaces it
    enters can open its /proc/PID/exe, fd, mem or environ, nor ptrace it (the CVE-2019-5736
    class: a host interpreter reachable from inside a container). The caller's own setting is
    restored on leaving; execve makes the workload dumpable again, as any program is."""

    def __init__(self) -> None:
        self.old = 1
        self.pid = os.getpid()

    def __enter__(self) -> NonDumpable:
        self.old = lib.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
        if lib.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0:
            raise _fail("prctl(PR_SET_DUMPABLE, 0)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old > 0 and os.getpid() == self.pid:
            lib.prctl(PR_SET_DUMPABLE, self.old, 0, 0, 0)


def set_no_new_privs() -> None:
    if lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
        raise _fail("prctl(PR_SET_NO_NEW_PRIVS)")


def mknod(path: str, mode: int, major: int, minor: int) -> None:
    if lib.mknod(path.encode(), mode, lib.pyc_makedev(major, minor)) < 0:
        raise _fail(f"mknod({path}, {major}:{minor})")


def lo_up() -> None:
    if lib.pyc_lo_up() < 0:
        raise _fail("ioctl(lo, SIOCSIFFLAGS, IFF_UP)")


def cap_last() -> int:
    return int(lib.pyc_cap_last())


def drop_caps(bounding: int, effective: int, permitted: int, inheritable: int) -> None:
    if lib.pyc_drop_caps(bounding, effective, permitted, inheritable) < 0:
        raise _fail("capset")


def seccomp_load_bpf(prog: bytes, flags: int = 0) -> None:
    """Install a seccomp BPF program (an array of struct sock_filter) on this process."""
    if lib.pyc_seccomp_load_bpf(prog, len(prog), flags) < 0:
        raise _fail("seccomp(SECCOMP_SET_MODE_FILTER)")


def close_from(lowfd: int) -> None:
    """Close every file descriptor >= lowfd (close_range)."""
    lib.pyc_close_from(lowfd)


def clone_parent() -> int:
    """fork(2) with CLONE_PARENT: the child is a child of this process's parent. Only from a
    single-threaded process (a fresh fork); returns 0 in the child, its pid here."""
    pid = int(lib.pyc_clone_parent())
    if pid < 0:
        raise _fail("clone(CLONE_PARENT)")
    return pid


def execute(
    path: str,
    argv: Sequence[str],
    env: Sequence[str],
    errfd: int = -1,
    as_init: bool = False,
    keep_fds: int = 0,
) -> None:
    """execve ``path``; with ``as_init`` become a reaping, signal-forwarding init instead.

    Does not return on success. An exec failure is written to ``errfd`` as "CODE\\tmessage" and
    the process exits with 127 (not found) or 126. File descriptors 3 .. 3+keep_fds-1 stay
    open in the workload; every other one >= 3 is closed on exec.
    """
    keep = [ffi.new("char[]", a.encode()) for a in argv]
    keep_env = [ffi.new("char[]", e.encode()) for e in env]
    c_argv = ffi.new("char *[]", [*keep, ffi.NULL])
    c_env = ffi.new("char *[]", [*keep_env, ffi.NULL])
    lib.pyc_exec(path.encode(), c_argv, c_env, errfd, 1 if as_init else 0, keep_fds)
    raise _fail("fork(init)")
