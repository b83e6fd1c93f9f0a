"""Where this store has seen each blob: ``STORAGE/images/registry-blobs.json`` maps a registry
to blob digests and the repositories that held them after a pull or a push (at most 8 per blob,
the newest first). A push offers a cross-repository mount from these before uploading; a stale
entry costs one request (the registry answers with an upload). Written under the store's
metadata lock."""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Sequence

    from pycontain.image.store import ImageStore

MAX_REPOS = 8


def _path(store: ImageStore) -> str:
    return os.path.join(store.dir, "registry-blobs.json")


def load(store: ImageStore) -> Dict[str, Any]:
    try:
        with open(_path(store)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def sources(table: Dict[str, Any], registry: str, digest: str, exclude: str) -> List[str]:
    repos = (table.get(registry) or {}).get(digest) or []
    return [r for r in repos if isinstance(r, str) and r != exclude]


def record(store: ImageStore, registry: str, repository: str, digests: Sequence[str]) -> None:
    with store.lock():
        table = load(store)
        blobs = table.setdefault(registry, {})
        for d in digests:
            repos = [r for r in blobs.get(d) or [] if r != repository]
            blobs[d] = [repository, *repos][:MAX_REPOS]
        store._write_json(_path(store), table)
