"""Registry credentials in the files podman and docker read and write.

``pycontain login`` writes ``{"auths": {"REGISTRY": {"auth": base64("user:password")}}}`` to
the auth file podman uses: ``--authfile``, else ``$REGISTRY_AUTH_FILE``, else
``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/0/auth.json`` for root); the file
is written whole (a temp file renamed over it) with mode 0600 in a 0700 directory. Lookups read
that file, then ``$XDG_CONFIG_HOME/containers/auth.json`` and docker's ``~/.docker/config.json``
(and its ``https://index.docker.io/v1/`` key for docker.io), the first that has the registry.
A key may also name a repository (``registry/namespace/repo``): the longest match wins, as in
containers/image. Credential helpers (``credHelpers``, ``credsStore``) are not run."""

from __future__ import annotations

import base64
import json
import os
import tempfile

from pycontain.image.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple


def default_authfile() -> str:
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/containers/0/auth.json"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "containers", "auth.json")
    return os.path.join(_config_home(), "containers", "auth.json")


def _config_home() -> str:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return xdg
    return os.path.join(os.path.expanduser("~"), ".config")


def search_path(authfile: Optional[str] = None) -> List[str]:
    """The files a lookup reads, in order (``authfile`` alone when given)."""
    if authfile:
        return [authfile]
    out = [default_authfile(), os.path.join(_config_home(), "containers", "auth.json"),
           os.path.join(os.path.expanduser("~"), ".docker", "config.json")]
    return list(dict.fromkeys(out))


def normalize_key(key: str) -> str:
    """A key as podman writes it: no scheme, no ``/v1/``, docker.io for Docker Hub."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    k = k.rstrip("/")
    if k.endswith("/v1") or k.endswith("/v2"):
        k = k[:-3]
    if k in ("index.docker.io", "registry-1.docker.io"):
        k = "docker.io"
    return k


def _read(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ImageError(f"cannot read the auth file {path}: {e.strerror}") from None
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except ValueError:
        raise ImageError(f"the auth file {path} is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise ImageError(f"the auth file {path} has no \"auths\" object")
    return doc


def _decode(entry: Any, key: str, path: str) -> Optional[Tuple[str, str]]:
    if not isinstance(entry, dict):
        return None
    raw = entry.get("auth")
    if not raw:
        return None
    try:
        user, sep, password = base64.b64decode(str(raw), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise ImageError(f"the auth file {path}: the entry for {key} is not "
                         "base64(user:password)") from None
    if not sep or not user:
        raise ImageError(f"the auth file {path}: the entry for {key} has no user:password")
    return user, password


def lookup(registry: str, repository: str = "", authfile: Optional[str] = None,
           paths: Optional[List[str]] = None) -> Optional[Tuple[str, str]]:
    """(user, password) for ``registry`` (and ``repository``), or None; ``paths``: the
    files to read instead of ``search_path(authfile)``."""
    wanted = [f"{registry}/{repository}"] if repository else []
    parts = repository.split("/")
    wanted += [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]
    wanted.append(registry)
    for path in paths if paths is not None else search_path(authfile):
        auths = {normalize_key(k): v for k, v in (_read(path).get("auths") or {}).items()}
        for key in wanted:
            if key in auths:
                creds = _decode(auths[key], key, path)
                if creds:
                    return creds
    return None


def _write(path: str, doc: Dict[str, Any]) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=parent)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(doc, f, indent="\t")
            f.write("\n")
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(registry: str, user: str, password: str, authfile: Optional[str] = None) -> str:
    """Store the credentials for ``registry``; returns the file written."""
    if ":" in user:
        raise ImageError("a user name cannot contain ':'")
    path = authfile or default_authfile()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    for k in [k for k in auths if normalize_key(k) == registry and k != registry]:
        del auths[k]
    auths[registry] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write(path, doc)
    return path


def remove(registry: Optional[str], authfile: Optional[str] = None) -> bool:
    """Forget ``registry`` (every registry when None); False when there was nothing."""
    path = authfile or default_authfile()
    doc = _read(path)
    auths = doc.get("auths") or {}
    if registry is None:
        found = bool(auths)
        doc["auths"] = {}
    else:
        keys = [k for k in auths if normalize_key(k) == registry]
        found = bool(keys)
        for k in keys:
            del auths[k]
    if found:
        _write(path, doc)
    return found
