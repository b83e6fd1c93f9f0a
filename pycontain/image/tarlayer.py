"""Layer tars: safe extraction into an overlayfs lower directory, and the way back.

Extraction (``extract``) reads a layer blob as a stream, detects its compression by magic bytes
(plain tar, gzip, zstd, and bzip2/xz as the standard library reads them), hashes the blob (its
*digest*) and the uncompressed tar (its *diff_id*) while unpacking, and writes every member under
``dest`` only:

- OCI whiteouts become overlayfs ones: ``.wh.NAME`` a character device 0/0 named NAME,
  ``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr on its directory.
- Absolute names, ``..`` components, hardlinks whose target is outside the layer or missing, and
  any member whose parent path goes through a symlink or a non-directory are refused
  (``LayerError``). Symlinks themselves may point anywhere: they are resolved inside the
  container's root, and extraction never follows one (files are opened with O_NOFOLLOW and
  O_EXCL after removing what was there).
- Device nodes are created only when running as root (skipped otherwise, with a warning).
- Modes (with setuid/setgid/sticky), numeric ownership (as root), mtimes and xattrs from PAX
  headers (SCHILY.xattr.* and LIBARCHIVE.xattr.*) are kept, except ``trusted.overlay.*`` and
  ``user.overlay.*`` which a layer must not smuggle in.
- A truncated or corrupt tar (also one that ends without the end-of-archive blocks) is an error.

``write_layer`` does the opposite for ``image export`` and ``commit``: a deterministic (sorted,
PAX) tar of a layer directory or a container's upper directory, with overlayfs whiteouts written
back in OCI form.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import shutil
import stat
import tarfile
import threading
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Dict, List, Optional, Set, Tuple

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# A normal user cannot set trusted.* xattrs: rootless layers and uppers (overlayfs mounted
# with ``userxattr`` in the user namespace) carry the user.overlay.* ones instead.
USER_OPAQUE_XATTR = "user.overlay.opaque"
OPAQUE_XATTRS = (OPAQUE_XATTR, USER_OPAQUE_XATTR)


def _host_root() -> bool:
    """Root of the initial user namespace (who alone may set trusted.* xattrs)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def is_opaque(path: str) -> bool:
    """Whether directory ``path`` of a layer or upper dir is an opaque overlayfs one."""
    return any(_get_xattr(path, name) == b"y" for name in OPAQUE_XATTRS)
_CHUNK = 1 << 20
_TAIL = 64 * 1024

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


class LayerError(ValueError):
    """A layer that cannot be read or would be unsafe to unpack (one-line message)."""


# ---------------------------------------------------------------------------------------------
# Streams


class HashingReader:
    """Wraps a readable binary stream: sha256 and byte count of everything read through it.

    It also keeps the last bytes read, so that the end of a tar can be checked after tarfile
    has stopped reading.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0
        self.tail = b""
        self.on_read: Optional[Callable[[int], None]] = None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        if data:
            self.sha.update(data)
            self.count += len(data)
            self.tail = (self.tail + data)[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
            if self.on_read is not None:
                self.on_read(len(data))
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    def close(self) -> None:
        pass


class HashingWriter:
    """Wraps a writable binary stream: sha256 and byte count of everything written through it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        if self.raw is not None:
            self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()

    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class _Peeked:
    """A stream with its first bytes already read (for magic detection)."""

    def __init__(self, head: bytes, raw: Any) -> None:
        self.head = head
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n) if n is not None and n >= 0 else self.raw.read()


def _read_exact(raw: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = raw.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def detect_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return "none"


class _ZstdProcess:
    """``zstd -dc`` as a decompressing stream (when the zstandard package is missing)."""

    def __init__(self, raw: Any, exe: str) -> None:
        import subprocess

        self.proc = subprocess.Popen([exe, "-dcq"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.error: Optional[BaseException] = None

        def feed() -> None:
            assert self.proc.stdin is not None
            try:
                while True:
                    chunk = raw.read(_CHUNK)
                    if not chunk:
                        break
                    self.proc.stdin.write(chunk)
            except BrokenPipeError:
                pass
            except BaseException as e:  # reported by close()
                self.error = e
            finally:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass

        self.thread = threading.Thread(target=feed, daemon=True)
        self.thread.start()

    def read(self, n: int = -1) -> bytes:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read(n if n is not None and n >= 0 else -1)
        if not data:
            self.finish()
        return data

    def finish(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.read()
        self.thread.join()
        err = self.proc.stderr.read().decode(errors="replace").strip()
        rc = self.proc.wait()
        if self.error is not None:
            raise self.error
        if rc != 0:
            raise LayerError(f"zstd: {err.splitlines()[-1] if err else f'exit status {rc}'}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.thread.join()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def zstd_reader(raw: Any) -> Any:
    """A decompressing reader for zstd data: the zstandard package, else the zstd program."""
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        exe = shutil.which("zstd")
        if exe is None:
            raise LayerError("the layer is zstd-compressed, but the Python package 'zstandard' "
                             "is not installed (pip install zstandard; or install the zstd "
                             "program)") from None
        return _ZstdProcess(raw, exe)
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                       closefd=False)


def open_decompressed(raw: Any) -> Tuple[Any, str]:
    """(uncompressed stream, compression name) for a layer blob stream."""
    head = _read_exact(raw, 6)
    kind = detect_compression(head)
    src = _Peeked(head, raw)
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb"), kind  # type: ignore[arg-type]
    if kind == "zstd":
        return zstd_reader(src), kind
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(src, "rb"), kind  # type: ignore[arg-type]
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(src, "rb"), kind  # type: ignore[arg-type]
    return src, kind


# ---------------------------------------------------------------------------------------------
# Extraction


class ExtractResult:
    """What ``extract`` found: digests, sizes and warnings."""

    def __init__(self, diff_id: str, digest: str, size: int, tar_size: int,
                 compressed_size: int, compression: str, entries: int,
                 warnings: List[str]) -> None:
        self.diff_id = diff_id  # sha256 of the uncompressed tar
        self.digest = digest  # sha256 of the blob as read
        self.size = size  # bytes of regular file content
        self.tar_size = tar_size
        self.compressed_size = compressed_size
        self.compression = compression
        self.entries = entries
        self.warnings = warnings

    def __repr__(self) -> str:
        return f"ExtractResult({self.diff_id}, size={self.size})"


def clean_name(name: str, what: str = "path") -> str:
    """The member name relative to the layer root ('' for the root), or LayerError."""
    if name.startswith("/"):
        raise LayerError(f"refusing absolute {what} in layer: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"refusing {what} with '..' in layer: {name!r}")
    if any("\0" in p for p in parts):
        raise LayerError(f"refusing {what} with a NUL byte in layer: {name!r}")
    return "/".join(parts)


def _xattrs(member: tarfile.TarInfo) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr."):]] = value.encode("utf-8", "surrogateescape")
    for key, value in member.pax_headers.items():
        if key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
            if name not in out:
                try:
                    out[name] = base64.b64decode(value + "=" * (-len(value) % 4))
                except ValueError:
                    continue
    return {k: v for k, v in out.items()
            if k and not k.startswith(("trusted.overlay.", "user.overlay."))}


class _Extractor:
    def __init__(self, dest: str, is_root: bool) -> None:
        self.dest = dest
        self.is_root = is_root
        self.opaque_xattr = OPAQUE_XATTR if _host_root() else USER_OPAQUE_XATTR
        self.whiteouts: Set[str] = set()
        self.dirs: Dict[str, tarfile.TarInfo] = {}
        self.warnings: List[str] = []
        self.size = 0
        self.entries = 0

    def path(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    # -- path walking ------------------------------------------------------------------------
    def _parent(self, rel: str, create: bool, name: str) -> None:
        """Make sure every ancestor of ``rel`` is a real directory inside the layer."""
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            sub = "/".join(parts[: i + 1])
            p = self.path(sub)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                if not create:
                    raise LayerError(f"hardlink target of {name!r} does not exist") from None
                os.mkdir(p, 0o755)
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if sub in self.whiteouts and create:
                # A deleted directory is recreated in this layer: hide what lies below.
                os.unlink(p)
                self.whiteouts.discard(sub)
                os.mkdir(p, 0o755)
                self._set_opaque(p, sub)
                continue
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise LayerError(f"refusing {name!r}: its parent {sub!r} is {kind}")

    def _clear(self, rel: str, keep_dir: bool) -> bool:
        """Remove what is at ``rel`` (unless a dir and keep_dir); True if it was a whiteout."""
        p = self.path(rel)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return False
            shutil.rmtree(p)
            self.dirs = {k: v for k, v in self.dirs.items()
                         if k != rel and not k.startswith(rel + "/")}
            return False
        os.unlink(p)
        if rel in self.whiteouts:
            self.whiteouts.discard(rel)
            return True
        return False

    def _set_opaque(self, path: str, rel: str) -> None:
        try:
            os.setxattr(path, self.opaque_xattr, b"y", follow_symlinks=False)
        except OSError as e:
            raise LayerError(f"cannot mark {rel or '/'!r} opaque ({self.opaque_xattr}): "
                             f"{e.strerror}{' (needs root)' if e.errno == errno.EPERM else ''}"
                             ) from None

    # -- members -----------------------------------------------------------------------------
    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        try:
            self._member(tf, m)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
                raise  # the store's file system, not the layer
            raise LayerError(f"cannot unpack {m.name!r}: {e.strerror or e}") from None

    def _member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel = clean_name(m.name)
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(rel, base, m)
            return
        if rel == "":
            if not m.isdir():
                raise LayerError(f"refusing non-directory member for the layer root: {m.name!r}")
            self.dirs[""] = m
            return
        self._parent(rel, True, m.name)
        p = self.path(rel)
        if m.isdir():
            was_whiteout = self._clear(rel, keep_dir=True)
            if not os.path.isdir(p):
                os.mkdir(p, 0o700)
            if was_whiteout:
                self._set_opaque(p, rel)
            self.dirs[rel] = m
            return
        if m.islnk():
            self._hardlink(rel, m)
            return
        self._clear(rel, keep_dir=False)  # a non-directory hides the lower entry by itself
        if m.isreg():
            self._regular(tf, rel, m)
        elif m.issym():
            os.symlink(m.linkname, p)
            self._meta(p, m, symlink=True)
        elif m.ischr() or m.isblk():
            if not self.is_root:
                self.warnings.append(f"skipped device node {rel!r} (not root)")
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            try:
                os.mknod(p, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            except PermissionError:  # root of a user namespace may not make device nodes
                self.warnings.append(f"skipped device node {rel!r} (in a user namespace)")
                return
            self._meta(p, m)
        elif m.isfifo():
            os.mkfifo(p, 0o600)
            self._meta(p, m)
        else:
            self.warnings.append(f"skipped {rel!r} (unsupported tar member type {m.type!r})")

    def _whiteout(self, rel: str, base: str, m: tarfile.TarInfo) -> None:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        self._parent(rel, True, m.name)
        if base == OPAQUE_MARKER:
            self._set_opaque(self.path(parent), parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, ...): nothing to do with overlayfs
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", ".."):
            raise LayerError(f"refusing invalid whiteout {m.name!r}")
        target = f"{parent}/{name}" if parent else name
        p = self.path(target)
        if os.path.lexists(p) and target not in self.whiteouts:
            # The entry also exists in this layer: it stays (whiteouts only hide lower layers),
            # but a directory must not merge with the lower one.
            if os.path.isdir(p) and not os.path.islink(p):
                self._set_opaque(p, target)
            return
        if target in self.whiteouts:
            return
        try:
            os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        except PermissionError:
            raise LayerError(f"cannot create the overlay whiteout for {target!r} "
                             "(needs root)") from None
        self.whiteouts.add(target)

    def _hardlink(self, rel: str, m: tarfile.TarInfo) -> None:
        target = clean_name(m.linkname, "hardlink target")
        if not target:
            raise LayerError(f"refusing hardlink {m.name!r} to the layer root")
        self._parent(target, False, m.name)
        tp = self.path(target)
        try:
            st = os.lstat(tp)
        except FileNotFoundError:
            raise LayerError(f"hardlink {m.name!r}: target {m.linkname!r} is not in the "
                             "layer") from None
        if stat.S_ISDIR(st.st_mode) or target in self.whiteouts:
            raise LayerError(f"refusing hardlink {m.name!r} to {m.linkname!r}")
        if target == rel:
            return
        self._clear(rel, keep_dir=False)
        os.link(tp, self.path(rel), follow_symlinks=False)

    def _regular(self, tf: tarfile.TarFile, rel: str, m: tarfile.TarInfo) -> None:
        p = self.path(rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            src = tf.extractfile(m)
            assert src is not None
            with os.fdopen(fd, "wb", closefd=False) as out:
                remaining = m.size
                while remaining > 0:
                    chunk = src.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise LayerError(f"truncated layer: {m.name!r} ends early")
                    out.write(chunk)
                    remaining -= len(chunk)
            self.size += m.size
            self._meta(fd, m)
        finally:
            os.close(fd)

    def _meta(self, target: Any, m: tarfile.TarInfo, symlink: bool = False) -> None:
        """Ownership, xattrs, mode, mtime of ``target`` (an fd or a path not to follow)."""
        by_fd = isinstance(target, int)
        if self.is_root:
            try:
                os.chown(target, m.uid, m.gid,
                         **({} if by_fd else {"follow_symlinks": False}))
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # a user namespace without this id (beyond its subordinate range): the file
                # stays root's, as podman would refuse; said once per id pair
                note = f"owner {m.uid}:{m.gid} is not mapped here: kept as root's"
                if note not in self.warnings:
                    self.warnings.append(note)
        for name, value in _xattrs(m).items():
            try:
                if by_fd:
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as e:
                self.warnings.append(f"xattr {name} on {m.name!r} not set: {e.strerror}")
        if not symlink:
            os.chmod(target, m.mode & 0o7777)
        ns = int(m.mtime * 1_000_000_000)
        if by_fd:
            os.utime(target, ns=(ns, ns))
        else:
            os.utime(target, ns=(ns, ns), follow_symlinks=False)

    def finish_dirs(self) -> None:
        for rel in sorted(self.dirs, key=lambda r: (-r.count("/") if r else 1, r)):
            p = self.path(rel)
            if os.path.isdir(p) and not os.path.islink(p):
                self._meta(p, self.dirs[rel])


def extract(blob: Any, dest: str, is_root: Optional[bool] = None,
            on_read: Optional[Callable[[int], None]] = None) -> ExtractResult:
    """Unpack the layer read from ``blob`` (a binary stream) into the existing dir ``dest``.

    On error the caller removes ``dest``: nothing is ever written outside it.
    """
    if is_root is None:
        is_root = os.geteuid() == 0
    raw = HashingReader(blob)
    raw.on_read = on_read
    stream: Any = None
    try:
        stream, kind = open_decompressed(raw)
        plain = HashingReader(stream)
        ex = _Extractor(dest, is_root)
        tf = tarfile.open(fileobj=plain, mode="r|",  # type: ignore[call-overload]
                          errors="surrogateescape")
        while True:
            m = tf.next()
            if m is None:
                break
            ex.member(tf, m)
            tf.members = []
        end = tf.offset
        pos, tail = plain.count, plain.tail
        block_start = end - (pos - len(tail))
        if end + tarfile.BLOCKSIZE > pos or block_start < 0 or \
                tail[block_start:block_start + tarfile.BLOCKSIZE].count(0) != tarfile.BLOCKSIZE:
            raise LayerError("truncated or corrupt tar: no end-of-archive marker after "
                             f"{ex.entries} members")
        plain.drain()
        if kind == "zstd" and isinstance(stream, _ZstdProcess):
            stream.finish()
        raw.drain()
        ex.finish_dirs()
    except LayerError:
        raise
    except tarfile.TarError as e:
        raise LayerError(f"truncated or corrupt tar: {e}") from None
    except EOFError as e:
        raise LayerError(f"truncated compressed layer: {e}") from None
    except OSError as e:
        if e.filename:  # a file system error while writing: not the layer's fault
            raise
        raise LayerError(f"corrupt layer: {e}") from None
    except Exception as e:
        if type(e).__module__ in ("zlib", "lzma", "zstandard", "zstd", "_lzma", "_bz2") or \
                type(e).__name__ in ("ZstdError", "BadGzipFile", "LZMAError", "error"):
            raise LayerError(f"corrupt compressed layer: {e}") from None
        raise
    finally:
        if isinstance(stream, _ZstdProcess):
            stream.close()
    return ExtractResult(plain.digest(), raw.digest(), ex.size, plain.count, raw.count, kind,
                         ex.entries, ex.warnings)


def hash_blob(blob: Any) -> Tuple[str, str, int]:
    """(digest, diff_id, blob size) of a layer blob, without unpacking it."""
    raw = HashingReader(blob)
    stream: Any = None
    try:
        stream, _kind = open_decompressed(raw)
        plain = HashingReader(stream)
        plain.drain()
        if isinstance(stream, _ZstdProcess):
            stream.finish()
        raw.drain()
    except tarfile.TarError as e:
        raise LayerError(f"truncated or corrupt: {e}") from None
    except EOFError as e:
        raise LayerError(f"truncated compressed layer: {e}") from None
    except OSError as e:
        raise LayerError(f"corrupt layer: {e}") from None
    except Exception as e:
        if type(e).__name__ in ("ZstdError", "BadGzipFile", "LZMAError", "error"):
            raise LayerError(f"corrupt compressed layer: {e}") from None
        raise
    finally:
        if isinstance(stream, _ZstdProcess):
            stream.close()
    return raw.digest(), plain.digest(), raw.count


# ---------------------------------------------------------------------------------------------
# Writing layer tars


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _read_xattrs(path: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        try:
            out["SCHILY.xattr." + name] = os.getxattr(path, name, follow_symlinks=False).decode(
                "utf-8", "surrogateescape")
        except OSError:
            continue
    return out


def _get_xattr(path: str, name: str) -> Optional[bytes]:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def write_layer(src: str, out: IO[bytes], upper: bool = False,
                exclude: Tuple[str, ...] = ()) -> int:
    """Write a deterministic tar of directory ``src`` to ``out``; returns the entry count.

    Overlayfs whiteouts become ``.wh.NAME`` entries, opaque directories get a
    ``.wh..wh..opq`` entry. With ``upper`` (a container's upper dir), overlayfs features that
    cannot be expressed in a layer tar (redirect_dir, metacopy) are an error. Top-level names in
    ``exclude`` are left out.
    """
    links: Dict[Tuple[int, int], str] = {}
    count = 0
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      errors="surrogateescape")

    def info(name: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = int(st.st_mtime)
        ti.pax_headers = _read_xattrs(path)
        return ti

    def empty(name: str) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        ti.mtime = 0
        ti.uname = ti.gname = ""
        return ti

    def walk(rel: str) -> None:
        nonlocal count
        base = os.path.join(src, rel) if rel else src
        try:
            names = sorted(os.listdir(base))
        except OSError as e:
            raise LayerError(f"cannot read {base}: {e.strerror}") from None
        if rel and is_opaque(base):
            tf.addfile(empty(f"{rel}/{OPAQUE_MARKER}"))
            count += 1
        for n in names:
            r = f"{rel}/{n}" if rel else n
            if not rel and n in exclude:
                continue
            p = os.path.join(src, r)
            st = os.lstat(p)
            if upper and (_get_xattr(p, "trusted.overlay.redirect") is not None
                          or _get_xattr(p, "trusted.overlay.metacopy") is not None):
                raise LayerError(f"cannot commit {r!r}: it uses overlayfs redirect_dir/metacopy")
            if _is_whiteout(st):
                tf.addfile(empty(f"{rel}/{WHITEOUT_PREFIX}{n}" if rel else WHITEOUT_PREFIX + n))
                count += 1
                continue
            if n.startswith(WHITEOUT_PREFIX):
                raise LayerError(f"cannot write {r!r}: names starting with '.wh.' are reserved")
            ti = info(r, st, p)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
                count += 1
                walk(r)
                continue
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = links[key]
                    tf.addfile(ti)
                else:
                    if st.st_nlink > 1:
                        links[key] = r
                    ti.size = st.st_size
                    with open(p, "rb") as f:
                        tf.addfile(ti, f)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(p)
                tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            else:
                continue  # sockets
            count += 1

    walk("")
    tf.close()
    return count
