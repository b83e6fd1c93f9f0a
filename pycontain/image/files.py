"""Files of the store: flocks, private staging directories under ``<storage>/tmp`` (removed by
the next writer when their owner died), removal that copes with unwritable directories, and
the size of a layer on disk."""

from __future__ import annotations

import fcntl
import os
import shutil
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List


class FileLock:
    """flock on a file (a context manager); shared or exclusive, blocking or not."""

    def __init__(self, path: str, shared: bool = False, blocking: bool = True) -> None:
        self.path = path
        self.shared = shared
        self.blocking = blocking
        self.fd = -1
        self.acquired = False

    def __enter__(self) -> FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self.fd, op | (0 if self.blocking else fcntl.LOCK_NB))
            self.acquired = True
        except BlockingIOError:
            self.acquired = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def rmtree(path: str) -> None:
    def onerror(func: Any, p: str, exc: Any) -> None:
        # Directories without write permission (as non-root) block removal of their entries.
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except FileNotFoundError:
            pass
        except OSError:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)

    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=onerror)
        else:
            os.unlink(path)


class Staging:
    """A private directory under ``<storage>/tmp``, flock'ed while its owner lives."""

    def __init__(self, tmp_root: str) -> None:
        os.makedirs(tmp_root, mode=0o700, exist_ok=True)
        self.path = os.path.join(tmp_root, f"stage-{os.getpid()}-{os.urandom(6).hex()}")
        os.mkdir(self.path, 0o700)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self._n = 0

    def new_path(self, prefix: str) -> str:
        self._n += 1
        return os.path.join(self.path, f"{prefix}-{self._n}")

    def new_dir(self, prefix: str) -> str:
        p = self.new_path(prefix)
        os.mkdir(p, 0o755)
        return p

    def cleanup(self) -> None:
        try:
            rmtree(self.path)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def clean_stale(tmp_root: str) -> List[str]:
    """Remove staging directories whose owner died (their flock is free)."""
    removed = []
    try:
        names = os.listdir(tmp_root)
    except FileNotFoundError:
        return removed
    for n in names:
        p = os.path.join(tmp_root, n)
        if n.startswith("stage-"):
            try:
                fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                rmtree(p)
                removed.append(p)
            finally:
                os.close(fd)
        elif n.startswith(("gc-", "json-")):
            # Layers being deleted and JSON files being written by a process that died; a
            # live writer holds the metadata lock, which our caller holds now.
            rmtree(p)
            removed.append(p)
    return removed


def dir_size(path: str) -> int:
    total = 0
    seen = set()
    for dirpath, _dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            if not (st.st_mode & 0o170000 == 0o020000):  # not a char device (whiteouts)
                total += st.st_size
    return total
