"""Persistent network namespaces, as ``ip netns add`` makes them: ``unshare --net=PATH``
(util-linux) creates one and bind-mounts it on PATH, so that it outlives every process and has
a path that CNI plugins and the container can use; the container brings its loopback up."""

from __future__ import annotations

import os
import subprocess

from pycontain.errors import ContainerError


def create(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    os.close(fd)
    r = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True, check=False)
    if r.returncode != 0:
        os.unlink(path)
        raise ContainerError(f"cannot create a network namespace at {path}: "
                             f"{r.stderr.decode(errors='replace').strip()}")


def remove(path: str) -> None:
    """Unmount and delete ``path`` (nothing if it is gone)."""
    if not os.path.lexists(path):
        return
    subprocess.run(["umount", "-l", path], capture_output=True, check=False)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
