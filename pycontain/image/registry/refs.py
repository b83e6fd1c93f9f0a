"""Registry references as docker and podman parse them: the first component is a registry
when it has a dot or a port or is ``localhost``; otherwise the registry is docker.io (served
by registry-1.docker.io), where one-component names live under ``library/``."""

from __future__ import annotations

import re

from pycontain.image.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)"
                   r"[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class RegistryRef:
    def __init__(self, registry: str, repository: str, tag: str, digest: Optional[str]):
        self.registry, self.repository, self.tag, self.digest = registry, repository, tag, digest

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def local_name(self) -> str:
        """The name the store keeps (docker.io/library/ dropped, as the store does)."""
        repo = self.repository
        if self.registry == DOCKER_HUB:
            return repo[len("library/"):] if repo.startswith("library/") else repo
        return f"{self.registry}/{repo}"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}:{self.tag}"
        return f"{out}@{self.digest}" if self.digest else out


def names_registry(first: str) -> bool:
    """Whether a reference's first component (before the first "/") is a registry."""
    return "." in first or ":" in first or first == "localhost"


def parse(ref: str) -> RegistryRef:
    raw = ref.strip()
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(f"invalid digest in {ref!r} (sha256:<64 hex digits>)")
    first, sep, rest = raw.partition("/")
    if sep and names_registry(first):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, raw
    tag = "latest"
    slash, colon = path.rfind("/"), path.rfind(":")
    if colon > slash:
        path, tag = path[:colon], path[colon + 1:]
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not _REPO.match(path):
        raise ImageError(f"invalid repository name in {ref!r}")
    if not _TAG.match(tag):
        raise ImageError(f"invalid tag {tag!r} in {ref!r}")
    return RegistryRef(registry, path, tag, digest)
