"""OCI hooks: each hook's program run with the container's state JSON on its stdin, its own
environment and an optional timeout; a failure or a timeout is an error naming the hook."""

from __future__ import annotations

from pycontain import jsonfast as json
from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


def run_hooks(hooks: List[Dict[str, Any]], state: Dict[str, Any], kind: str) -> None:
    """Run OCI hooks in order, the state JSON on stdin; a failure or timeout is an error."""
    if not hooks:
        return
    import subprocess

    data = json.dumps(state).encode()
    for h in hooks:
        path = h.get("path", "")
        args = list(h.get("args") or [path])
        timeout = h.get("timeout")
        try:
            proc = subprocess.run(args, executable=path, input=data, env=_env_dict(h.get("env")),
                                  capture_output=True, timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"{kind} hook {path} timed out after {timeout}s") from None
        except OSError as e:
            raise ContainerError(f"{kind} hook {path}: {e.strerror}") from None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise ContainerError(f"{kind} hook {path} failed with status {proc.returncode}"
                                 + (f": {err}" if err else ""))


def _env_dict(env: Optional[List[str]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in env or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out
