"""A minimal root filesystem for the container tests: a static busybox and its applets."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, Iterable, Optional

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DIRS = ("bin", "proc", "dev", "sys", "tmp", "etc", "root", "data")


def make_busybox_root(root: str, dirs: Iterable[str] = DIRS,
                      files: Optional[Dict[str, str]] = None) -> None:
    """Creates `dirs` under `root`, /bin/busybox with a symlink per applet, and `files`
    (relative path -> text)."""
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", a))
    for rel, text in (files or {}).items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
