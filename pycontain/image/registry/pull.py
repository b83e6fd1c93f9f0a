"""``pycontain pull``: resolve a reference to one manifest (an index or manifest list picks
this machine's platform, or ``--platform os/arch``), fetch the config and layers with their
digests and sizes checked while they arrive, write them into a staged OCI layout, and import
that layout (the store checks every digest and diff_id again). A failure leaves nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

from pycontain.image import mediatypes as mt
from pycontain.image.registry.client import Client, RegistryError
from pycontain.image.registry.refs import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from pycontain.image.model import Image
    from pycontain.image.store import ImageStore

ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_LIST, mt.DOCKER_MANIFEST])


def _platform(spec: Optional[str]) -> Dict[str, str]:
    if not spec:
        return {"os": "linux", "architecture": mt.platform_arch()}
    parts = spec.split("/")
    if len(parts) not in (2, 3):
        raise RegistryError(f"invalid --platform {spec!r} (os/arch[/variant])")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def _check_digest(data: bytes, digest: str, what: str) -> None:
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise RegistryError(f"{what}: digest mismatch: refused")


def pull(store: ImageStore, ref: str, tls_verify: bool = True, platform: Optional[str] = None,
         plain_http: bool = False, quiet: bool = True) -> Image:
    r = parse(ref)
    client = Client(r.api_host, r.repository, tls_verify=tls_verify, plain_http=plain_http)
    want = _platform(platform)
    data, ctype = client.get_json(f"manifests/{r.digest or r.tag}", ACCEPT)
    if r.digest:
        _check_digest(data, r.digest, str(r))
    doc = _json(data, "manifest")
    ctype = doc.get("mediaType") or ctype
    if ctype in mt.INDEX_TYPES or "manifests" in doc:
        choice = next((m for m in doc.get("manifests") or []
                       if all((m.get("platform") or {}).get(k) == v for k, v in want.items())),
                      None)
        if choice is None:
            found = sorted({f"{(m.get('platform') or {}).get('os')}/"
                            f"{(m.get('platform') or {}).get('architecture')}"
                            for m in doc.get("manifests") or []})
            raise RegistryError(f"{r}: no image for {want['os']}/{want['architecture']} "
                                f"(the index has {', '.join(found) or 'none'})")
        digest = str(choice["digest"])
        data, ctype = client.get_json(f"manifests/{digest}", ACCEPT)
        _check_digest(data, digest, f"{r} manifest")
        doc = _json(data, "manifest")
        ctype = doc.get("mediaType") or choice.get("mediaType") or ctype
    if ctype not in mt.MANIFEST_TYPES:
        raise RegistryError(f"{r}: unsupported manifest type {ctype!r}")
    manifest_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    outer = tempfile.mkdtemp(prefix=".pull-", dir=_tmp_dir(store))
    staging = os.path.join(outer, "image")  # a fixed name: the importer derives names from it
    try:
        blobs = os.path.join(staging, "blobs", "sha256")
        os.makedirs(blobs)
        with open(os.path.join(blobs, manifest_digest[7:]), "wb") as f:
            f.write(data)
        items = [doc["config"], *doc.get("layers", [])]
        for i, item in enumerate(items):
            digest, size = str(item.get("digest", "")), item.get("size")
            if not digest.startswith("sha256:") or len(digest) != 71:
                raise RegistryError(f"{r}: bad blob digest {digest!r} in the manifest")
            path = os.path.join(blobs, digest[7:])
            if not quiet:
                kind = "config" if i == 0 else f"layer {i}/{len(items) - 1}"
                sys.stderr.write(f"Copying {kind} {digest[7:19]} ({size or '?'} bytes)\n")
            with open(path, "wb") as out:
                client.fetch_blob(digest, out, int(size) if size is not None else None)
            if i == 0 and platform:  # a single manifest: its config says what it runs on
                with open(path, "rb") as f:
                    cfg = _json(f.read(), "image config")
                has = f"{cfg.get('os')}/{cfg.get('architecture')}"
                if has != f"{want['os']}/{want['architecture']}":
                    raise RegistryError(f"{r}: no image for {want['os']}/"
                                        f"{want['architecture']} (it is {has})")
        with open(os.path.join(staging, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        name = f"{r.local_name}:{r.tag}"
        with open(os.path.join(staging, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [{
                "mediaType": ctype, "digest": manifest_digest, "size": len(data),
                "annotations": {mt.REF_NAME: r.tag}}]}, f)
        return store.import_image(staging, name)
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def _tmp_dir(store: ImageStore) -> str:
    os.makedirs(store.tmp_dir, mode=0o700, exist_ok=True)
    return store.tmp_dir


def _json(data: bytes, what: str) -> Dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"the registry's {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"the registry's {what} is not a JSON object")
    return doc
