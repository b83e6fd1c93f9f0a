"""Small helpers on raw file descriptors, shared by the runtime modules."""

from __future__ import annotations

import os


def read_from_start(fd: int) -> bytes:
    """Everything in the file behind fd (a memfd or temp file), read from offset 0."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)
