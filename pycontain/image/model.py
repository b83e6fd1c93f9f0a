"""An image as the runtime sees it: its read-only layers (topmost first) and the parts of its
OCI config that shape a container (environment, command, working directory, user)."""

from __future__ import annotations

import os
import stat

from pycontain.defaults import DEFAULT_PATH
from pycontain.image.errors import ImageError
from pycontain.image.reference import format_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Sequence, Tuple

# The most layers an image may have: overlayfs stacks at most 500 lower directories
# (OVL_MAX_STACK). Import and commit refuse more, so that every image in the store can run.
MAX_LAYERS = 500


class Image:
    """An image: read-only lower layers (topmost first) and the OCI image config."""

    def __init__(
        self,
        name: str,
        layers: List[str],
        env: Optional[List[str]] = None,
        cmd: Optional[List[str]] = None,
        working_dir: str = "/",
        builtin: bool = False,
        *,
        entrypoint: Optional[List[str]] = None,
        user: str = "",
        tag: str = "",
        id: str = "",
        created: str = "",
        size: int = 0,
        diff_ids: Optional[List[str]] = None,
        labels: Optional[Dict[str, str]] = None,
        config: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.name = name
        self.layers = layers  # lower directories, topmost first (overlayfs lowerdir order)
        self.env = list(env) if env is not None else [f"PATH={DEFAULT_PATH}"]
        self.cmd = list(cmd) if cmd is not None else []
        self.working_dir = working_dir or "/"
        self.builtin = builtin
        self.entrypoint = list(entrypoint) if entrypoint else []
        self.user = user or ""
        self.tag = tag
        self.id = id
        self.created = created
        self.size = size
        self.diff_ids = list(diff_ids or [])  # bottom first, as in the OCI config
        self.labels = dict(labels or {})
        self.config = config or {}

    @property
    def exposed_ports(self) -> List[Tuple[int, str]]:
        """(port, protocol) of the config's ExposedPorts (``"80/tcp": {}``), sorted."""
        out = []
        for key in ((self.config.get("config") or {}).get("ExposedPorts") or {}):
            num, _, proto = str(key).partition("/")
            if num.isdigit() and 0 < int(num) < 65536:
                out.append((int(num), proto or "tcp"))
        return sorted(set(out))

    @property
    def reference(self) -> str:
        return format_reference(self.name, self.tag) if self.tag else self.name

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    def argv(self, command: Sequence[str] = ()) -> List[str]:
        """The process arguments: Entrypoint + (command, or else Cmd), as docker does."""
        if self.builtin:
            return list(command)
        return list(self.entrypoint) + (list(command) if command else list(self.cmd))

    def read_file(self, path: str) -> Optional[bytes]:
        """Content of regular file ``path`` in the image's merged view (whiteouts and opaque
        directories applied; symlinks are not followed). None if absent."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return None
        for layer in self.layers:
            stop = False
            for i in range(1, len(parts) + 1):
                q = os.path.join(layer, *parts[:i])
                try:
                    st = os.lstat(q)
                except OSError:
                    break
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None  # deleted in this layer
                if i < len(parts):
                    if not stat.S_ISDIR(st.st_mode):
                        return None
                    from pycontain.image.tarlayer import is_opaque

                    if is_opaque(q):
                        stop = True
                    continue
                if stat.S_ISREG(st.st_mode):
                    with open(q, "rb") as f:
                        return f.read()
                return None
            if stop:
                return None
        return None

    def resolve_user(self, user: Optional[str] = None) -> Tuple[int, int, List[int]]:
        """(uid, gid, additional gids) for ``user`` (default: the image's User), as docker
        does: "name", "uid", "name:group", "uid:gid" looked up in the image's /etc/passwd and
        /etc/group. ImageError for unknown names."""
        spec = self.user if user is None else user
        if not spec:
            return 0, 0, []
        uname, _, gname = spec.partition(":")
        passwd = _parse_colon_file(self.read_file("/etc/passwd"))
        groups = _parse_colon_file(self.read_file("/etc/group"))
        uid = gid = None
        name = None
        for f in passwd:
            if len(f) >= 4 and (f[0] == uname or (uname.isdigit() and f[2] == uname)):
                name, uid, gid = f[0], _int(f[2]), _int(f[3])
                break
        if uid is None:
            if not uname.isdigit():
                raise ImageError(f"unable to find user {uname}: no matching entries in the "
                                 "image's /etc/passwd")
            uid, gid = int(uname), 0
        if gname:
            gid = None
            for f in groups:
                if len(f) >= 3 and (f[0] == gname or (gname.isdigit() and f[2] == gname)):
                    gid = _int(f[2])
                    break
            if gid is None:
                if not gname.isdigit():
                    raise ImageError(f"unable to find group {gname}: no matching entries in "
                                     "the image's /etc/group")
                gid = int(gname)
            return uid, gid, []
        extra: List[int] = []
        if name is not None:
            for f in groups:
                if len(f) >= 4 and name in f[3].split(","):
                    g = _int(f[2])
                    if g is not None and g != gid and g not in extra:
                        extra.append(g)
        return uid, gid if gid is not None else 0, extra

    def __repr__(self) -> str:
        return f"Image({self.reference!r}, layers={self.layers!r})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "id": self.id,
            "created": self.created,
            "size": self.size,
            "layers": list(self.layers),
            "config": {"Env": list(self.env), "Cmd": list(self.cmd),
                       "Entrypoint": list(self.entrypoint), "WorkingDir": self.working_dir,
                       "User": self.user, "Labels": dict(self.labels)},
            "builtin": self.builtin,
        }


def _parse_colon_file(data: Optional[bytes]) -> List[List[str]]:
    if not data:
        return []
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()
            if line and not line.startswith("#")]


def _int(s: str) -> Optional[int]:
    try:
        return int(s)
    except ValueError:
        return None
