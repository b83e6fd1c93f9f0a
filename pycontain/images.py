"""Images: see pycontain.layerstore (the layered image store) and docs/images.md."""

from pycontain.layerstore import (  # noqa: F401
    HOST_IMAGE,
    Image,
    ImageError,
    ImageInUseError,
    ImageStore,
)
