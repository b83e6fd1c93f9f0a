"""``pycontain push LOCAL REF``: what ``image export`` writes, sent to a registry as the
distribution protocol says: each blob (config, layers) checked with HEAD and, when missing,
uploaded monolithically (POST an upload, PUT its Location with ``?digest=``); the manifest last,
by tag. The registry then holds the same bytes, so the digests are the export's."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.parse

from pycontain.image.registry.client import Client, RegistryError
from pycontain.image.registry.refs import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.image.store import ImageStore


def push(store: ImageStore, local: str, ref: str, tls_verify: bool = True,
         quiet: bool = True) -> str:
    """Push ``local`` to ``ref``; returns the manifest's digest."""
    r = parse(ref)
    if r.digest:
        raise RegistryError(f"push {ref}: give a tag, not a digest")
    client = Client(r.api_host, r.repository, tls_verify=tls_verify)
    os.makedirs(store.tmp_dir, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".push-", dir=store.tmp_dir)
    try:
        layout = os.path.join(staging, "layout")
        store.export(local, layout)
        with open(os.path.join(layout, "index.json")) as f:
            desc = json.load(f)["manifests"][0]
        blobs = os.path.join(layout, "blobs", "sha256")
        with open(os.path.join(blobs, desc["digest"][7:]), "rb") as f:
            manifest = f.read()
        doc = json.loads(manifest)
        for item in [doc["config"], *doc.get("layers", [])]:
            digest, size = item["digest"], int(item["size"])
            head = client.send("HEAD", f"blobs/{digest}", ok=(200, 404))
            if head.status == 200:
                if not quiet:
                    sys.stderr.write(f"Blob {digest[7:19]} already there\n")
                continue
            if not quiet:
                sys.stderr.write(f"Copying blob {digest[7:19]} ({size} bytes)\n")
            start = client.send("POST", "blobs/uploads/", body=b"",
                                headers={"Content-Length": "0"}, ok=(202,))
            loc = start.getheader("Location") or ""
            if not loc:
                raise RegistryError(f"{r.api_host}: no upload location for {digest[:19]}")
            if loc.startswith("/"):
                loc = f"{'http' if client.plain_http else 'https'}://{r.api_host}{loc}"
            sep = "&" if "?" in loc else "?"
            url = f"{loc}{sep}digest={urllib.parse.quote(digest)}"
            with open(os.path.join(blobs, digest[7:]), "rb") as f:
                client.send("PUT", url, body=f, headers={
                    "Content-Length": str(size), "Content-Type": "application/octet-stream"},
                    ok=(201,))
        client.send("PUT", f"manifests/{r.tag}", body=manifest,
                    headers={"Content-Type": doc.get("mediaType") or desc["mediaType"],
                             "Content-Length": str(len(manifest))}, ok=(201,))
        return str(desc["digest"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
