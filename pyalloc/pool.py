"""Python classes over the C pools: Pool (variable-size, four policies), Slab (fixed-size), Block.

Safety rules, enforced here so that no sequence of Python calls can crash the interpreter:

* A Block is live from alloc until free/realloc/close. A dead block's memory is never reachable
  from Python: ``view()`` and ``address`` raise AllocError.
* ``view()`` hands out a zero-copy memoryview. While any view of a block (or any slice of one)
  is alive, freeing or resizing that block raises BufferError, as resizing a bytearray with live
  exports does, and closing the pool raises BufferError too. A view keeps its pool's memory
  mapped, so even a pool that is garbage-collected cannot pull memory from under a view.
* Every pointer that crosses into C comes from a live Block of this very pool; the C side
  validates it again (header tags), so a bug here would show as AllocError, not as a crash.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, List, Optional, Set, Tuple

from pyalloc._native import ffi, lib

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
]

POLICIES: Tuple[str, ...] = ("best", "worst", "first", "fifo")
ALIGNMENT: int = lib.PA_ALIGN
HEADER: int = lib.PA_HEADER
MIN_BLOCK: int = lib.PA_MIN_BLOCK
MAX_ALIGN: int = int(lib.PA_MAX_ALIGN_VALUE)
MAX_CAPACITY: int = int(lib.PA_POOL_MAX_CAPACITY_VALUE)

_STAT_FIELDS = (
    "capacity", "used", "free", "overhead", "largest_free", "free_blocks", "live_blocks",
    "peak_used", "committed", "peak_committed", "allocs", "frees", "reallocs", "failed_allocs",
    "invalid_frees", "trims", "top",
)
_SLAB_STAT_FIELDS = (
    "capacity", "block_size", "blocks", "live_blocks", "peak_live_blocks", "used", "free",
    "allocs", "frees", "failed_allocs", "invalid_frees",
)


class AllocError(ValueError):
    """A block was used wrongly: double free, a block of another pool, use after free/close."""


def _check_int(name: str, value: Any, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


class Block:
    """A live allocation: ``offset`` from the arena base, usable ``size``, and its memory."""

    __slots__ = ("__weakref__", "_exports", "_live", "_owner", "_ptr", "offset", "requested",
                 "size")

    def __init__(self, owner: _Allocator, ptr: Any, offset: int, size: int, requested: int):
        self._owner = owner
        self._ptr = ptr
        self.offset = offset
        self.size = size
        self.requested = requested
        self._live = True
        self._exports: Set[int] = set()  # ids of the keeper objects of live views

    @property
    def live(self) -> bool:
        """True until the block is freed, moved by realloc, or its pool is closed."""
        return self._live

    @property
    def address(self) -> int:
        """The payload's address (for ctypes and friends). AllocError once the block is dead."""
        self._require_live()
        return int(ffi.cast("uintptr_t", self._ptr))

    @property
    def pool(self) -> _Allocator:
        return self._owner

    def _require_live(self) -> None:
        if not self._live:
            raise AllocError(f"block at offset {self.offset} is no longer live")

    def view(self) -> memoryview:
        """A writable zero-copy memoryview of the block's ``size`` bytes."""
        with self._owner._lock:
            self._require_live()
            # The keeper's destructor runs when the last view (or slice of one) is released;
            # the bound method keeps this block, hence its pool and its memory, alive until then.
            raw = ffi.cast("char *", self._ptr)
            keeper = ffi.gc(raw, self._unexport)  # the destructor is called with `raw`
            self._exports.add(id(raw))
        return memoryview(ffi.buffer(keeper, self.size))

    def _unexport(self, raw: Any) -> None:
        # Runs from a deallocation, possibly in the middle of any code of this thread: it must
        # not take the lock. set.discard is atomic under the GIL.
        self._exports.discard(id(raw))

    def __buffer__(self, flags: int) -> memoryview:  # PEP 688 (Python 3.12+)
        return self.view()

    def __release_buffer__(self, view: memoryview) -> None:
        view.release()

    def __len__(self) -> int:
        return self.size

    def free(self) -> None:
        """Same as ``pool.free(block)``."""
        self._owner.free(self)

    def __repr__(self) -> str:
        state = "live" if self._live else "dead"
        return f"<pyalloc.Block offset={self.offset} size={self.size} {state}>"


class _Allocator:
    """What Pool and Slab share: the live-block table, views, closing, the context manager.

    One lock per allocator guards the table and is held across each C call (cffi releases the
    GIL there), so close() can never unmap memory under a call running in another thread."""

    _kind = "allocator"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._live: Dict[int, Block] = {}
        self._handle: Any = ffi.NULL
        self._finalizer: Optional[weakref.finalize] = None
        self._base = 0
        self._base_ptr: Any = ffi.NULL

    def _open_handle(self) -> Any:
        """The C handle; AllocError if closed. Lock held."""
        if self._closed:
            raise AllocError(f"{self._kind} is closed")
        return self._handle

    def _register(self, ptr: Any, size: int, requested: int) -> Block:
        """Lock held."""
        offset = ffi.cast("char *", ptr) - self._base_ptr
        blk = Block(self, ptr, offset, size, requested)
        self._live[offset] = blk
        return blk

    def _retire(self, block: Any, action: str) -> None:
        """Checks that block is a live block of this allocator without views, and kills it.
        Lock held."""
        if not isinstance(block, Block):
            raise TypeError(f"block must be a pyalloc.Block, not {type(block).__name__}")
        if block._owner is not self:
            raise AllocError(f"cannot {action} a block of another {block._owner._kind}")
        self._open_handle()
        if not block._live or self._live.get(block.offset) is not block:
            raise AllocError(f"cannot {action} block at offset {block.offset}: "
                             "not live (double free?)")
        if block._exports:
            raise BufferError(f"cannot {action} block at offset {block.offset}: "
                              f"{len(block._exports)} view(s) still exported")
        block._live = False
        del self._live[block.offset]

    def _revive(self, block: Block) -> None:
        """Lock held."""
        block._live = True
        self._live[block.offset] = block

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def base_address(self) -> int:
        """Address of the arena base that block offsets count from."""
        return self._base

    def live_count(self) -> int:
        return len(self._live)

    def _set_handle(self, handle: Any, base: Any, destroy: Any) -> None:
        self._handle = handle
        self._finalizer = weakref.finalize(self, destroy, handle)
        self._base_ptr = ffi.cast("char *", base)
        self._base = int(ffi.cast("uintptr_t", base))

    def close(self) -> None:
        """Releases the memory. Live blocks become unusable; BufferError if views exist."""
        with self._lock:
            if self._closed:
                return
            exported = sum(1 for b in self._live.values() if b._exports)
            if exported:
                raise BufferError(f"cannot close {self._kind}: {exported} block(s) have "
                                  "views still exported")
            self._closed = True
            for blk in self._live.values():
                blk._live = False
            self._live.clear()
            self._handle = ffi.NULL
            if self._finalizer is not None:
                self._finalizer()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pool(_Allocator):
    """A variable-size pool in one mmap'd arena, placing blocks by an exact policy.

    >>> with Pool(1 << 20, policy="first") as pool:
    ...     blk = pool.alloc(100)
    ...     blk.view()[:5] = b"hello"
    ...     pool.free(blk)
    """

    _kind = "pool"

    def __init__(self, capacity: int = 64 << 20, policy: str = "best", *,
                 trim_threshold: Optional[int] = None, hugepages: bool = False) -> None:
        super().__init__()
        _check_int("capacity", capacity, 1, MAX_CAPACITY)
        if not isinstance(policy, str):
            raise TypeError(f"policy must be a str, not {type(policy).__name__}")
        code = lib.pa_policy_from_name(policy.encode())
        if code < 0:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        if trim_threshold is not None:
            _check_int("trim_threshold", trim_threshold, 0)
        handle = lib.pa_pool_create(capacity, code, lib.PA_HUGEPAGE if hugepages else 0)
        if handle == ffi.NULL:
            raise MemoryError(f"cannot reserve a pool of {capacity} bytes (errno {ffi.errno})")
        self._set_handle(handle, lib.pa_pool_base(handle), lib.pa_pool_destroy)
        self._usable = ffi.new("size_t *")
        self.policy: str = policy
        self.capacity: int = int(lib.pa_pool_capacity(handle))
        if trim_threshold is not None:
            lib.pa_pool_set_trim_threshold(handle, trim_threshold)

    def alloc(self, size: int, *, align: Optional[int] = None) -> Block:
        """A block of at least ``size`` bytes (aligned to ``align``, a power of two)."""
        if type(size) is not int or not 0 <= size <= MAX_CAPACITY:
            _check_int("size", size, 0, MAX_CAPACITY)
        if align is None:
            align = 0
        else:
            _check_int("align", align, 1, MAX_ALIGN)
            if align & (align - 1):
                raise ValueError(f"align must be a power of two, got {align}")
        with self._lock:
            handle = self._open_handle()
            ptr = lib.pa_pool_alloc_ex(handle, size, align, self._usable)
            if ptr == ffi.NULL:
                raise MemoryError(f"pool exhausted: no free block for {size} bytes "
                                  f"(largest free block: {self._largest_free()} bytes)")
            return self._register(ptr, self._usable[0], size)

    def _largest_free(self) -> int:
        st = ffi.new("pa_stats *")
        lib.pa_pool_stats(self._handle, st)
        return int(st.largest_free)

    def free(self, block: Block) -> None:
        """Returns the block to the pool. AllocError for a dead or foreign block."""
        with self._lock:
            self._retire(block, "free")
            if lib.pa_pool_free(self._handle, block._ptr) != 0:
                raise AllocError(f"the C pool refused to free offset {block.offset}")

    def realloc(self, block: Block, size: int) -> Block:
        """Resizes a block (in place where possible) and returns the live block.

        The argument is dead afterwards unless it is returned again; on MemoryError it stays
        live and unchanged."""
        _check_int("size", size, 0, MAX_CAPACITY)
        with self._lock:
            self._retire(block, "resize")
            ptr = lib.pa_pool_realloc_ex(self._handle, block._ptr, size, self._usable)
            if ptr == ffi.NULL:
                self._revive(block)
                raise MemoryError(f"pool exhausted: cannot resize block at offset "
                                  f"{block.offset} to {size} bytes")
            return self._register(ptr, self._usable[0], size)

    def _blocks(self, fn: Any) -> List[Tuple[int, int, int]]:
        with self._lock:
            handle = self._open_handle()
            n = int(fn(handle, ffi.NULL, 0))
            buf = ffi.new("pa_block_info[]", n)
            fn(handle, buf, n)
            return [(int(buf[i].offset), int(buf[i].size), int(buf[i].seq)) for i in range(n)]

    def free_blocks(self) -> List[Tuple[int, int, int]]:
        """The free set as ``(offset, size, seq)`` tuples in address order."""
        return self._blocks(lib.pa_pool_free_blocks)

    def live_blocks(self) -> List[Tuple[int, int]]:
        """The live blocks as ``(offset, size)`` tuples in address order."""
        return [(o, s) for o, s, _ in self._blocks(lib.pa_pool_live_blocks)]

    def stats(self) -> Dict[str, Any]:
        """Capacity, used, free, largest_free, free_blocks, fragmentation, peak_used, counts."""
        st = ffi.new("pa_stats *")
        with self._lock:
            lib.pa_pool_stats(self._open_handle(), st)
        out: Dict[str, Any] = {k: int(getattr(st, k)) for k in _STAT_FIELDS}
        out["fragmentation"] = float(st.fragmentation)
        out["policy"] = self.policy
        return out

    def trim(self) -> int:
        """Returns every whole free page to the kernel now; the number of bytes released."""
        with self._lock:
            return int(lib.pa_pool_trim(self._open_handle()))

    def check(self) -> None:
        """Walks the whole pool checking every invariant; AllocError naming a broken one."""
        with self._lock:
            rc = lib.pa_pool_check(self._open_handle())
        if rc:
            message = ffi.string(lib.pa_check_message(rc)).decode()
            raise AllocError(f"pool is inconsistent: {message}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._live)} live blocks"
        return f"<pyalloc.Pool policy={self.policy} capacity={self.capacity} {state}>"


class Slab(_Allocator):
    """Fixed-size blocks (one size class) with O(1) alloc and free."""

    _kind = "slab"

    def __init__(self, block_size: int = 64, capacity: int = 1 << 20) -> None:
        super().__init__()
        _check_int("block_size", block_size, 1, 1 << 40)
        _check_int("capacity", capacity, 1, MAX_CAPACITY)
        if capacity < block_size:
            raise ValueError(f"capacity ({capacity}) must be >= block_size ({block_size})")
        handle = lib.pa_slab_create(block_size, capacity, 0)
        if handle == ffi.NULL:
            raise MemoryError(f"cannot map a slab of {capacity} bytes (errno {ffi.errno})")
        self._set_handle(handle, lib.pa_slab_base(handle), lib.pa_slab_destroy)
        self.block_size: int = int(lib.pa_slab_block_size(handle))
        self.capacity: int = int(lib.pa_slab_capacity(handle))

    def alloc(self) -> Block:
        with self._lock:
            ptr = lib.pa_slab_alloc(self._open_handle())
            if ptr == ffi.NULL:
                raise MemoryError(f"slab exhausted: all {self.capacity // self.block_size} "
                                  "blocks are live")
            return self._register(ptr, self.block_size, self.block_size)

    def free(self, block: Block) -> None:
        with self._lock:
            self._retire(block, "free")
            if lib.pa_slab_free(self._handle, block._ptr) != 0:
                raise AllocError(f"the C slab refused to free offset {block.offset}")

    def stats(self) -> Dict[str, Any]:
        st = ffi.new("pa_slab_stats *")
        with self._lock:
            lib.pa_slab_stats_get(self._open_handle(), st)
        return {k: int(getattr(st, k)) for k in _SLAB_STAT_FIELDS}

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._live)} live blocks"
        return f"<pyalloc.Slab block_size={self.block_size} capacity={self.capacity} {state}>"
