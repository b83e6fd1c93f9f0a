"""The container's root filesystem, set up inside its fresh mount namespace.

Order (all in the forked child, after unshare(CLONE_NEWNS)): make every mount private, build the
root (overlayfs over the image layers plus an upper dir, or a bind of a plain directory), mount
what the spec lists (/proc, /dev tmpfs, devpts, shm, mqueue, ro /sys, bind volumes), create the
default device nodes and /dev symlinks, pivot_root, then mask and read-only the sensitive paths.
Mount targets are resolved inside the new root without following symlinks out of it.
"""

from __future__ import annotations

import errno
import os
import stat

from pycontain.runtime import _sys
from pycontain.runtime.spec import DEFAULT_DEVICES, Device, Mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

_FLAGS = {
    "ro": (True, _sys.MS_RDONLY), "rw": (False, _sys.MS_RDONLY),
    "nosuid": (True, _sys.MS_NOSUID), "suid": (False, _sys.MS_NOSUID),
    "nodev": (True, _sys.MS_NODEV), "dev": (False, _sys.MS_NODEV),
    "noexec": (True, _sys.MS_NOEXEC), "exec": (False, _sys.MS_NOEXEC),
    "sync": (True, _sys.MS_SYNCHRONOUS), "async": (False, _sys.MS_SYNCHRONOUS),
    "dirsync": (True, _sys.MS_DIRSYNC), "remount": (True, _sys.MS_REMOUNT),
    "mand": (True, _sys.MS_MANDLOCK), "nomand": (False, _sys.MS_MANDLOCK),
    "noatime": (True, _sys.MS_NOATIME), "atime": (False, _sys.MS_NOATIME),
    "nodiratime": (True, _sys.MS_NODIRATIME), "diratime": (False, _sys.MS_NODIRATIME),
    "bind": (True, _sys.MS_BIND), "rbind": (True, _sys.MS_BIND | _sys.MS_REC),
    "relatime": (True, _sys.MS_RELATIME), "norelatime": (False, _sys.MS_RELATIME),
    "strictatime": (True, _sys.MS_STRICTATIME), "nostrictatime": (False, _sys.MS_STRICTATIME),
    "lazytime": (True, _sys.MS_LAZYTIME), "nolazytime": (False, _sys.MS_LAZYTIME),
}  # fmt: skip
_PROPAGATION = {
    "private": _sys.MS_PRIVATE, "rprivate": _sys.MS_PRIVATE | _sys.MS_REC,
    "shared": _sys.MS_SHARED, "rshared": _sys.MS_SHARED | _sys.MS_REC,
    "slave": _sys.MS_SLAVE, "rslave": _sys.MS_SLAVE | _sys.MS_REC,
    "unbindable": _sys.MS_UNBINDABLE, "runbindable": _sys.MS_UNBINDABLE | _sys.MS_REC,
}  # fmt: skip


def parse_options(options: List[str]) -> Tuple[int, int, str]:
    """(mount flags, propagation flags, data string) from OCI mount options."""
    flags = 0
    prop = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            on, bit = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        elif opt in _RUNTIME_OPTIONS:
            continue
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """Join ``unsafe`` under ``root``, resolving symlinks as if ``root`` were "/"."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: List[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, f"too many symlinks under {root}: {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _ensure(path: str, is_dir: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


# statvfs flags (ST_*) of what a parent mount namespace locks on a mount, as mount flags.
_LOCKABLE = ((1, _sys.MS_RDONLY), (2, _sys.MS_NOSUID), (4, _sys.MS_NODEV), (8, _sys.MS_NOEXEC),
             (1024, _sys.MS_NOATIME), (2048, _sys.MS_NODIRATIME), (4096, _sys.MS_RELATIME))


def remount_bind(target: str, flags: int) -> None:
    """Remount the bind mount ``target`` with ``flags``. In a user namespace the flags the
    mount had when it came from a more privileged mount namespace are locked and a remount
    that drops one fails with EPERM: then the mount's current flags are kept (runc's rule)."""
    base = _sys.MS_BIND | _sys.MS_REMOUNT
    try:
        _sys.mount(None, target, None, base | flags)
    except PermissionError:
        st = os.statvfs(target).f_flag
        locked = 0
        for bit, ms in _LOCKABLE:
            if st & bit:
                locked |= ms
        _sys.mount(None, target, None, base | flags | locked)


def make_private() -> None:
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)


def make_rslave() -> None:
    """Host mount events still reach the container, none go back (runc's default)."""
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_SLAVE)


def set_propagation(target: str, name: str) -> None:
    """Apply an OCI propagation name (private, rslave, shared, ...) to ``target``."""
    if name not in _PROPAGATION:
        raise ValueError(f"unknown propagation {name!r}")
    _sys.mount(None, target, None, _PROPAGATION[name])


# Options that runtimes interpret themselves (not mount(2) flags or filesystem data).
_RUNTIME_OPTIONS = frozenset(("tmpcopyup", "notmpcopyup", "copy-symlink", "z", "Z", "U",
                              "idmap", "ridmap", "rro", "rrw", "private-root"))


def mount_tmpfs(target: str, options: str = "mode=755") -> None:
    _sys.mount("tmpfs", target, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, options)


def mount_overlay(lowers: List[str], upper: str, work: str, target: str,
                  userxattr: bool = False) -> None:
    """overlayfs of ``lowers`` (top first) with ``upper``; ``userxattr``: its own metadata in
    user.overlay.* xattrs (a rootless mount: the layers a normal user made carry those)."""
    for d in (upper, work, target):
        os.makedirs(d, mode=0o755, exist_ok=True)
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if userxattr:
        data += ",userxattr"
    if len(data) < 4000:  # mount(2) copies one page of options
        _sys.mount("overlay", target, "overlay", 0, data)
        return
    try:
        _sys.mount_overlay_fd(lowers, upper, work, target, userxattr)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        raise OSError(e.errno, f"{len(lowers)} image layers do not fit in one overlay mount "
                      "on this kernel (Linux 6.8 or newer stacks up to 500)") from None


# Top-level host directories the host image does not take: the container mounts its own.
_HOST_OWN = frozenset(("proc", "sys", "dev"))


def mount_host_overlays(upper: str, work: str, target: str) -> None:
    """The built-in ``host`` image where one overlay over "/" is refused: in a user namespace
    the host's mounts under / are locked to it, and overlayfs will not take a lower layer with
    locked submounts. The root is then a tmpfs holding the host's top-level entries: each
    directory an overlay of its own (upper and work dirs ``upper/NAME``, ``work/NAME``, so the
    upper dir reads as one overlay's would), symlinks as they are, and a directory whose
    overlay is refused (it holds mounts itself, as /run may) bound read-only with them."""
    for d in (upper, work, target):
        os.makedirs(d, mode=0o755, exist_ok=True)
    _sys.mount("tmpfs", target, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=755")
    for name in sorted(os.listdir("/")):
        src, dst = "/" + name, os.path.join(target, name)
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        os.mkdir(dst, stat.S_IMODE(st.st_mode))
        if name in _HOST_OWN:
            continue
        up, wk = os.path.join(upper, name), os.path.join(work, name)
        os.makedirs(up, mode=0o755, exist_ok=True)
        os.makedirs(wk, mode=0o755, exist_ok=True)
        try:
            mount_overlay([src], up, wk, dst, userxattr=True)
        except OSError:
            os.rmdir(up)
            _sys.mount(src, dst, None, _sys.MS_BIND | _sys.MS_REC)
            remount_bind(dst, _sys.MS_RDONLY)


def bind_self(path: str) -> None:
    """Make ``path`` a mount point (required by pivot_root) by binding it onto itself."""
    _sys.mount(path, path, None, _sys.MS_BIND | _sys.MS_REC)


# Bind mounts cloned (open_tree) before a user namespace was entered: id(mount) -> fd.
_CLONED: Dict[int, int] = {}


def _is_bind(m: Mount) -> bool:
    return m.type == "bind" or bool(parse_options(m.options)[0] & _sys.MS_BIND)


def clone_bind_sources(mounts: List[Mount]) -> None:
    """Clone every bind source while the host's credentials still apply: root of a user
    namespace may be unable to reach a source the runtime was asked to bind (a directory of
    mode 0700 on the way), so the mount is attached from a detached copy made now (runc's
    and crun's mount fds). Sources that cannot be cloned are bound by path as usual."""
    for m in mounts:
        if _is_bind(m) and m.source and id(m) not in _CLONED:
            try:
                _CLONED[id(m)] = _sys.open_tree(m.source, "rbind" in m.options)
            except OSError:
                continue


def mount_one(root: str, m: Mount) -> None:
    """Mount ``m`` at its destination under ``root`` (sources of binds are host paths)."""
    flags, prop, data = parse_options(m.options)
    target = secure_join(root, m.destination)
    if _is_bind(m):
        cloned = _CLONED.pop(id(m), -1)
        try:
            st = os.stat(cloned) if cloned >= 0 else os.stat(m.source)
        except OSError:
            raise FileNotFoundError(errno.ENOENT,
                                    f"bind source {m.source} does not exist") from None
        _ensure(target, stat.S_ISDIR(st.st_mode))
        if cloned >= 0:
            try:
                _sys.move_mount(cloned, target)
            finally:
                os.close(cloned)
        else:
            _sys.mount(m.source, target, None, _sys.MS_BIND | (flags & _sys.MS_REC))
        # Bind mounts take their flags only from a remount.
        extra = flags & ~(_sys.MS_BIND | _sys.MS_REC | _sys.MS_REMOUNT)
        if extra:
            remount_bind(target, extra)
    else:
        _ensure(target, True)
        below = -1
        if m.type == "tmpfs" and "tmpcopyup" in m.options:
            below = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _mount_fs(m, target, flags, data)
            if below >= 0:
                copy_up(f"/proc/self/fd/{below}", target)
        finally:
            if below >= 0:
                os.close(below)
    if prop:
        _sys.mount(None, target, None, prop)


def _mount_fs(m: Mount, target: str, flags: int, data: str) -> None:
    """mount(2) of a filesystem; in a user namespace, what only the namespaces' owner may
    mount is bound from the host instead (as runc does rootless): sysfs without a network
    namespace of the container's own, mqueue without an ipc namespace; a devpts ``gid=``
    that the namespace does not map is left out."""
    try:
        _sys.mount(m.source or m.type, target, m.type, flags, data or None)
    except PermissionError:
        host = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}.get(m.type)
        if host is None or not os.path.isdir(host):
            raise
        _sys.mount(host, target, None, _sys.MS_BIND | _sys.MS_REC)
        remount_bind(target, flags & ~(_sys.MS_BIND | _sys.MS_REC | _sys.MS_REMOUNT))
    except OSError as e:
        if e.errno != errno.EINVAL or m.type != "devpts" or "gid=" not in data:
            raise
        data = ",".join(o for o in data.split(",") if not o.startswith("gid="))
        _sys.mount(m.source or m.type, target, m.type, flags, data or None)


def copy_up(src: str, dst: str) -> None:
    """``tmpcopyup``: what the directory held before a tmpfs covered it (``src``, reached
    through an fd opened before the mount) copied into the tmpfs, with modes, owners, times
    and symlinks as they were (podman's --tmpfs /etc and --read-only rely on it)."""
    import shutil

    def same(d: str, st: os.stat_result) -> None:
        os.lchown(d, st.st_uid, st.st_gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    same(dst, os.stat(src))
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out = dst if rel == "." else os.path.join(dst, rel)
        for n in dirnames + filenames:
            s, d = os.path.join(dirpath, n), os.path.join(out, n)
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(st.st_mode):
                os.mkdir(d)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(s, d, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(d)
            else:
                continue  # devices and sockets are not copied up
            same(d, st)
    for dirpath, dirnames, _ in os.walk(src):  # directory times, now that they are filled
        for n in dirnames:
            s = os.path.join(dirpath, n)
            st = os.lstat(s)
            if stat.S_ISDIR(st.st_mode):
                d = os.path.join(dst, os.path.relpath(s, src))
                os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def mount_cgroup(root: str, m: Mount, cg: Any, own_cgroupns: bool) -> None:
    """An OCI ``cgroup`` mount: the container's own cgroup, read-only unless asked otherwise.

    cgroup v2: a cgroup2 mount (rooted at the container's cgroup by its cgroup namespace), or a
    bind of its directory without one. cgroup v1 (as runc): a tmpfs at the destination holding
    one read-only bind per hierarchy of the container's cgroup directory, named like the host's
    mount (``cpu,cpuacct`` gets ``cpu`` and ``cpuacct`` symlinks).
    """
    flags, _, _ = parse_options(m.options)
    flags &= ~(_sys.MS_BIND | _sys.MS_REC | _sys.MS_REMOUNT)
    target = secure_join(root, m.destination)
    _ensure(target, True)
    if cg.version == 2:
        if own_cgroupns:
            _sys.mount("cgroup2", target, "cgroup2", flags)
        else:
            _sys.mount(cg.path, target, None, _sys.MS_BIND)
            remount_bind(target, flags)
        return
    _sys.mount("tmpfs", target, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC,
               "mode=755")
    suffix = "/" + cg.rel
    for d in cg.dirs():
        if not d.endswith(suffix):
            continue
        name = os.path.basename(d[: -len(suffix)])
        sub = os.path.join(target, name)
        os.mkdir(sub, 0o755)
        _sys.mount(d, sub, None, _sys.MS_BIND)
        remount_bind(sub, flags)
        if "," in name:
            for part in name.split(","):
                if not os.path.lexists(os.path.join(target, part)):
                    os.symlink(name, os.path.join(target, part))
    if flags & _sys.MS_RDONLY:
        _sys.mount(None, target, None, _sys.MS_REMOUNT | flags, "mode=755")


def create_devices(root: str, devices: Optional[List[Device]] = None) -> None:
    """mknod the default devices (and any listed), binding the host's node if mknod fails."""
    wanted = {d.path: d for d in DEFAULT_DEVICES}
    for d in devices or []:
        wanted[d.path] = d
    for dev in wanted.values():
        target = secure_join(root, dev.path)
        if os.path.lexists(target):
            continue
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if dev.type == "p":  # a FIFO: no device numbers
            os.mkfifo(target, dev.file_mode & 0o7777)
            os.chmod(target, dev.file_mode & 0o7777)
            os.chown(target, dev.uid, dev.gid)
            continue
        kind = _sys.S_IFBLK if dev.type == "b" else _sys.S_IFCHR
        try:
            _sys.mknod(target, kind | (dev.file_mode & 0o7777), dev.major, dev.minor)
            os.chmod(target, dev.file_mode & 0o7777)
            os.chown(target, dev.uid, dev.gid)
        except OSError:
            if not os.path.exists(dev.path):
                continue
            _ensure(target, False)
            _sys.mount(dev.path, target, None, _sys.MS_BIND)


def dev_symlinks(root: str) -> None:
    links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ]
    for src, dst in links:
        target = os.path.join(root, dst.lstrip("/"))
        if os.path.lexists(target):
            if dst != "/dev/ptmx":
                continue
            os.unlink(target)
        os.symlink(src, target)


def pivot(root: str) -> None:
    """pivot_root into ``root`` and detach the old root (runc's "." "." trick)."""
    os.chdir(root)
    _sys.pivot_root(".", ".")
    _sys.umount2(".", _sys.MNT_DETACH)
    os.chdir("/")


def mask_paths(paths: List[str]) -> None:
    """Hide each path: /dev/null over files, an empty read-only tmpfs over directories."""
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            _sys.mount("tmpfs", p, "tmpfs", _sys.MS_RDONLY, None)
        else:
            _sys.mount("/dev/null", p, None, _sys.MS_BIND)


def readonly_paths(paths: List[str]) -> None:
    for p in paths:
        if not os.path.exists(p):
            continue
        _sys.mount(p, p, None, _sys.MS_BIND | _sys.MS_REC)
        remount_bind(p, _sys.MS_RDONLY | _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC)


def remount_root_readonly() -> None:
    remount_bind("/", _sys.MS_RDONLY)


# Filesystems that cannot hold an overlayfs upper directory.
_NO_UPPER_FS = {"overlay", "aufs", "nfs", "nfs4", "fuse", "squashfs", "iso9660"}


def upper_needs_tmpfs(upper_parent: str) -> bool:
    """True if ``upper_parent``'s filesystem cannot hold an overlayfs upper dir.

    The upper then goes on a tmpfs private to the container's mount namespace. (An upper dir
    inside a lower layer, as with the host image, is fine: overlayfs hides it with a trap.)
    """
    try:
        real = os.path.realpath(upper_parent)
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    best, fstype = "", ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mnt = fields[4].replace("\\040", " ")
        if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, right.split()[0]
    return fstype in _NO_UPPER_FS or fstype.startswith("fuse.")
