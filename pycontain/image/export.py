"""Images out of the store: ``export`` writes an OCI image layout (a directory, or a tar)
that umoci and skopeo read, its gzip layers regenerated from the layer directories (so their
diff_ids are new and the config is rewritten to match); ``commit`` turns a container's upper
dir into a new top layer (whiteouts in OCI form) on the container's image."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import time

from pycontain.defaults import DEFAULT_PATH
from pycontain.image import tarlayer
from pycontain.image.errors import ImageError
from pycontain.image.mediatypes import (
    CONTAINERD_NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYOUT,
    OCI_MANIFEST,
    REF_NAME,
    platform_arch,
)
from pycontain.image.model import MAX_LAYERS, Image
from pycontain.image.reference import format_reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from pycontain.image.store import ImageStore

    Progress = Callable[[str], None]


class _BlobWriter:
    """Writes a blob into ``blobs/sha256`` of a layout being built, named by its digest."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.dir = os.path.join(layout, "blobs", "sha256")
        os.makedirs(self.dir, exist_ok=True)

    def put(self, data: bytes) -> Dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, digest), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    def put_layer(self, layer_dir: str) -> Tuple[Dict[str, Any], str]:
        """gzip'ed tar of a layer dir: (descriptor, diff_id)."""
        tmp = os.path.join(self.dir, f".tmp-{os.urandom(6).hex()}")
        with open(tmp, "wb") as f:
            outer = tarlayer.HashingWriter(f)
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=outer,  # type: ignore[arg-type]
                               compresslevel=6, mtime=0)
            inner = tarlayer.HashingWriter(gz)
            tarlayer.write_layer(layer_dir, inner)  # type: ignore[arg-type]
            gz.close()
        digest = outer.digest()
        os.rename(tmp, os.path.join(self.dir, digest[7:]))
        return ({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": outer.count},
                inner.digest())


def _write_layout(store: ImageStore, img: Image, layout: str,
                  progress: Optional[Progress]) -> None:
    os.makedirs(layout, exist_ok=True)
    bw = _BlobWriter(layout)
    layer_descs = []
    new_diff_ids = []
    bottom_first = list(reversed(img.layers))
    for i, ldir in enumerate(bottom_first, 1):
        if progress:
            progress(f"layer {i}/{len(bottom_first)}: writing")
        desc, diff_id = bw.put_layer(ldir)
        layer_descs.append(desc)
        new_diff_ids.append(diff_id)
    config = copy.deepcopy(img.config) if img.config else {}
    config.setdefault("architecture", platform_arch())
    config.setdefault("os", "linux")
    config["rootfs"] = {"type": "layers", "diff_ids": new_diff_ids}
    cdesc = bw.put(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **cdesc},
        "layers": layer_descs,
    }
    mdesc = bw.put(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, **mdesc,
            "platform": {"architecture": config["architecture"], "os": config["os"]},
            "annotations": {REF_NAME: img.tag or "latest", CONTAINERD_NAME: img.reference},
        }],
    }
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    with open(os.path.join(layout, OCI_LAYOUT), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def export_image(store: ImageStore, name: str, path: str,
                 progress: Optional[Progress] = None) -> str:
    """Write image ``name`` as an OCI layout at ``path`` (a directory that must not exist or be
    empty; a tar file when ``path`` ends in .tar). Atomic: built beside, then renamed."""
    img = store.get(name)
    if img.builtin:
        raise ImageError("the built-in image 'host' cannot be exported")
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ImageError(f"no such directory: {parent}")
    as_tar = path.endswith(".tar")
    if os.path.lexists(path) and (as_tar or not os.path.isdir(path) or os.listdir(path)):
        raise ImageError(f"{path} already exists")
    tmp = os.path.join(parent, f".{os.path.basename(path)}.partial-{os.urandom(4).hex()}")
    try:
        if as_tar:
            layout = tmp + ".d"
            _write_layout(store, img, layout, progress)
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
                for n in (OCI_LAYOUT, "index.json", "blobs"):
                    tf.add(os.path.join(layout, n), n, filter=_plain_owner)
            shutil.rmtree(layout)
            os.rename(tmp, path)
        else:
            _write_layout(store, img, tmp, progress)
            if os.path.isdir(path):
                os.rmdir(path)
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp + ".d", ignore_errors=True)
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return path


def _plain_owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


# ---------------------------------------------------------------------------------------------
# Commit


def _find_state(store: ImageStore, container: str) -> Dict[str, Any]:
    root = store.root
    if container and "/" not in container and not container.startswith("."):
        p = os.path.join(root, container, "state.json")
        if os.path.exists(p):
            with open(p) as f:
                data: Dict[str, Any] = json.load(f)
                return data
    matches = [s for s in store._container_states()
               if str(s.get("id", "")).startswith(container) and container]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ImageError(f"container reference {container!r} is ambiguous")
    raise ImageError(f"no such container: {container}")


_CHANGE_KEYS = {"Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts",
                "Volumes", "StopSignal"}


def commit_container(store: ImageStore, container: Any, ref: str,
                     changes: Optional[Dict[str, Any]] = None, comment: str = "",
                     author: str = "") -> Image:
    """Make a new image from a container: its image's layers plus its upper dir on top.

    ``container`` is a state dict (as in ``<root>/<name>/state.json``) or a container name or id
    under the store's state root. ``changes`` overrides config keys (Cmd, Entrypoint, Env,
    WorkingDir, User, Labels). The container may keep running; stop it for a consistent copy.
    """
    full_ref = format_reference(*parse_reference(ref))
    state = container if isinstance(container, dict) else _find_state(store, str(container))
    cname = state.get("name") or state.get("id") or "?"
    lowers = state.get("lowers")
    cdir = state.get("container_dir")
    if not lowers or not cdir:
        raise ImageError(f"container {cname} does not run on an image (--rootfs): nothing to "
                         "commit")
    if state.get("tmpfs_upper"):
        raise ImageError(f"container {cname} keeps its writable layer on a private tmpfs "
                         "(the storage cannot hold an overlay upper dir): it cannot be committed")
    upper = os.path.join(cdir, "upper")
    if not os.path.isdir(upper):
        raise ImageError(f"container {cname} has no upper directory ({upper})")
    parent_ids = []
    for p in reversed(lowers):
        d = store.diff_id_of(str(p))
        if d is None:
            if os.path.abspath(str(p)) == "/":
                raise ImageError("containers of the built-in image 'host' cannot be committed")
            raise ImageError(f"container {cname} uses layer {p}, which is not in this store")
        parent_ids.append(d)
    if changes:
        bad = set(changes) - _CHANGE_KEYS
        if bad:
            raise ImageError(f"unsupported config change(s): {', '.join(sorted(bad))}")
    if len(lowers) + 1 > MAX_LAYERS:
        raise ImageError(f"container {cname}'s image has {len(lowers)} layers: a new one would "
                         f"pass the limit of {MAX_LAYERS}")
    base_cfg: Dict[str, Any] = {}
    for image_id in store._record_ids():
        try:
            rec = store._record(image_id)
        except ImageError:
            continue
        if (rec.get("config") or {}).get("rootfs", {}).get("diff_ids") == parent_ids:
            base_cfg = copy.deepcopy(rec["config"])
            break
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cfg = base_cfg or {"architecture": platform_arch(), "os": "linux",
                       "config": {"Env": [f"PATH={DEFAULT_PATH}"]}, "history": []}
    cfg.setdefault("config", {})
    for k, v in (changes or {}).items():
        cfg["config"][k] = v
    cfg["created"] = now
    if author:
        cfg["author"] = author
    with store.gc_lock(shared=True), store.staging() as staging:
        missing = [d for d in parent_ids if not store.has_layer(d)]
        if missing:
            raise ImageError(f"layer {missing[0]} of container {cname} is no longer stored")
        tar_path = staging.new_path("commit") + ".tar"
        try:
            with open(tar_path, "wb") as out:
                tarlayer.write_layer(upper, out, upper=True, exclude=(".pyalloc",))
        except tarlayer.LayerError as e:
            raise ImageError(str(e)) from None
        dest = staging.new_dir("layer")
        try:
            with open(tar_path, "rb") as f:
                res = tarlayer.extract(f, dest)
        except tarlayer.LayerError as e:
            raise ImageError(f"cannot commit {cname}: {e}") from None
        os.unlink(tar_path)
        diff_ids = [*parent_ids, res.diff_id]
        cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        hist = list(cfg.get("history") or [])
        hist.append({"created": now, "created_by": f"pycontain commit {cname}",
                     **({"comment": comment} if comment else {})})
        cfg["history"] = hist
        config_bytes = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
        records: List[Dict[str, Any]] = []
        for d in parent_ids:
            records.append({"diff_id": d, "digest": None,
                            "size": store.layer_size(d), "media_type": ""})
        records.append({"diff_id": res.diff_id, "digest": None, "size": res.size,
                        "media_type": ""})
        return store.add_image(config_bytes, records, {res.diff_id: dest}, [full_ref],
                               {"format": "commit", "container": cname})
