"""Per-container state on disk: one directory per container under the state root.

``<root>/<name>/`` holds ``state.json`` (OCI-style: ociVersion, id, status, pid, bundle plus
pycontain's own fields), ``config.json`` (the OCI spec the container runs), ``container.log``
(output of a detached container), the allocator statistics directory and a ``lock`` file.
``state.json`` is replaced atomically (write a temp file, fsync-free rename) while holding an
exclusive flock on ``lock``. Creating the directory claims the name atomically.

Liveness never trusts the file alone: a pid counts as alive only if /proc/PID/stat shows the same
start time as recorded, so a reused pid or a killed supervisor cannot make ``ps`` lie.
"""

from __future__ import annotations

import errno
import os

from pycontain import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def valid_name(name: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127} (docker's rule)."""
    return (0 < len(name) <= 128 and name[0] not in "_.-"
            and all(c in _NAME_CHARS for c in name))


class StateError(RuntimeError):
    pass


def proc_start_time(pid: int) -> Optional[int]:
    """Start time (clock ticks after boot) of a live, non-zombie process; None otherwise."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    # fields[0] is field 3 (state); starttime is field 22.
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: Optional[int], start: Optional[int]) -> bool:
    if not pid or pid <= 0:
        return False
    now = proc_start_time(pid)
    return now is not None and (start is None or now == start)


class Lock:
    """Exclusive flock on a container's lock file (a context manager)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        import fcntl  # here: `state` and `list` take no lock (a C module less to load)

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class StateDir:
    """The state directory of one container."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.path = os.path.join(root, name)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        return os.path.exists(self.file("state.json"))

    def claim(self) -> None:
        """Create the directory; fails if the name is taken."""
        if not valid_name(self.name):
            raise StateError(f"invalid container name {self.name!r}")
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise StateError(f"container name {self.name!r} is already in use") from None

    def publish(self, state: Dict[str, Any], files: Dict[str, Any]) -> None:
        """Create the directory complete or not at all: ``state`` as state.json, each of
        ``files`` as JSON and the lock file are written into a private ``.new-NAME-PID-*``
        directory, which is then renamed to NAME; the rename fails if the name is taken, so
        two creators of one name cannot both win. (A creator killed before the rename leaves
        only its ``.new-`` directory, which :func:`stale_partials` finds.)"""
        if not valid_name(self.name):
            raise StateError(f"invalid container name {self.name!r}")
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        tmp = os.path.join(self.root, f"{NEW_PREFIX}{self.name}-{os.getpid()}-"
                                      f"{os.urandom(4).hex()}")
        os.mkdir(tmp, 0o711)
        try:
            for fname, data in files.items():
                with open(os.path.join(tmp, fname), "w") as f:
                    f.write(json.dumps(data, separators=(",", ":")))
            open(os.path.join(tmp, "lock"), "w").close()
            with open(os.path.join(tmp, "state.json"), "w") as f:
                f.write(json.dumps(state, sort_keys=True, separators=(",", ":")))
            if os.path.lexists(self.path):
                raise StateError(f"container name {self.name!r} is already in use")
            try:
                os.rename(tmp, self.path)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                    raise StateError(f"container name {self.name!r} is already in use") from None
                raise
        except BaseException:
            rmtree(tmp)
            raise

    def lock(self) -> Lock:
        return Lock(self.file("lock"))

    def read(self) -> Dict[str, Any]:
        try:
            with open(self.file("state.json")) as f:
                data: Dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            raise StateError(f"no such container: {self.name}") from None

    def write(self, state: Dict[str, Any]) -> None:
        """Atomic replace; call with the lock held. Silently skipped if the dir is gone."""
        tmp = self.file(f".state.json.{os.getpid()}")
        try:
            # Compact separators keep json on its C encoder (indent= falls back to Python).
            data = json.dumps(state, sort_keys=True, separators=(",", ":"))
            with open(tmp, "w") as f:
                f.write(data)
            os.replace(tmp, self.file("state.json"))
        except FileNotFoundError:
            pass

    def update(self, **changes: Any) -> Dict[str, Any]:
        """Read-modify-write under the lock; returns the new state ({} if removed)."""
        if not os.path.isdir(self.path):
            return {}
        with self.lock():
            try:
                state = self.read()
            except StateError:
                return {}
            state.update(changes)
            self.write(state)
            return state

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.file(f".{name}.tmp")
        text = json.dumps(data, separators=(",", ":"))
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.file(name))

    def remove(self) -> None:
        rmtree(self.path)


NEW_PREFIX = ".new-"


def stale_partials(root: str) -> List[str]:
    """``.new-`` directories of creators that died before publishing their record."""
    out = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return out
    for n in names:
        if not n.startswith(NEW_PREFIX):
            continue
        try:
            pid = int(n.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not alive(pid, None):
            out.append(os.path.join(root, n))
    return out


def remove_stale_partials(root: str) -> None:
    for path in stale_partials(root):
        rmtree(path)


def rmtree(path: str) -> None:
    """``shutil.rmtree(path, ignore_errors=True)`` for a state dir, without importing shutil
    (with fnmatch, re, bz2 and lzma: milliseconds of every command's start). Symlinks are
    removed, never followed; errors are ignored."""
    try:
        entries = list(os.scandir(path))
    except NotADirectoryError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    except OSError:
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                rmtree(e.path)
            else:
                os.unlink(e.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def list_names(root: str) -> List[str]:
    try:
        return sorted(n for n in os.listdir(root) if not n.startswith(".")  # .new-, .rm-
                      and os.path.exists(os.path.join(root, n, "state.json")))
    except FileNotFoundError:
        return []


def iter_states(root: str) -> Iterator[Dict[str, Any]]:
    for name in list_names(root):
        try:
            yield StateDir(root, name).read()
        except (StateError, ValueError):
            continue
