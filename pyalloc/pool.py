"""The Python API over the C pools: Pool (variable-size, four policies), Slab (fixed-size) and
Block, implemented as C types in pyalloc._pool (csrc/python/poolmodule.c).

Safety rules, enforced in C so that no sequence of Python calls can crash the interpreter:

* A Block is live from alloc until free/realloc, or until its pool is closed or reset. A dead
  block's memory is never reachable from Python: its buffer, ``view()`` and ``address`` raise
  AllocError.
* A Block is a buffer (``memoryview(block)``, ``block.view()``, ``numpy.frombuffer(block)``;
  ``as_array`` below): zero-copy. While any export of a block (or any slice or array made from
  one) is alive, freeing or resizing that block raises BufferError, as resizing a bytearray
  with live exports does, and closing or resetting its pool raises BufferError too. An export
  keeps its block, hence its pool's memory, alive.
* Every pointer given to the core comes from a live Block of that very pool, or (free_many) is
  checked first: an offset inside the arena, a live block by the core's header tags, and not
  one a Block object holds.
* Batches (``alloc_many``/``free_many``/``reset``) hand out offsets, not objects: the arena
  style, for many blocks at C speed. Their memory is reachable by address only.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from pyalloc._pool import (
    ALIGNMENT,
    HEADER,
    MAX_ALIGN,
    MAX_CAPACITY,
    MIN_BLOCK,
    AllocError,
    Block,
    Pool,
    Slab,
)

__all__ = [
    "ALIGNMENT",
    "HEADER",
    "MAX_ALIGN",
    "MAX_CAPACITY",
    "MIN_BLOCK",
    "POLICIES",
    "AllocError",
    "Block",
    "Pool",
    "Slab",
    "as_array",
]

POLICIES = ("best", "worst", "first", "fifo")


def as_array(block: Block, dtype: Any = "uint8",
             shape: Optional[Union[int, Sequence[int]]] = None) -> Any:
    """A NumPy array over the block's memory, without a copy (NumPy is optional: ImportError
    without it). ``shape`` defaults to as many items as fit; the array keeps the block from
    being freed (BufferError) until the array and its views are gone."""
    import numpy as np

    dt = np.dtype(dtype)
    if shape is None:
        count = block.size // dt.itemsize
        return np.frombuffer(block, dtype=dt, count=count)
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = 1
    for d in dims:
        count *= int(d)
    if count * dt.itemsize > block.size:
        raise ValueError(f"shape {dims} of {dt} needs {count * dt.itemsize} bytes; the block "
                         f"has {block.size}")
    return np.frombuffer(block, dtype=dt, count=count).reshape(dims)
