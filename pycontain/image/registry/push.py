"""``pycontain push LOCAL REF``: what ``image export`` writes, sent to a registry as the
distribution protocol says. Each blob (config, layers) is checked with HEAD; a missing one is
mounted from another repository of the same registry when this store has pushed or pulled it
there (``POST ?mount=&from=``; a registry that will not mount answers with an upload), else
uploaded: monolithically (POST, then PUT of the whole blob with ``?digest=``) up to
CHUNK bytes, in chunks above (PATCH with ``Content-Range`` per chunk, then PUT). The manifest
goes last, by tag. The registry then holds the same bytes, so the digests are the export's."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse

from pycontain.image.registry import locations
from pycontain.image.registry.client import Client, Options, RegistryError
from pycontain.image.registry.progress import Display
from pycontain.image.registry.refs import parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Optional

    from pycontain.image.registry.progress import Bar
    from pycontain.image.store import ImageStore


def chunk_size() -> int:
    """Blobs above this many bytes are sent in chunks of this size
    (``$PYCONTAIN_PUSH_CHUNK``, default 32 MiB)."""
    raw = os.environ.get("PYCONTAIN_PUSH_CHUNK", "")
    try:
        return max(4096, int(raw)) if raw else 32 << 20
    except ValueError:
        raise RegistryError(f"PYCONTAIN_PUSH_CHUNK={raw!r} is not a number of bytes") from None


def push(store: ImageStore, local: str, ref: str, opts: Optional[Options] = None,
         quiet: bool = True, display: Optional[Display] = None) -> str:
    """Push ``local`` to ``ref``; returns the manifest's digest."""
    r = parse(ref)
    if r.digest:
        raise RegistryError(f"push {ref}: give a tag, not a digest")
    client = Client(r.api_host, r.repository, opts or Options(), registry=r.registry)
    display = display or Display(quiet=quiet)
    chunk = chunk_size()
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
        seen = locations.load(store)
        config = doc["config"]["digest"]
        for item in [*doc.get("layers", []), doc["config"]]:
            digest, size = item["digest"], int(item["size"])
            head = client.call("HEAD", f"blobs/{digest}", ok=(200, 404), scope="pull,push")
            if head.status == 200:
                display.note(f"Copying blob {digest[7:19]} skipped: already exists")  # podman's
                continue
            kind = "Copying config" if digest == config else "Copying blob"
            bar = display.bar(kind, digest[7:19], size)
            try:
                with open(os.path.join(blobs, digest[7:]), "rb") as f:
                    how = _upload(client, r, digest, size, f, chunk, bar,
                                  locations.sources(seen, r.registry, digest, r.repository))
            except BaseException:
                bar.finish("failed")
                raise
            bar.finish(how)
        display.note("Writing manifest to image destination")
        client.call("PUT", f"manifests/{r.tag}", body=manifest, scope="pull,push",
                    headers={"Content-Type": doc.get("mediaType") or desc["mediaType"],
                             "Content-Length": str(len(manifest))}, ok=(201,))
        locations.record(store, r.registry, r.repository,
                         [x["digest"] for x in [doc["config"], *doc.get("layers", [])]])
        return str(desc["digest"])
    finally:
        client.close()
        shutil.rmtree(staging, ignore_errors=True)


def _absolute(client: Client, r: object, loc: str) -> str:
    if not loc:
        raise RegistryError(f"{client.host}: the registry gave no upload location")
    if loc.startswith("/"):
        return f"{'http' if client.plain_http else 'https'}://{client.host}{loc}"
    if not loc.startswith(("http://", "https://")):
        raise RegistryError(f"{client.host}: bad upload location {loc[:80]!r}")
    return loc


def _upload(client: Client, r: object, digest: str, size: int, f: IO[bytes], chunk: int,
            bar: Bar, mount_from: list) -> str:
    """Mount or upload one blob; returns what was done (for the progress line)."""
    start = None
    for repo in mount_from[:3]:
        q = urllib.parse.urlencode({"mount": digest, "from": repo})
        resp = client.call("POST", f"blobs/uploads/?{q}", body=b"", scope="pull,push",
                           headers={"Content-Length": "0"}, ok=(201, 202))
        if resp.status == 201:
            bar.done = size
            return f"mounted from {repo}"
        start = resp  # not mounted: the registry opened an upload instead
        break
    if start is None:
        start = client.call("POST", "blobs/uploads/", body=b"", scope="pull,push",
                            headers={"Content-Length": "0"}, ok=(202,))
    loc = _absolute(client, r, start.getheader("Location") or "")
    if size > chunk:
        offset = 0
        while offset < size:
            data = f.read(min(chunk, size - offset))
            if not data:
                raise RegistryError(f"blob {digest[:19]}: the export is shorter than {size}")
            resp = client.call("PATCH", loc, body=data, scope="pull,push", ok=(202,), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                "Content-Range": f"{offset}-{offset + len(data) - 1}"})
            offset += len(data)
            bar.update(len(data))
            loc = _absolute(client, r, resp.getheader("Location") or loc)
        body: object = b""
        length = 0
        how = "done (chunked)"
    else:
        body, length, how = f, size, "done"
    sep = "&" if "?" in loc else "?"
    client.call("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}", body=body,
                scope="pull,push", ok=(201,), headers={
                    "Content-Length": str(length), "Content-Type": "application/octet-stream"})
    if length:
        bar.update(length)
    return how
