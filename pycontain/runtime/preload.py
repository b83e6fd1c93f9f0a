"""The allocator inside a container: libpyalloc.so bind-mounted read-only and preloaded into
every process with a placement policy, its statistics collected into the state directory."""

from __future__ import annotations

import os

from pycontain.errors import ContainerError
from pycontain.runtime.spec import Mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from pycontain.runtime.spec import Spec
    from pycontain.runtime.state import StateDir

PRELOAD_DIR = "/.pyalloc"
PRELOAD_LIB = PRELOAD_DIR + "/libpyalloc.so"
PRELOAD_STATS = PRELOAD_DIR + "/stats"
POLICIES = ("best", "worst", "first", "fifo")


def library() -> str:
    try:
        from pyalloc import preload  # type: ignore[import-not-found]

        path = str(preload.library_path())
    except Exception as e:  # ImportError, missing file, ...
        raise ContainerError(f"--preload: libpyalloc.so is not available ({e})") from None
    if not os.path.isfile(path):
        raise ContainerError(f"--preload: libpyalloc.so not found at {path}")
    return path



def add_preload(spec: Spec, sdir: StateDir, policy: str, lib: Optional[str] = None) -> None:
    """Preload libpyalloc.so with ``policy`` into every process of the container: the library
    bind-mounted read-only at /.pyalloc/libpyalloc.so, statistics written to the state dir's
    ``pyalloc/`` (collected when the container stops), LD_PRELOAD and PYALLOC_* set."""
    if policy not in POLICIES:
        raise ContainerError(f"invalid preload policy {policy!r} (one of {', '.join(POLICIES)})")
    lib = lib or library()
    stats_dir = sdir.file("pyalloc")
    os.mkdir(stats_dir)
    os.chmod(stats_dir, 0o777)
    spec.mounts.append(Mount(PRELOAD_LIB, "bind", lib, ["bind", "ro", "nosuid"]))
    spec.mounts.append(Mount(PRELOAD_STATS, "bind", stats_dir, ["bind", "nosuid"]))
    spec.process.env += [f"LD_PRELOAD={PRELOAD_LIB}", f"PYALLOC_POLICY={policy}",
                         f"PYALLOC_STATS={PRELOAD_STATS}/stats-%p.json"]

