"""Images: the content-addressed layer store and the formats images travel in.

    store.py       ImageStore: layers shared by images, image records, references, gc
    model.py       Image: layers and the config a container is made from
    reference.py   NAME[:TAG] parsing and normalisation
    importer.py    OCI layouts, docker-archives, rootfs tars/dirs into the store
    export.py      OCI layouts out of the store; commit of a container's upper dir
    tarlayer.py    safe extraction of layer tars, and writing them back
    mediatypes.py  OCI/Docker media types and annotation keys
    files.py       flocks, staging directories, removal
    errors.py      ImageError and its kinds

The names below are imported on first use (importing this package costs nothing).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from pycontain.image.errors import ImageError, ImageFormatError, ImageInUseError
    from pycontain.image.model import Image
    from pycontain.image.reference import HOST_IMAGE
    from pycontain.image.store import ImageStore

__all__ = ["HOST_IMAGE", "Image", "ImageError", "ImageFormatError", "ImageInUseError",
           "ImageStore"]

_LAZY = {"ImageStore": "store", "Image": "model", "ImageError": "errors",
         "ImageFormatError": "errors", "ImageInUseError": "errors", "HOST_IMAGE": "reference"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pycontain.image.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pycontain.image' has no attribute {name!r}")
