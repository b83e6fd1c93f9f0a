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
import os
import re

from pycontain import jsonfast as json
from pycontain.defaults import DEFAULT_PATH, state_root
from pycontain.image.errors import ImageError, ImageInUseError
from pycontain.image.files import FileLock, Staging, clean_stale, dir_size, now, rmtree
from pycontain.image.model import Image
from pycontain.image.reference import HOST_IMAGE, format_reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

    InUse = Callable[["Image"], List[str]]
    Progress = Callable[[str], None]

_HEX64 = re.compile(r"^[a-f0-9]{64}$")


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
                                    or state_root())
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

    def blob_layers(self) -> Dict[str, str]:
        """Compressed blob digest -> diff_id, for the stored layers that some import unpacked
        from that blob and checked (a pull need not fetch such a blob again: the pair is a
        fact this store learned, never one a manifest or config claims)."""
        out: Dict[str, str] = {}
        for image_id in self._record_ids():
            try:
                rec = self._record(image_id)
            except ImageError:
                continue
            for x in rec.get("layers") or ():
                d, diff = x.get("digest"), x.get("diff_id")
                if isinstance(d, str) and isinstance(diff, str) and d != diff:
                    out[d] = diff
        return {d: diff for d, diff in out.items() if self.has_layer(diff)}

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
        except (ValueError, RecursionError):
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
                "imported": now(),
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
                        rmtree(os.path.join(self.tmp_dir, n))
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

    # -- import / export / commit (importer.py, export.py) -----------------------------------
    def import_image(self, path: str, name: Optional[str] = None,
                     progress: Optional[Progress] = None, verified: Sequence[str] = ()) -> Image:
        """Import an OCI layout (dir or tar), a docker-archive tar or a rootfs tar/dir
        (``verified``: see importer.import_image)."""
        from pycontain.image import importer

        return importer.import_image(self, path, name, progress, verified)

    def export(self, name: str, path: str, progress: Optional[Progress] = None) -> str:
        """Write image ``name`` as an OCI image layout (a directory, or a tar if PATH ends in
        .tar) that umoci and skopeo read."""
        from pycontain.image import export

        return export.export_image(self, name, path, progress)

    def commit(self, container: Any, ref: str, changes: Optional[Dict[str, Any]] = None,
               comment: str = "", author: str = "") -> Image:
        """Turn a container's upper dir (state dict, or name/id under the state root) into a
        new top layer on the container's image, published as ``ref``."""
        from pycontain.image import export

        return export.commit_container(self, container, ref, changes, comment, author)
