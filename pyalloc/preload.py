"""Where libpyalloc.so is, and the environment that runs a program with it.

    import subprocess, pyalloc.preload as pp
    subprocess.run(["sqlite3", ":memory:", "select 1"],
                   env=pp.env_for(policy="first", stats="/tmp/st-%p.json"))
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Mapping, Optional, Union

LIBRARY_NAME = "libpyalloc.so"
POLICIES = ("best", "worst", "first", "fifo")


class LibraryNotFound(FileNotFoundError):
    """libpyalloc.so is not next to the package (it is built by `setup.py build_ext`)."""


def library_path() -> str:
    """Absolute path of libpyalloc.so shipped inside the pyalloc package."""
    try:
        ref = resources.files("pyalloc").joinpath(LIBRARY_NAME)
    except (ModuleNotFoundError, TypeError) as exc:  # pragma: no cover - broken install
        raise LibraryNotFound(f"cannot locate the pyalloc package: {exc}") from exc
    path = os.fspath(ref) if isinstance(ref, os.PathLike) else str(ref)
    if not os.path.isfile(path):
        raise LibraryNotFound(
            f"{LIBRARY_NAME} not found at {path}; build it with "
            "`python3 setup.py build_ext --inplace` (or `make`)"
        )
    return os.path.abspath(path)


def env_for(
    policy: Optional[str] = None,
    stats: Union[bool, str, None] = None,
    tcache: Optional[bool] = None,
    trace: Optional[str] = None,
    base: Optional[Mapping[str, str]] = None,
    library: Optional[str] = None,
    secure: Optional[bool] = None,
) -> dict:
    """A copy of `base` (default: os.environ) that preloads libpyalloc.so.

    policy  best | worst | first | fifo (PYALLOC_POLICY)
    stats   True: text summary on stderr at exit; "json": JSON on stderr; a path: JSON file
            (%p in it becomes the pid) (PYALLOC_STATS)
    tcache  False: no thread caches, every request goes to the policy pools (PYALLOC_TCACHE=0)
    trace   path of a binary allocation trace, %p = pid (PYALLOC_TRACE)
    secure  True: freed blocks zeroed and held back from reuse, no inline paths
            (PYALLOC_SECURE=1)
    Options left at None are removed from the environment, so the library's defaults apply.
    """
    env = dict(os.environ if base is None else base)
    lib = library or library_path()
    preload = env.get("LD_PRELOAD", "")
    parts = [p for p in preload.replace(":", " ").split() if p and p != lib]
    env["LD_PRELOAD"] = " ".join([lib, *parts])
    if policy is not None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        env["PYALLOC_POLICY"] = policy
    else:
        env.pop("PYALLOC_POLICY", None)
    if stats is None or stats is False:
        env.pop("PYALLOC_STATS", None)
    elif stats is True:
        env["PYALLOC_STATS"] = "1"
    elif isinstance(stats, str) and stats:
        env["PYALLOC_STATS"] = stats
    else:
        raise ValueError("stats must be True, False, None, 'json' or a path")
    if tcache is None:
        env.pop("PYALLOC_TCACHE", None)
    else:
        env["PYALLOC_TCACHE"] = "1" if tcache else "0"
    if trace:
        env["PYALLOC_TRACE"] = str(trace)
    else:
        env.pop("PYALLOC_TRACE", None)
    if secure is None:
        env.pop("PYALLOC_SECURE", None)
    else:
        env["PYALLOC_SECURE"] = "1" if secure else "0"
    return env
