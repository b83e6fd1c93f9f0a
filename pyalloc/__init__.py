"""pyalloc: a pooling memory allocator in C, for Python (cffi) and for any program (LD_PRELOAD).

    import pyalloc
    pool = pyalloc.Pool(capacity=64 << 20, policy="best")   # best | worst | first | fifo
    blk = pool.alloc(100)
    blk.view()[:5] = b"hello"
    pool.free(blk)
"""

from pyalloc.pool import (
    ALIGNMENT,
    HEADER,
    MAX_ALIGN,
    MIN_BLOCK,
    POLICIES,
    AllocError,
    Block,
    Pool,
    Slab,
    as_array,
)

__version__ = "0.1.0"

__all__ = [
    "ALIGNMENT",
    "HEADER",
    "MAX_ALIGN",
    "MIN_BLOCK",
    "POLICIES",
    "AllocError",
    "Block",
    "Pool",
    "Slab",
    "__version__",
    "as_array",
]
