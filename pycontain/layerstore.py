"""The layered image store: content-addressed layers shared by images, image metadata as JSON.

Layout under the storage root::

    layers/sha256/<diff_id hex>/      one unpacked layer (an overlayfs lower dir), shared
    images/sha256/<image id hex>.json one image: its OCI config, layer list, sizes, source
    images/refs.json                  {"name:tag": "sha256:<image id>"}
    images/.lock, images/.gc.lock     flock files (metadata updates; layer garbage collection)
    tmp/                              staging: every import unpacks here, then renames

An image id is the sha256 of its config JSON (docker's convention); a layer is keyed by its
diff_id (the sha256 of its uncompressed tar). Writes are atomic: layers are unpacked into a
staging directory under ``tmp/`` and renamed into place when complete, JSON files are written
to ``tmp/`` and renamed over, and a reference is only published (refs.json) once its record and
all its layers are in place. A failed import removes its staging directory; one that crashed is
found by the next writer (its staging directory is no longer flock'ed) and removed. Layers are
removed (renamed to ``tmp/`` first, then deleted) when no image record and no container state
refers to them.

``ImageStore`` keeps the interface of the minimal store it replaces (get, names, list, remove,
the built-in image ``host``) and adds import_image, export, commit, inspect, tag and gc.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import time

from pycontain.spec import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

    InUse = Callable[["Image"], List[str]]
    Progress = Callable[[str], None]

HOST_IMAGE = "host"
DEFAULT_TAG = "latest"
DEFAULT_STATE_ROOT = "/run/pycontain"

_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                      r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_DOMAIN_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ImageError(LookupError):
    """Unknown image, or an image that cannot be imported, used or removed (one-line message)."""


class ImageInUseError(ImageError):
    """The image is used by containers (remove them first, or force)."""


# ---------------------------------------------------------------------------------------------
# References


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


def parse_reference(ref: str, default_tag: str = DEFAULT_TAG) -> Tuple[str, str]:
    """'name[:tag]' -> (normalized name, tag). docker.io/library/ prefixes are dropped."""
    ref = ref.strip()
    if "@" in ref:
        raise ImageError(f"invalid image reference {ref!r}: digests are not supported, use "
                         "NAME[:TAG]")
    name, tag = ref, default_tag
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1:]
    name = normalize_name(name)
    if not is_valid_tag(tag):
        raise ImageError(f"invalid tag {tag!r} in image reference {ref!r}")
    return name, tag


def normalize_name(name: str) -> str:
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, rest = parts[0], parts[1:]
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid image name {name!r}")
        if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            domain = ""
            if len(rest) == 2 and rest[0] == "library":
                rest = rest[1:]
    else:
        domain, rest = "", parts
        if len(rest) == 2 and rest[0] == "library":
            rest = rest[1:]
    path = "/".join(rest)
    if not path or not _NAME_RE.match(path) or len(path) > 255:
        raise ImageError(f"invalid image name {name!r} (lowercase letters, digits and "
                         "separators . _ - /)")
    if path == HOST_IMAGE and not domain:
        raise ImageError("the name 'host' is reserved for the built-in image")
    return f"{domain}/{path}" if domain else path


def format_reference(name: str, tag: str) -> str:
    return f"{name}:{tag}"


# ---------------------------------------------------------------------------------------------
# Images


class Image:
    """An image: read-only lower layers (topmost first) and the OCI image config."""

    def __init__(
        self,
        name: str,
        layers: List[str],
        env: Optional[List[str]] = None,
        cmd: Optional[List[str]] = None,
        working_dir: str = "/",
        builtin: bool = False,
        *,
        entrypoint: Optional[List[str]] = None,
        user: str = "",
        tag: str = "",
        id: str = "",
        created: str = "",
        size: int = 0,
        diff_ids: Optional[List[str]] = None,
        labels: Optional[Dict[str, str]] = None,
        config: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.name = name
        self.layers = layers  # lower directories, topmost first (overlayfs lowerdir order)
        self.env = list(env) if env is not None else [f"PATH={DEFAULT_PATH}"]
        self.cmd = list(cmd) if cmd is not None else []
        self.working_dir = working_dir or "/"
        self.builtin = builtin
        self.entrypoint = list(entrypoint) if entrypoint else []
        self.user = user or ""
        self.tag = tag
        self.id = id
        self.created = created
        self.size = size
        self.diff_ids = list(diff_ids or [])  # bottom first, as in the OCI config
        self.labels = dict(labels or {})
        self.config = config or {}

    @property
    def reference(self) -> str:
        return format_reference(self.name, self.tag) if self.tag else self.name

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    def argv(self, command: Sequence[str] = ()) -> List[str]:
        """The process arguments: Entrypoint + (command, or else Cmd), as docker does."""
        if self.builtin:
            return list(command)
        return list(self.entrypoint) + (list(command) if command else list(self.cmd))

    def read_file(self, path: str) -> Optional[bytes]:
        """Content of regular file ``path`` in the image's merged view (whiteouts and opaque
        directories applied; symlinks are not followed). None if absent."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return None
        for layer in self.layers:
            stop = False
            for i in range(1, len(parts) + 1):
                q = os.path.join(layer, *parts[:i])
                try:
                    st = os.lstat(q)
                except OSError:
                    break
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # deleted in this layer
                if i < len(parts):
                    if not stat.S_ISDIR(st.st_mode):
                        return None
                    try:
                        if os.getxattr(q, "trusted.overlay.opaque") == b"y":
                            stop = True
                    except OSError:
                        pass
                    continue
                if stat.S_ISREG(st.st_mode):
                    with open(q, "rb") as f:
                        return f.read()
                return None
            if stop:
                return None
        return None

    def resolve_user(self, user: Optional[str] = None) -> Tuple[int, int, List[int]]:
        """(uid, gid, additional gids) for ``user`` (default: the image's User), as docker
        does: "name", "uid", "name:group", "uid:gid" looked up in the image's /etc/passwd and
        /etc/group. ImageError for unknown names."""
        spec = self.user if user is None else user
        if not spec:
            return 0, 0, []
        uname, _, gname = spec.partition(":")
        passwd = _parse_colon_file(self.read_file("/etc/passwd"))
        groups = _parse_colon_file(self.read_file("/etc/group"))
        uid = gid = None
        name = None
        for f in passwd:
            if len(f) >= 4 and (f[0] == uname or (uname.isdigit() and f[2] == uname)):
                name, uid, gid = f[0], _int(f[2]), _int(f[3])
                break
        if uid is None:
            if not uname.isdigit():
                raise ImageError(f"unable to find user {uname}: no matching entries in the "
                                 "image's /etc/passwd")
            uid, gid = int(uname), 0
        if gname:
            gid = None
            for f in groups:
                if len(f) >= 3 and (f[0] == gname or (gname.isdigit() and f[2] == gname)):
                    gid = _int(f[2])
                    break
            if gid is None:
                if not gname.isdigit():
                    raise ImageError(f"unable to find group {gname}: no matching entries in "
                                     "the image's /etc/group")
                gid = int(gname)
            return uid, gid, []
        extra: List[int] = []
        if name is not None:
            for f in groups:
                if len(f) >= 4 and name in f[3].split(","):
                    g = _int(f[2])
                    if g is not None and g != gid and g not in extra:
                        extra.append(g)
        return uid, gid if gid is not None else 0, extra

    def __repr__(self) -> str:
        return f"Image({self.reference!r}, layers={self.layers!r})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "id": self.id,
            "created": self.created,
            "size": self.size,
            "layers": list(self.layers),
            "config": {"Env": list(self.env), "Cmd": list(self.cmd),
                       "Entrypoint": list(self.entrypoint), "WorkingDir": self.working_dir,
                       "User": self.user, "Labels": dict(self.labels)},
            "builtin": self.builtin,
        }


def _parse_colon_file(data: Optional[bytes]) -> List[List[str]]:
    if not data:
        return []
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()
            if line and not line.startswith("#")]


def _int(s: str) -> Optional[int]:
    try:
        return int(s)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Files and locks


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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _rmtree(path: str) -> None:
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
            _rmtree(self.path)
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
                _rmtree(p)
                removed.append(p)
            finally:
                os.close(fd)
        elif n.startswith(("gc-", "json-")):
            # Layers being deleted and JSON files being written by a process that died; a
            # live writer holds the metadata lock, which our caller holds now.
            _rmtree(p)
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


# ---------------------------------------------------------------------------------------------
# The store


class ImageStore:
    """Images under ``<storage>/images`` with layers under ``<storage>/layers``, plus ``host``.

    ``root`` is the container state root (default $PYCONTAIN_ROOT or /run/pycontain): removal
    refuses images that a container there uses, and layers that a container uses are never
    deleted. ``in_use`` replaces that scan: a callable taking an Image and returning the names
    of the containers that use it.
    """

    def __init__(self, storage: str, root: Optional[str] = None,
                 in_use: Optional[InUse] = None) -> None:
        self.storage = os.path.abspath(storage)
        self.dir = os.path.join(self.storage, "images")
        self.records_dir = os.path.join(self.dir, "sha256")
        self.refs_path = os.path.join(self.dir, "refs.json")
        self.layers_dir = os.path.join(self.storage, "layers", "sha256")
        self.tmp_dir = os.path.join(self.storage, "tmp")
        self.root = os.path.abspath(root or os.environ.get("PYCONTAIN_ROOT")
                                    or DEFAULT_STATE_ROOT)
        self._in_use = in_use

    # -- layout & locking --------------------------------------------------------------------
    def _ensure_layout(self) -> None:
        for d in (self.records_dir, self.layers_dir, self.tmp_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(os.path.dirname(self.layers_dir), 0o700)

    def lock(self) -> FileLock:
        """The metadata lock (exclusive): refs, records, layer renames and deletions."""
        self._ensure_layout()
        return FileLock(os.path.join(self.dir, ".lock"))

    def gc_lock(self, shared: bool, blocking: bool = True) -> FileLock:
        """Imports hold it shared from choosing which layers to reuse until their refs are
        published; layer garbage collection takes it exclusive."""
        self._ensure_layout()
        return FileLock(os.path.join(self.dir, ".gc.lock"), shared=shared, blocking=blocking)

    def staging(self) -> Staging:
        self._ensure_layout()
        return Staging(self.tmp_dir)

    def _write_json(self, path: str, data: Any) -> None:
        self._ensure_layout()
        tmp = os.path.join(self.tmp_dir, f"json-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # -- layers ------------------------------------------------------------------------------
    def layer_path(self, diff_id: str) -> str:
        alg, _, hexd = diff_id.partition(":")
        if alg != "sha256" or not _HEX64.match(hexd):
            raise ImageError(f"invalid layer diff_id {diff_id!r}")
        return os.path.join(self.layers_dir, hexd)

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_path(diff_id))

    def layer_ids(self) -> List[str]:
        try:
            return sorted("sha256:" + n for n in os.listdir(self.layers_dir) if _HEX64.match(n))
        except FileNotFoundError:
            return []

    def layer_size(self, diff_id: str, path: Optional[str] = None) -> int:
        """Content size of a stored layer, from the image records (else measured)."""
        for image_id in self._record_ids():
            try:
                rec = self._record(image_id)
            except ImageError:
                continue
            for x in rec.get("layers") or ():
                if x.get("diff_id") == diff_id and x.get("size") is not None:
                    return int(x["size"])
        return dir_size(path or self.layer_path(diff_id))

    def diff_id_of(self, path: str) -> Optional[str]:
        """The diff_id of a layer directory of this store (None for other paths)."""
        d, n = os.path.split(os.path.abspath(path))
        return "sha256:" + n if d == self.layers_dir and _HEX64.match(n) else None

    # -- refs & records ----------------------------------------------------------------------
    def _refs(self) -> Dict[str, str]:
        try:
            with open(self.refs_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ImageError(f"corrupt image index {self.refs_path}") from None
        return {str(k): str(v) for k, v in data.items()}

    def _record_path(self, image_id: str) -> str:
        hexd = image_id.split(":", 1)[-1]
        if not _HEX64.match(hexd):
            raise ImageError(f"invalid image id {image_id!r}")
        return os.path.join(self.records_dir, hexd + ".json")

    def _record(self, image_id: str) -> Dict[str, Any]:
        try:
            with open(self._record_path(image_id)) as f:
                data: Dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            raise ImageError(f"image {image_id} has no metadata (removed?)") from None
        except ValueError:
            raise ImageError(f"corrupt image metadata for {image_id}") from None

    def _record_ids(self) -> List[str]:
        try:
            return sorted("sha256:" + n[:-5] for n in os.listdir(self.records_dir)
                          if n.endswith(".json") and _HEX64.match(n[:-5]))
        except FileNotFoundError:
            return []

    def _image(self, image_id: str, ref: Optional[str]) -> Image:
        rec = self._record(image_id)
        cfg_all = rec.get("config") or {}
        cfg = cfg_all.get("config") or {}
        diff_ids = list((cfg_all.get("rootfs") or {}).get("diff_ids") or [])
        layers = [self.layer_path(d) for d in reversed(diff_ids)]
        if ref:
            name, tag = parse_reference(ref)
        else:
            name, tag = "<none>", "<none>"
        return Image(
            name=name,
            layers=layers,
            env=list(cfg.get("Env") or [f"PATH={DEFAULT_PATH}"]),
            cmd=list(cfg.get("Cmd") or []),
            working_dir=cfg.get("WorkingDir") or "/",
            entrypoint=list(cfg.get("Entrypoint") or []),
            user=cfg.get("User") or "",
            tag=tag,
            id=image_id,
            created=cfg_all.get("created") or rec.get("imported") or "",
            size=int(sum(int(x.get("size") or 0) for x in rec.get("layers") or [])),
            diff_ids=diff_ids,
            labels=dict(cfg.get("Labels") or {}),
            config=cfg_all,
        )

    def resolve(self, ref: str) -> Tuple[str, Optional[str]]:
        """(image id, 'name:tag' or None when given by id) for a reference or an id prefix."""
        refs = self._refs()
        try:
            name, tag = parse_reference(ref)
            full = format_reference(name, tag)
            if full in refs:
                return refs[full], full
        except ImageError:
            full = ""
        hexd = ref[7:] if ref.startswith("sha256:") else ref
        if re.match(r"^[a-f0-9]{4,64}$", hexd):
            ids = [i for i in self._record_ids() if i[7:].startswith(hexd)]
            if len(ids) == 1:
                return ids[0], None
            if len(ids) > 1:
                raise ImageError(f"image id prefix {ref!r} is ambiguous")
        raise ImageError(f"unknown image {ref!r} (available: {', '.join(self.names())})")

    # -- the old interface -------------------------------------------------------------------
    def host(self) -> Image:
        return Image(HOST_IMAGE, ["/"], builtin=True, tag="", id="", created="")

    def get(self, name: str) -> Image:
        if name == HOST_IMAGE:
            return self.host()
        image_id, ref = self.resolve(name)
        img = self._image(image_id, ref)
        missing = [p for p in img.layers if not os.path.isdir(p)]
        if missing:
            raise ImageError(f"image {name!r} is missing layer {os.path.basename(missing[0])}")
        return img

    def names(self) -> List[str]:
        return [HOST_IMAGE, *sorted(self._refs())]

    def list(self) -> List[Image]:
        out = [self.host()]
        refs = self._refs()
        tagged = set()
        for ref in sorted(refs):
            try:
                out.append(self._image(refs[ref], ref))
                tagged.add(refs[ref])
            except ImageError:
                continue
        for image_id in self._record_ids():
            if image_id not in tagged:
                try:
                    out.append(self._image(image_id, None))
                except ImageError:
                    continue
        return out

    # -- containers --------------------------------------------------------------------------
    def _container_states(self) -> Iterator[Dict[str, Any]]:
        try:
            names = sorted(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for n in names:
            try:
                with open(os.path.join(self.root, n, "state.json")) as f:
                    s = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(s, dict):
                yield s

    def in_use(self, image: Image) -> List[str]:
        """Names of the containers (running or not) that use ``image``."""
        if self._in_use is not None:
            return list(self._in_use(image))
        users = []
        for s in self._container_states():
            lowers = s.get("lowers")
            if lowers is not None:
                used = list(lowers) == list(image.layers)
            else:
                used = s.get("image") in (image.reference, image.id) and s.get("image") != ""
            if used:
                users.append(str(s.get("name") or s.get("id") or "?"))
        return users

    def _container_layers(self) -> set:  # type: ignore[type-arg]
        used = set()
        for s in self._container_states():
            for p in s.get("lowers") or ():
                d = self.diff_id_of(str(p))
                if d:
                    used.add(d)
        return used

    # -- publishing --------------------------------------------------------------------------
    def add_image(self, config_bytes: bytes, layers: List[Dict[str, Any]],
                  staged: Dict[str, str], refs: Sequence[str],
                  source: Optional[Dict[str, Any]] = None) -> Image:
        """Publish an image: move staged layers into place, write its record, then its refs.

        ``layers`` describes each layer bottom first (diff_id, size, digest, media_type),
        ``staged`` maps diff_ids to unpacked directories in a staging area (layers already in
        the store need none). Call with the gc lock held shared since those were checked.
        """
        import hashlib

        try:
            config = json.loads(config_bytes)
        except ValueError:
            raise ImageError("image config is not valid JSON") from None
        if not isinstance(config, dict):
            raise ImageError("image config is not a JSON object")
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if [x["diff_id"] for x in layers] != diff_ids:
            raise ImageError("internal error: layer list does not match the config's diff_ids")
        full_refs = [format_reference(*parse_reference(r)) for r in refs]
        with self.lock():
            for d in diff_ids:
                dest = self.layer_path(d)
                if os.path.isdir(dest):
                    continue
                src = staged.get(d)
                if src is None:
                    raise ImageError(f"layer {d} vanished from the store during the import; "
                                     "import again")
                try:
                    os.rename(src, dest)
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
            rec = {
                "id": image_id,
                "config": config,
                "layers": layers,
                "imported": _now(),
                "source": source or {},
            }
            self._write_json(self._record_path(image_id), rec)
            if full_refs:
                self._set_refs(full_refs, image_id)
        ref = full_refs[0] if full_refs else None
        return self._image(image_id, ref)

    def _set_refs(self, full_refs: Sequence[str], image_id: str) -> None:
        """Point ``full_refs`` at ``image_id`` (metadata lock held). An image that loses its
        last name is removed unless a container uses it (its layers go at the next gc)."""
        table = self._refs()
        replaced = [table[r] for r in full_refs if r in table and table[r] != image_id]
        for r in full_refs:
            table[r] = image_id
        self._write_json(self.refs_path, table)
        for old in replaced:
            if old in table.values():
                continue
            try:
                old_img = self._image(old, None)
            except ImageError:
                continue
            if not self.in_use(old_img):
                os.unlink(self._record_path(old))

    # -- management --------------------------------------------------------------------------
    def tag(self, ref: str, new_ref: str) -> Image:
        """Give image ``ref`` the name ``new_ref`` (moved if another image had it)."""
        image_id, _ = self.resolve(ref)
        full = format_reference(*parse_reference(new_ref))
        with self.lock():
            self._set_refs([full], image_id)
        self.gc()
        return self._image(image_id, full)

    def remove(self, name: str, force: bool = False) -> List[str]:
        """Remove a reference (or, by id, the image); docker's "Untagged:"/"Deleted:" lines.

        Refuses while a container uses the image, unless ``force``: then the image is untagged
        and deleted, and its layers stay until no container uses them. Layers that other images
        use are always kept.
        """
        if name == HOST_IMAGE:
            raise ImageError("the built-in image 'host' cannot be removed")
        out: List[str] = []
        with self.lock():
            image_id, ref = self.resolve(name)
            table = self._refs()
            names = sorted(r for r, i in table.items() if i == image_id)
            img = self._image(image_id, ref or (names[0] if names else None))
            users = self.in_use(img)
            if ref is None and len(names) > 1 and not force:
                raise ImageError(f"image {image_id[7:19]} is referenced by several names "
                                 f"({', '.join(names)}): remove them by name, or use force")
            untag = [ref] if ref is not None else names
            if users and not force and len(names) <= len(untag):
                raise ImageInUseError(
                    f"image {img.reference if ref else image_id[7:19]} is in use by "
                    f"container{'s' if len(users) > 1 else ''} {', '.join(users)} "
                    "(remove the container first, or force)")
            for r in untag:
                table.pop(r, None)
                out.append(f"Untagged: {r}")
            if untag:
                self._write_json(self.refs_path, table)
            if image_id not in table.values():
                os.unlink(self._record_path(image_id))
                out.append(f"Deleted: {image_id}")
        removed = self.gc()
        out += [f"Deleted: {d}" for d in removed]
        return out

    def gc(self, blocking: bool = False) -> List[str]:
        """Delete layers no image and no container uses; stale staging dirs too.

        Skipped (returns []) while imports hold the gc lock, unless ``blocking``.
        """
        removed: List[str] = []
        if not os.path.isdir(self.dir):
            return removed
        with self.gc_lock(shared=False, blocking=blocking) as gl:
            if not gl.acquired:
                return removed
            with self.lock():
                clean_stale(self.tmp_dir)
                used = set(self._container_layers())
                for image_id in self._record_ids():
                    try:
                        rec = self._record(image_id)
                    except ImageError:
                        continue
                    used.update((rec.get("config") or {}).get("rootfs", {}).get("diff_ids")
                                or [])
                for d in self.layer_ids():
                    if d in used:
                        continue
                    trash = os.path.join(self.tmp_dir, f"gc-{d[7:]}-{os.urandom(4).hex()}")
                    os.rename(self.layer_path(d), trash)
                    removed.append(d)
            for d in removed:
                for n in os.listdir(self.tmp_dir):
                    if n.startswith(f"gc-{d[7:]}-"):
                        _rmtree(os.path.join(self.tmp_dir, n))
        return removed

    def inspect(self, name: str) -> Dict[str, Any]:
        """docker-like description of an image (Id, RepoTags, Config, RootFS, GraphDriver)."""
        img = self.get(name)
        if img.builtin:
            return {"Id": "", "RepoTags": [HOST_IMAGE], "Builtin": True,
                    "Config": {"Env": img.env, "Cmd": img.cmd, "WorkingDir": img.working_dir},
                    "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": "/"}}}
        rec = self._record(img.id)
        cfg = rec.get("config") or {}
        tags = sorted(r for r, i in self._refs().items() if i == img.id)
        return {
            "Id": img.id,
            "RepoTags": tags,
            "Created": cfg.get("created") or "",
            "Imported": rec.get("imported"),
            "Author": cfg.get("author") or "",
            "Architecture": cfg.get("architecture") or "",
            "Os": cfg.get("os") or "",
            "Size": img.size,
            "Config": cfg.get("config") or {},
            "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
            "Layers": rec.get("layers") or [],
            "History": cfg.get("history") or [],
            "Source": rec.get("source") or {},
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(img.layers)}},
            "UsedBy": self.in_use(img),
        }

    # -- import / export / commit (see pycontain.imageformats) -------------------------------
    def import_image(self, path: str, name: Optional[str] = None,
                     progress: Optional[Progress] = None) -> Image:
        """Import an OCI layout (dir or tar), a docker-archive tar or a rootfs tar/dir."""
        from pycontain import imageformats

        return imageformats.import_image(self, path, name, progress)

    def export(self, name: str, path: str, progress: Optional[Progress] = None) -> str:
        """Write image ``name`` as an OCI image layout (a directory, or a tar if PATH ends in
        .tar) that umoci and skopeo read."""
        from pycontain import imageformats

        return imageformats.export_image(self, name, path, progress)

    def commit(self, container: Any, ref: str, changes: Optional[Dict[str, Any]] = None,
               comment: str = "", author: str = "") -> Image:
        """Turn a container's upper dir (state dict, or name/id under the state root) into a
        new top layer on the container's image, published as ``ref``."""
        from pycontain import imageformats

        return imageformats.commit_container(self, container, ref, changes, comment, author)
