"""pycontain-oci: the runc-compatible OCI runtime command line on the runtime core.

    cli.py       the command line (runc's flags, verbs and log format)
    runtime.py   OciRuntime: the OCI lifecycle (create, start, state, kill, delete, exec, ...)
    config.py    config.json loaded and checked before anything is created
"""

from __future__ import annotations

from pycontain.errors import ContainerError

# Wanted by every verb: here rather than in config.py, which only create and spec need.
PRELOAD_ANNOTATION = "org.pyalloc.preload"
INIT_ANNOTATION = "org.pycontain.init"


class OciError(ContainerError):
    """An OCI operation failed (runc's convention: exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)
