"""Peak RSS of the commands a benchmark runs, measured outside the timed rounds through the
small `runrss` launcher (bench/preload/runrss.c): a child forked from a big process (pytest)
would inherit that process's resident-set high-water mark in its ru_maxrss; forked from the
tiny launcher, its ru_maxrss is its own (and that of the children it reaped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Dict, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
_launcher: Optional[str] = None


def _runrss() -> str:
    global _launcher
    if _launcher is None:
        out = os.path.join(tempfile.mkdtemp(prefix="runrss-"), "runrss")
        cc = shutil.which("cc") or "gcc"
        subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "preload", "runrss.c")],
                       check=True)
        _launcher = out
    return _launcher


def peak_rss_kb(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, runs: int = 3) -> int:
    """The largest peak RSS (KiB) of `cmd` over `runs` runs (each must exit 0)."""
    peak = 0
    for _ in range(runs):
        res = subprocess.run([_runrss(), "--", *cmd], env=env, capture_output=True,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-300:]!r}")
        last = res.stderr.decode().strip().splitlines()[-1]
        peak = max(peak, int(last.rsplit("maxrss_kb=", 1)[1]))
    return peak
