"""Image references: ``name[:tag]`` parsed and normalised as engines do (``docker.io/`` and
``library/`` dropped), with the name ``host`` reserved for the built-in image."""

from __future__ import annotations

import re

from pycontain.image.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple

HOST_IMAGE = "host"
DEFAULT_TAG = "latest"

_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                      r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_DOMAIN_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


def parse_reference(ref: str, default_tag: str = DEFAULT_TAG) -> Tuple[str, str]:
    """'name[:tag]' -> (normalized name, tag). docker.io/library/ prefixes are dropped."""
    ref = ref.strip()
    if "@" in ref:
        raise ImageError(f"invalid image reference {ref!r}: digests are not supported, use "
                         "NAME[:TAG]")
    name, tag = ref, default_tag
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1:]
    name = normalize_name(name)
    if not is_valid_tag(tag):
        raise ImageError(f"invalid tag {tag!r} in image reference {ref!r}")
    return name, tag


def normalize_name(name: str) -> str:
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, rest = parts[0], parts[1:]
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid image name {name!r}")
        if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            domain = ""
            if len(rest) == 2 and rest[0] == "library":
                rest = rest[1:]
    else:
        domain, rest = "", parts
        if len(rest) == 2 and rest[0] == "library":
            rest = rest[1:]
    path = "/".join(rest)
    if not path or not _NAME_RE.match(path) or len(path) > 255:
        raise ImageError(f"invalid image name {name!r} (lowercase letters, digits and "
                         "separators . _ - /)")
    if path == HOST_IMAGE and not domain:
        raise ImageError("the name 'host' is reserved for the built-in image")
    return f"{domain}/{path}" if domain else path


def format_reference(name: str, tag: str) -> str:
    return f"{name}:{tag}"
