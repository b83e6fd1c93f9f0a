"""Images: a name, read-only lower layers (top first) and the image config (Env, Cmd, WorkingDir).

Only the built-in image ``host`` exists for now: the host's root directory, read-only, as the
single lower layer of the container's overlay, so a container runs with no download at all.
Imported images (stored under ``<storage>/images/<name>/``) come with the layered store.
"""

from __future__ import annotations

import json
import os

from pycontain.spec import DEFAULT_PATH

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

HOST_IMAGE = "host"


class ImageError(LookupError):
    """Unknown image, or an image that cannot be used or removed."""


class Image:
    def __init__(
        self,
        name: str,
        layers: List[str],
        env: Optional[List[str]] = None,
        cmd: Optional[List[str]] = None,
        working_dir: str = "/",
        builtin: bool = False,
    ) -> None:
        self.name = name
        self.layers = layers  # lower directories, topmost first (overlayfs lowerdir order)
        self.env = list(env) if env is not None else [f"PATH={DEFAULT_PATH}"]
        self.cmd = list(cmd) if cmd is not None else []
        self.working_dir = working_dir
        self.builtin = builtin

    def __repr__(self) -> str:
        return f"Image({self.name!r}, layers={self.layers!r})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "layers": list(self.layers),
            "config": {"Env": list(self.env), "Cmd": list(self.cmd),
                       "WorkingDir": self.working_dir},
            "builtin": self.builtin,
        }


class ImageStore:
    """Images under ``<storage>/images`` plus the built-in ``host``."""

    def __init__(self, storage: str) -> None:
        self.storage = storage
        self.dir = os.path.join(storage, "images")

    def host(self) -> Image:
        return Image(HOST_IMAGE, ["/"], builtin=True)

    def get(self, name: str) -> Image:
        if name == HOST_IMAGE:
            return self.host()
        meta = self._meta_path(name)
        if meta is None or not os.path.exists(meta):
            raise ImageError(f"unknown image {name!r} (available: {', '.join(self.names())})")
        with open(meta) as f:
            d = json.load(f)
        base = os.path.dirname(meta)
        cfg = d.get("config", {})
        return Image(
            name=name,
            layers=[os.path.join(base, p) for p in d["layers"]],
            env=list(cfg.get("Env") or [f"PATH={DEFAULT_PATH}"]),
            cmd=list(cfg.get("Cmd") or []),
            working_dir=cfg.get("WorkingDir") or "/",
        )

    def _meta_path(self, name: str) -> Optional[str]:
        if not name or "/" in name or name.startswith("."):
            return None
        return os.path.join(self.dir, name, "image.json")

    def names(self) -> List[str]:
        out = [HOST_IMAGE]
        try:
            out += sorted(n for n in os.listdir(self.dir)
                          if os.path.exists(os.path.join(self.dir, n, "image.json")))
        except FileNotFoundError:
            pass
        return out

    def list(self) -> List[Image]:
        return [self.get(n) for n in self.names()]

    def remove(self, name: str) -> None:
        if name == HOST_IMAGE:
            raise ImageError("the built-in image 'host' cannot be removed")
        self.get(name)
        import shutil

        shutil.rmtree(os.path.join(self.dir, name))
