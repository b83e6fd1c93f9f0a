"""Images into the store: OCI layouts, docker-archives and rootfs tars/dirs (export and commit
are in export.py).

Import detects the format of PATH:

- an OCI image layout, as a directory or a tar (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``), as skopeo and umoci write them. Manifests and nested indexes (also
  docker manifest lists) are followed; the manifest for this machine's platform (linux/amd64
  here) or the only one is taken; with several, ``name`` selects by the
  ``org.opencontainers.image.ref.name`` annotation (the tag, or the full NAME:TAG).
- a docker-archive tar (``manifest.json``, as ``docker save`` and skopeo write it), also
  compressed, or unpacked into a directory.
- anything else: a plain root filesystem tar (plain, gzip, zstd, xz, bzip2) or directory, one
  layer.

Every blob's sha256 is checked against its descriptor (manifests, configs, layers) and every
layer's uncompressed content against the config's ``rootfs.diff_ids``; a mismatch is an
``ImageFormatError`` naming the blob. Layers already in the store are not unpacked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import time

from pycontain.defaults import DEFAULT_PATH
from pycontain.image import tarlayer
from pycontain.image.errors import ImageError, ImageFormatError
from pycontain.image.files import Staging
from pycontain.image.mediatypes import (
    CONTAINERD_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_LAYOUT,
    REF_NAME,
    platform_arch,
)
from pycontain.image.model import MAX_LAYERS, Image
from pycontain.image.reference import (
    HOST_IMAGE,
    format_reference,
    is_valid_tag,
    normalize_name,
    parse_reference,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

    from pycontain.image.store import ImageStore

    Progress = Callable[[str], None]

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_MAX_JSON = 16 << 20
_MAX_DEPTH = 8


# ---------------------------------------------------------------------------------------------
# Sources: a directory or a tar, addressed by normalized relative paths


class _Source:
    label = ""

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def open(self, rel: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, rel: str) -> int:
        raise NotImplementedError

    def read(self, rel: str, limit: int = _MAX_JSON) -> bytes:
        if self.size(rel) > limit:
            raise ImageFormatError(f"{rel} in {self.label} is too large ({self.size(rel)} "
                                   "bytes)")
        with self.open(rel) as f:
            return f.read()

    def close(self) -> None:
        pass


def _rel(name: str) -> str:
    try:
        return tarlayer.clean_name(name)
    except tarlayer.LayerError as e:
        raise ImageFormatError(str(e)) from None


class _DirSource(_Source):
    def __init__(self, root: str, verified: Sequence[str] = ()) -> None:
        self.root = os.path.realpath(root)
        self.label = root
        self.verified = frozenset(verified)

    def _path(self, rel: str) -> str:
        p = os.path.realpath(os.path.join(self.root, _rel(rel)))
        if p != self.root and not p.startswith(self.root + "/"):
            raise ImageFormatError(f"{rel} points outside {self.label}")
        return p

    def exists(self, rel: str) -> bool:
        return os.path.isfile(self._path(rel))

    def open(self, rel: str) -> IO[bytes]:
        try:
            return open(self._path(rel), "rb")
        except FileNotFoundError:
            raise ImageFormatError(f"{rel} is missing from {self.label}") from None

    def size(self, rel: str) -> int:
        try:
            return os.path.getsize(self._path(rel))
        except FileNotFoundError:
            raise ImageFormatError(f"{rel} is missing from {self.label}") from None


class _TarSource(_Source):
    def __init__(self, path: str, label: str) -> None:
        self.label = label
        try:
            self.tf = tarfile.open(path, "r:")
            self.members: Dict[str, tarfile.TarInfo] = {}
            for m in self.tf.getmembers():
                try:
                    self.members[tarlayer.clean_name(m.name)] = m
                except tarlayer.LayerError:
                    continue
        except (tarfile.TarError, EOFError) as e:
            raise ImageFormatError(f"cannot read {label}: {e}") from None

    def _member(self, rel: str) -> tarfile.TarInfo:
        m = self.members.get(_rel(rel))
        for _ in range(8):
            if m is None or not m.issym():
                break
            target = os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
            m = self.members.get(_rel(target))
        if m is not None and m.islnk():
            m = self.members.get(_rel(m.linkname))
        if m is None or not m.isreg():
            raise ImageFormatError(f"{rel} is missing from {self.label}")
        return m

    def exists(self, rel: str) -> bool:
        try:
            self._member(rel)
            return True
        except ImageFormatError:
            return False

    def open(self, rel: str) -> IO[bytes]:
        f = self.tf.extractfile(self._member(rel))
        assert f is not None
        return f

    def size(self, rel: str) -> int:
        return self._member(rel).size

    def close(self) -> None:
        self.tf.close()


def _blob_rel(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImageFormatError(f"unsupported or invalid blob digest {digest!r} (sha256 only)")
    return "blobs/sha256/" + digest[7:]


def _read_blob(src: _Source, desc: Dict[str, Any], what: str) -> bytes:
    digest = desc.get("digest", "")
    rel = _blob_rel(digest)
    data = src.read(rel)
    got = "sha256:" + hashlib.sha256(data).hexdigest()
    if got != digest:
        raise ImageFormatError(f"{what} blob {digest} is corrupt: its content has digest {got}")
    if "size" in desc and desc["size"] != len(data):
        raise ImageFormatError(f"{what} blob {digest}: size {len(data)} does not match the "
                               f"descriptor's {desc['size']}")
    return data


def _loads(data: bytes, what: str) -> Any:
    """JSON from an image, which is hostile input: invalid or absurdly nested documents are
    an ImageFormatError naming the file (never a RecursionError from the decoder)."""
    try:
        return json.loads(data)
    except ValueError as e:
        raise ImageFormatError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise ImageFormatError(f"{what} is nested too deeply to be an image file") from None


def _json(data: bytes, what: str) -> Dict[str, Any]:
    obj = _loads(data, what)
    if not isinstance(obj, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return obj


# ---------------------------------------------------------------------------------------------
# Detection


def _tar_names(path: str) -> Tuple[List[str], str]:
    """(normalized member names, compression) of a tar file (a stream when compressed)."""
    with open(path, "rb") as f:
        plain = tarlayer.detect_compression(f.read(6)) == "none"
    if plain:
        try:
            with tarfile.open(path, "r:") as tf:
                out = []
                for n in tf.getnames():
                    try:
                        out.append(tarlayer.clean_name(n))
                    except tarlayer.LayerError:
                        continue
                return out, "none"
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ImageFormatError(f"{path} is not a readable tar: {e}") from None
    with open(path, "rb") as f:
        stream: Any = None
        try:
            stream, kind = tarlayer.open_decompressed(f)
            tf = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]
            names = []
            for m in tf:
                try:
                    names.append(tarlayer.clean_name(m.name))
                except tarlayer.LayerError:
                    continue
                tf.members = []
            return names, kind
        except (tarfile.TarError, EOFError, OSError, tarlayer.LayerError) as e:
            raise ImageFormatError(f"{path} is not a readable tar: {e}") from None
        finally:
            if stream is not None and hasattr(stream, "close") and stream is not f:
                try:
                    stream.close()
                except Exception:
                    pass


def detect_format(path: str) -> str:
    """'oci' (layout dir or tar), 'docker-archive' (tar or dir), 'rootfs-tar' or 'rootfs-dir'."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, OCI_LAYOUT)):
            return "oci"
        if os.path.isfile(os.path.join(path, "manifest.json")):
            return "docker-archive"
        return "rootfs-dir"
    if not os.path.exists(path):
        raise ImageFormatError(f"no such file or directory: {path}")
    if not os.path.isfile(path):
        raise ImageFormatError(f"not a file or directory: {path}")
    names, _ = _tar_names(path)
    s = set(names)
    if OCI_LAYOUT in s and "index.json" in s:
        return "oci"
    if "manifest.json" in s:
        return "docker-archive"
    return "rootfs-tar"


# ---------------------------------------------------------------------------------------------
# Layers


def _stage_layers(store: ImageStore, staging: Staging, src: _Source,
                  layers: List[Dict[str, Any]], diff_ids: List[str],
                  progress: Optional[Progress]) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """Unpack (and verify) each layer not already in the store into the staging area.

    ``layers``: bottom first, each {"path": rel, "digest": optional, "size": optional,
    "media_type": optional}. Returns (staged dirs by diff_id, layer records).
    """
    if not layers:
        raise ImageFormatError("the image has no layers")
    if len(layers) > MAX_LAYERS:
        raise ImageFormatError(f"the image has {len(layers)} layers: at most {MAX_LAYERS} can "
                               "be stacked (overlayfs' limit)")
    if len(layers) != len(diff_ids):
        raise ImageFormatError(f"the image has {len(layers)} layers but its config lists "
                               f"{len(diff_ids)} diff_ids")
    staged: Dict[str, str] = {}
    records: List[Dict[str, Any]] = []
    n = len(layers)
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids), 1):
        if not isinstance(diff_id, str) or not _DIGEST_RE.match(diff_id):
            raise ImageFormatError(f"invalid diff_id {diff_id!r} in the image config")
        rel, digest = layer["path"], layer.get("digest")
        blob = digest or rel
        mt = layer.get("media_type") or ""
        if mt and "tar" not in mt:
            raise ImageFormatError(f"layer {blob} has media type {mt!r}: not a filesystem "
                                   "layer")
        rec: Dict[str, Any] = {"diff_id": diff_id, "digest": digest, "media_type": mt}
        if diff_id in staged or store.has_layer(diff_id):
            existing = staged.get(diff_id) or store.layer_path(diff_id)
            if digest and not src.exists(rel) and store.blob_layers().get(digest) == diff_id:
                pass  # a pull left out a blob this store has unpacked and checked before
            else:
                if progress:
                    progress(f"layer {i}/{n} {diff_id[7:19]}: verifying")
                _verify_blob(src, rel, digest, layer.get("size"), diff_id)
            rec["size"] = _known_size(records, diff_id) or store.layer_size(diff_id, existing)
            records.append(rec)
            if progress:
                progress(f"layer {i}/{n} {diff_id[7:19]}: already present")
            continue
        # Verified before the tar parser sees a byte: by its digest (and size) when the
        # manifest gives one, else (docker-archive) by its uncompressed digest, the diff_id.
        if progress:
            progress(f"layer {i}/{n} {diff_id[7:19]}: verifying")
        if digest and digest in getattr(src, "verified", ()):
            pass  # a pull checked these bytes as they arrived, into a private staging dir
        elif digest:
            _check_digest(src, rel, digest, layer.get("size"))
        else:
            _verify_blob(src, rel, None, None, diff_id)
        dest = staging.new_dir("layer")
        prefix = f"layer {i}/{n} {diff_id[7:19]}: unpacking"
        if progress:
            progress(prefix)
        try:
            with src.open(rel) as f:
                res = tarlayer.extract(f, dest, on_read=_reporter(progress, prefix,
                                                                  layer.get("size")))
        except tarlayer.LayerError as e:
            raise ImageFormatError(f"layer {blob}: {e}") from None
        except (tarfile.TarError, EOFError) as e:
            raise ImageFormatError(f"layer {blob}: truncated or corrupt: {e}") from None
        if digest and res.digest != digest:
            raise ImageFormatError(f"layer blob {digest} is corrupt: its content has digest "
                                   f"{res.digest}")
        if digest and layer.get("size") is not None and layer["size"] != res.compressed_size:
            raise ImageFormatError(f"layer blob {digest}: size {res.compressed_size} does not "
                                   f"match the descriptor's {layer['size']}")
        if res.diff_id != diff_id:
            raise ImageFormatError(f"layer {blob}: uncompressed digest {res.diff_id} does not "
                                   f"match the config's diff_id {diff_id}")
        staged[diff_id] = dest
        rec["size"] = res.size
        rec["compression"] = res.compression
        if res.warnings and progress:
            for w in res.warnings[:5]:
                progress(f"warning: layer {diff_id[7:19]}: {w}")
        records.append(rec)
    return staged, records


def _reporter(progress: Optional[Progress], prefix: str,
              total: Optional[int]) -> Optional[Callable[[int], None]]:
    """An on_read callback reporting bytes read through ``progress``, 5 times a second."""
    if progress is None:
        return None
    seen = [0, time.monotonic()]

    def on_read(k: int) -> None:
        seen[0] += k
        now = time.monotonic()
        if now - seen[1] >= 0.2:
            seen[1] = now
            of = f"/{total / 1e6:.1f}" if total else ""
            progress(f"{prefix} {seen[0] / 1e6:.1f}{of} MB")

    return on_read


def _known_size(records: List[Dict[str, Any]], diff_id: str) -> Optional[int]:
    for r in records:
        if r["diff_id"] == diff_id:
            return int(r.get("size") or 0)
    return None


def _check_digest(src: _Source, rel: str, digest: str, size: Optional[int]) -> None:
    """The blob's bytes hash to ``digest`` (and number ``size``): read once, not parsed."""
    h = hashlib.sha256()
    count = 0
    with src.open(rel) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            count += len(chunk)
            if size is not None and count > size:
                break
    got = "sha256:" + h.hexdigest()
    if size is not None and count != size:
        raise ImageFormatError(f"layer blob {digest}: size {count}{'+' if count > size else ''}"
                               f" does not match the descriptor's {size}")
    if got != digest:
        raise ImageFormatError(f"layer blob {digest} is corrupt: its content has digest {got}")


def _verify_blob(src: _Source, rel: str, digest: Optional[str], size: Optional[int],
                 diff_id: str) -> None:
    """Check a layer blob that is not unpacked (its layer is already stored)."""
    blob = digest or rel
    try:
        with src.open(rel) as f:
            got, got_diff, count = tarlayer.hash_blob(f)
    except tarlayer.LayerError as e:
        raise ImageFormatError(f"layer {blob}: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise ImageFormatError(f"layer {blob}: truncated: {e}") from None
    if digest and got != digest:
        raise ImageFormatError(f"layer blob {digest} is corrupt: its content has digest {got}")
    if digest and size is not None and size != count:
        raise ImageFormatError(f"layer blob {digest}: size {count} does not match the "
                               f"descriptor's {size}")
    if got_diff != diff_id:
        raise ImageFormatError(f"layer {blob}: uncompressed digest {got_diff} does not match "
                               f"the config's diff_id {diff_id}")


# ---------------------------------------------------------------------------------------------
# OCI layouts


def _platform_of(desc: Dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    s = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


def _platform_ok(desc: Dict[str, Any]) -> bool:
    p = desc.get("platform")
    if not p:
        return True
    return p.get("os") in (None, "linux") and p.get("architecture") in (None, platform_arch())


def _oci_candidates(src: _Source, index: Dict[str, Any], ref_name: Optional[str],
                    depth: int = 0) -> List[Tuple[Dict[str, Any], Optional[str]]]:
    """Manifest descriptors reachable from ``index`` for this platform, with their ref names."""
    if depth > _MAX_DEPTH:
        raise ImageFormatError("image indexes are nested too deeply")
    out: List[Tuple[Dict[str, Any], Optional[str]]] = []
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ImageFormatError("image index has no manifests list")
    skipped = []
    for desc in manifests:
        if not isinstance(desc, dict):
            continue
        name = (desc.get("annotations") or {}).get(REF_NAME) or ref_name
        mt = desc.get("mediaType")
        if mt in INDEX_TYPES:
            sub = _json(_read_blob(src, desc, "index"), f"index {desc.get('digest')}")
            out += _oci_candidates(src, sub, name, depth + 1)
        elif mt in MANIFEST_TYPES or mt is None:
            if _platform_ok(desc):
                out.append((desc, name))
            else:
                skipped.append(_platform_of(desc))
    if not out and skipped and depth == 0:
        raise ImageFormatError(f"no manifest for linux/{platform_arch()} (the image has "
                               f"{', '.join(sorted(set(skipped)))})")
    return out


def _select(cands: List[Tuple[Dict[str, Any], Optional[str]]], wanted: Optional[str],
            label: str) -> Tuple[Dict[str, Any], Optional[str]]:
    if not cands:
        raise ImageFormatError(f"{label} contains no image manifest")
    if len(cands) == 1:
        return cands[0]
    if wanted:
        keys = {wanted}
        try:
            n, t = parse_reference(wanted)
            keys |= {n, format_reference(n, t)}
            if ":" in wanted.rsplit("/", 1)[-1]:
                keys.add(t)
        except ImageError:
            pass
        matches = []
        for c in cands:
            r = c[1]
            if r is None:
                continue
            norm = {r}
            try:
                norm.add(format_reference(*parse_reference(r)))
            except ImageError:
                pass
            if norm & keys:
                matches.append(c)
        digests = {c[0].get("digest") for c in matches}
        if len(digests) == 1:
            return matches[0]
    names = sorted({c[1] for c in cands if c[1]})
    raise ImageFormatError(
        f"{label} holds {len(cands)} images: choose one with --name NAME:TAG matching its "
        f"ref.name annotation ({', '.join(names) or 'none is annotated'})")


def _default_ref(path: str, ref_name: Optional[str], annotations: Dict[str, Any]) -> str:
    for cand in (annotations.get(CONTAINERD_NAME), ref_name):
        if cand and ("/" in cand or ":" in cand):
            try:
                return format_reference(*parse_reference(cand))
            except ImageError:
                pass
    base = os.path.basename(os.path.normpath(path))
    for ext in (".tar.gz", ".tgz", ".tar.zst", ".tar", ".oci"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    base = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("._-") or "image"
    if base == HOST_IMAGE:
        base = "host-image"
    tag = ref_name if ref_name and is_valid_tag(ref_name) else "latest"
    return format_reference(normalize_name(base), tag)


def _target_ref(name: Optional[str], default: str) -> str:
    if name:
        return format_reference(*parse_reference(name))
    return default


def _import_oci(store: ImageStore, src: _Source, path: str, name: Optional[str],
                progress: Optional[Progress]) -> Image:
    try:
        layout = _json(src.read(OCI_LAYOUT), OCI_LAYOUT)
    except ImageFormatError:
        raise
    if "imageLayoutVersion" not in layout:
        raise ImageFormatError(f"{OCI_LAYOUT} has no imageLayoutVersion")
    index = _json(src.read("index.json"), "index.json")
    desc, ref_name = _select(_oci_candidates(src, index, None), name, path)
    manifest = _json(_read_blob(src, desc, "manifest"), f"manifest {desc.get('digest')}")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        raise ImageFormatError(f"manifest {desc.get('digest')} is an index")
    cdesc = manifest.get("config")
    if not isinstance(cdesc, dict):
        raise ImageFormatError(f"manifest {desc.get('digest')} has no config")
    config_bytes = _read_blob(src, cdesc, "config")
    config = _json(config_bytes, f"config {cdesc.get('digest')}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageFormatError(f"config {cdesc.get('digest')} has no rootfs.diff_ids")
    layers = []
    for ld in manifest.get("layers") or []:
        if not isinstance(ld, dict):
            raise ImageFormatError("invalid layer descriptor in the manifest")
        layers.append({"path": _blob_rel(ld.get("digest", "")), "digest": ld["digest"],
                       "size": ld.get("size"), "media_type": ld.get("mediaType")})
    annotations = {**(manifest.get("annotations") or {}), **(desc.get("annotations") or {})}
    ref = _target_ref(name, _default_ref(path, ref_name, annotations))
    return _publish(store, src, config_bytes, layers, diff_ids, ref, progress,
                    {"format": "oci", "path": os.path.abspath(path),
                     "manifest": desc.get("digest"), "ref_name": ref_name})


def _publish(store: ImageStore, src: _Source, config_bytes: bytes,
             layers: List[Dict[str, Any]], diff_ids: List[str], ref: str,
             progress: Optional[Progress], source: Dict[str, Any]) -> Image:
    with store.gc_lock(shared=True), store.staging() as staging:
        staged, records = _stage_layers(store, staging, src, layers, diff_ids, progress)
        img = store.add_image(config_bytes, records, staged, [ref], source)
    if progress:
        progress(f"imported {img.reference} ({img.short_id})")
    return img


# ---------------------------------------------------------------------------------------------
# docker-archive


def _import_docker(store: ImageStore, src: _Source, path: str, name: Optional[str],
                   progress: Optional[Progress]) -> Image:
    entries = _loads(src.read("manifest.json"), "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageFormatError("manifest.json lists no image")
    cands = []
    for e in entries:
        if not isinstance(e, dict) or "Config" not in e:
            raise ImageFormatError("invalid entry in manifest.json")
        tags = [t for t in (e.get("RepoTags") or []) if isinstance(t, str)]
        if not tags:
            cands.append((e, None))
        for t in tags:
            cands.append((e, t))
    if len(entries) == 1:
        entry, tag0 = entries[0], (cands[0][1] if cands else None)
    else:
        chosen, tag0 = _select([({"digest": e.get("Config"), **e}, t) for e, t in cands],
                               name, path)
        entry = next(e for e in entries if e.get("Config") == chosen.get("Config"))
    cfg_rel = _rel(str(entry["Config"]))
    config_bytes = src.read(cfg_rel)
    stem = os.path.basename(cfg_rel)
    stem = stem[:-5] if stem.endswith(".json") else stem
    if re.match(r"^[a-f0-9]{64}$", stem):
        got = hashlib.sha256(config_bytes).hexdigest()
        if got != stem:
            raise ImageFormatError(f"config blob {cfg_rel} is corrupt: its content has digest "
                                   f"sha256:{got}")
    config = _json(config_bytes, f"config {cfg_rel}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageFormatError(f"config {cfg_rel} has no rootfs.diff_ids")
    layers = [{"path": _rel(str(p)), "digest": None} for p in entry.get("Layers") or []]
    default = _default_ref(path, None, {})
    if tag0:
        try:
            default = format_reference(*parse_reference(tag0))
        except ImageError:
            pass
    ref = _target_ref(name, default)
    return _publish(store, src, config_bytes, layers, diff_ids, ref, progress,
                    {"format": "docker-archive", "path": os.path.abspath(path)})


# ---------------------------------------------------------------------------------------------
# rootfs tar / dir


def _rootfs_config(diff_id: str, comment: str) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cfg = {
        "created": now,
        "architecture": platform_arch(),
        "os": "linux",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": now, "created_by": "pycontain image import",
                     "comment": comment}],
    }
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def _import_rootfs_stream(store: ImageStore, staging: Staging, open_blob: Callable[[], Any],
                          path: str, ref: str, progress: Optional[Progress]) -> Image:
    dest = staging.new_dir("layer")
    if progress:
        progress(f"unpacking {path}")
    try:
        with open_blob() as f:
            res = tarlayer.extract(f, dest)
    except tarlayer.LayerError as e:
        raise ImageFormatError(f"{path}: {e}") from None
    config_bytes = _rootfs_config(res.diff_id, f"from {os.path.basename(path)}")
    rec = {"diff_id": res.diff_id, "digest": None, "size": res.size,
           "compression": res.compression, "media_type": ""}
    img = store.add_image(config_bytes, [rec], {res.diff_id: dest}, [ref],
                          {"format": "rootfs", "path": os.path.abspath(path)})
    if progress:
        progress(f"imported {img.reference} ({img.short_id})")
    return img


def _import_rootfs_tar(store: ImageStore, path: str, name: Optional[str],
                       progress: Optional[Progress]) -> Image:
    ref = _target_ref(name, _default_ref(path, None, {}))
    with store.gc_lock(shared=True), store.staging() as staging:
        return _import_rootfs_stream(store, staging, lambda: open(path, "rb"), path, ref,
                                     progress)


def _import_rootfs_dir(store: ImageStore, path: str, name: Optional[str],
                       progress: Optional[Progress]) -> Image:
    ref = _target_ref(name, _default_ref(path, None, {}))
    with store.gc_lock(shared=True), store.staging() as staging:
        tmp = staging.new_path("rootfs") + ".tar"
        try:
            with open(tmp, "wb") as out:
                tarlayer.write_layer(path, out)
        except tarlayer.LayerError as e:
            raise ImageFormatError(f"{path}: {e}") from None
        return _import_rootfs_stream(store, staging, lambda: open(tmp, "rb"), path, ref,
                                     progress)


# ---------------------------------------------------------------------------------------------
# Entry point


def import_image(store: ImageStore, path: str, name: Optional[str] = None,
                 progress: Optional[Progress] = None, verified: Sequence[str] = ()) -> Image:
    """Import the image at ``path`` into ``store`` as ``name`` (NAME[:TAG]) or a default.
    ``verified``: blob digests of an OCI layout directory that the caller has already checked
    against their bytes (a pull's staging dir), not hashed again."""
    try:
        return _import_image(store, path, name, progress, verified)
    except tarlayer.LayerError as e:
        raise ImageFormatError(f"{path}: {e}") from None


def _import_image(store: ImageStore, path: str, name: Optional[str],
                  progress: Optional[Progress], verified: Sequence[str] = ()) -> Image:
    if name:
        parse_reference(name)  # validate before any work
    fmt = detect_format(path)
    if fmt == "rootfs-dir":
        return _import_rootfs_dir(store, path, name, progress)
    if fmt == "rootfs-tar":
        return _import_rootfs_tar(store, path, name, progress)
    if os.path.isdir(path):
        src: _Source = _DirSource(path, verified)
        try:
            return (_import_oci if fmt == "oci" else _import_docker)(store, src, path, name,
                                                                    progress)
        finally:
            src.close()
    with open(path, "rb") as f:
        kind = tarlayer.detect_compression(f.read(6))
    if kind == "none":
        src = _TarSource(path, path)
        try:
            return (_import_oci if fmt == "oci" else _import_docker)(store, src, path, name,
                                                                    progress)
        finally:
            src.close()
    # A compressed image archive (e.g. docker save | gzip): decompress it into staging first.
    with store.staging() as staging:
        plain = staging.new_path("archive") + ".tar"
        with open(path, "rb") as f, open(plain, "wb") as out:
            stream, _ = tarlayer.open_decompressed(f)
            try:
                shutil.copyfileobj(stream, out, 1 << 20)
            except (EOFError, OSError, tarlayer.LayerError) as e:
                raise ImageFormatError(f"{path}: corrupt compressed archive: {e}") from None
        src = _TarSource(plain, path)
        try:
            return (_import_oci if fmt == "oci" else _import_docker)(store, src, path, name,
                                                                    progress)
        finally:
            src.close()
