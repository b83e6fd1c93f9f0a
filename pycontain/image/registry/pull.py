"""``pycontain pull``: resolve a reference to one manifest (an index or manifest list picks
this machine's platform, or ``--platform os/arch``), fetch the config, then the layers, several
at once, with their digests and sizes checked while they arrive, into a staged OCI layout, and
import that layout (the store checks every digest and diff_id again). A layer blob this store
has already unpacked (it knows that blob's digest gives that diff_id) is not fetched again. A
failure leaves nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from pycontain.image import mediatypes as mt
from pycontain.image.registry import locations
from pycontain.image.registry.client import Client, NotFound, Options, RegistryError
from pycontain.image.registry.progress import Display
from pycontain.image.registry.refs import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    from pycontain.image.model import Image
    from pycontain.image.store import ImageStore

ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_LIST, mt.DOCKER_MANIFEST])
PARALLEL = 3  # layers fetched at once


class _Stop(Exception):
    pass


def _platform(spec: Optional[str]) -> Dict[str, str]:
    if not spec:
        return {"os": "linux", "architecture": mt.platform_arch()}
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"invalid --platform {spec!r} (os/arch[/variant])")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def _check_digest(data: bytes, digest: str, what: str) -> None:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise RegistryError(f"{what}: digest mismatch: refused")


def _blob_digest(item: Any, r: Any) -> Tuple[str, Optional[int]]:
    if not isinstance(item, dict):
        raise RegistryError(f"{r}: bad descriptor in the manifest")
    digest, size = str(item.get("digest", "")), item.get("size")
    if not digest.startswith("sha256:") or len(digest) != 71 or \
            any(c not in "0123456789abcdef" for c in digest[7:]):
        raise RegistryError(f"{r}: bad blob digest {digest!r} in the manifest")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise RegistryError(f"{r}: bad blob size {size!r} in the manifest")
    return digest, size


def resolve(client: Client, r: Any, want: Dict[str, str]) -> Tuple[bytes, str, Dict[str, Any]]:
    """The image manifest of reference ``r`` for platform ``want``: (bytes, type, document)."""
    try:
        data, ctype = client.get_json(f"manifests/{r.digest or r.tag}", ACCEPT)
    except NotFound as e:
        raise NotFound(f"{r}: image not known to the registry ({str(e).split(': ')[-1]})") \
            from None
    if r.digest:
        _check_digest(data, r.digest, str(r))
    doc = _json(data, "manifest")
    ctype = doc.get("mediaType") or ctype
    if ctype in mt.INDEX_TYPES or "manifests" in doc:
        entries = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
        choice = next((m for m in entries
                       if all((m.get("platform") or {}).get(k) == v for k, v in want.items())),
                      None)
        if choice is None:
            found = sorted({f"{(m.get('platform') or {}).get('os')}/"
                            f"{(m.get('platform') or {}).get('architecture')}" for m in entries})
            raise RegistryError(f"{r}: no image for {want['os']}/{want['architecture']} "
                                f"(the index has {', '.join(found) or 'none'})")
        digest, _ = _blob_digest(choice, r)
        data, ctype = client.get_json(f"manifests/{digest}", ACCEPT)
        _check_digest(data, digest, f"{r} manifest")
        doc = _json(data, "manifest")
        ctype = doc.get("mediaType") or choice.get("mediaType") or ctype
    if ctype not in mt.MANIFEST_TYPES:
        raise RegistryError(f"{r}: unsupported manifest type {ctype!r}")
    return data, ctype, doc


def pull(store: ImageStore, ref: str, opts: Optional[Options] = None,
         platform: Optional[str] = None, quiet: bool = True,
         display: Optional[Display] = None) -> Image:
    r = parse(ref)
    opts = opts or Options()
    client = Client(r.api_host, r.repository, opts, registry=r.registry)
    display = display or Display(quiet=quiet)
    want = _platform(platform)
    try:
        data, ctype, doc = resolve(client, r, want)
        manifest_digest = "sha256:" + hashlib.sha256(data).hexdigest()
        outer = tempfile.mkdtemp(prefix=".pull-", dir=_tmp_dir(store))
        try:
            staging = os.path.join(outer, "image")  # a fixed name: the importer derives names
            blobs = os.path.join(staging, "blobs", "sha256")
            os.makedirs(blobs)
            with open(os.path.join(blobs, manifest_digest[7:]), "wb") as f:
                f.write(data)
            if not isinstance(doc.get("config"), dict):
                raise RegistryError(f"{r}: the manifest has no config")
            layers = doc.get("layers") or []
            if not isinstance(layers, list):
                raise RegistryError(f"{r}: the manifest's layers are not a list")
            cdigest, csize = _blob_digest(doc["config"], r)
            cpath = os.path.join(blobs, cdigest[7:])
            with open(cpath, "wb") as out:
                client.fetch_blob(cdigest, out, csize)
            with open(cpath, "rb") as f:
                cfg = _json(f.read(), "image config")
            if platform:  # what the image says it runs on
                has = f"{cfg.get('os')}/{cfg.get('architecture')}"
                if has != f"{want['os']}/{want['architecture']}":
                    raise RegistryError(f"{r}: no image for {want['os']}/"
                                        f"{want['architecture']} (it is {has})")
            fetched = _fetch_layers(store, client, r, layers, cfg, blobs, display)
            with open(os.path.join(staging, "oci-layout"), "w") as f:
                json.dump({"imageLayoutVersion": "1.0.0"}, f)
            with open(os.path.join(staging, "index.json"), "w") as f:
                json.dump({"schemaVersion": 2, "manifests": [{
                    "mediaType": ctype, "digest": manifest_digest, "size": len(data),
                    "annotations": {mt.REF_NAME: r.tag}}]}, f)
            display.note("Writing manifest to image destination")
            img = store.import_image(staging, f"{r.local_name}:{r.tag}",
                                     verified=[d for d, _ in fetched])
            locations.record(store, r.registry, r.repository,
                             [cdigest] + [_blob_digest(x, r)[0] for x in layers])
            return img
        finally:
            shutil.rmtree(outer, ignore_errors=True)
    finally:
        client.close()


def _fetch_layers(store: ImageStore, client: Client, r: Any, layers: List[Any],
                  cfg: Dict[str, Any], blobs: str, display: Display
                  ) -> List[Tuple[str, Optional[int]]]:
    """Fetch the layers the store lacks; returns those fetched (digest, size)."""
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise RegistryError(f"{r}: the config's rootfs.diff_ids do not match the "
                            f"manifest's {len(layers)} layers")
    known = store.blob_layers()
    todo: List[Tuple[str, Optional[int]]] = []
    for item, diff_id in zip(layers, diff_ids):
        digest, size = _blob_digest(item, r)
        if any(d == digest for d, _ in todo):
            continue
        if known.get(digest) == diff_id:
            display.note(f"Copying blob {digest[7:19]} skipped: already in the store")
            continue
        todo.append((digest, size))
    stop = threading.Event()

    def fetch(job: Tuple[str, Optional[int]], c: Client) -> None:
        digest, size = job
        bar = display.bar("Copying blob", digest[7:19], size)

        def on_read(n: int) -> None:
            if stop.is_set():
                raise _Stop()
            bar.update(n)

        try:
            with open(os.path.join(blobs, digest[7:]), "wb") as out:
                c.fetch_blob(digest, out, size, on_read)
        except _Stop:
            bar.finish("stopped")
            return
        except BaseException:
            stop.set()
            bar.finish("failed")
            raise
        finally:
            c.close()
        bar.finish("done")

    if len(todo) <= 1:
        for job in todo:
            fetch(job, client.clone())
        return todo
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(todo))) as pool:
        futures = [pool.submit(fetch, job, client.clone()) for job in todo]
        errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return todo


def _tmp_dir(store: ImageStore) -> str:
    os.makedirs(store.tmp_dir, mode=0o700, exist_ok=True)
    return store.tmp_dir


def _json(data: bytes, what: str) -> Dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(f"the registry's {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"the registry's {what} is not a JSON object")
    return doc

