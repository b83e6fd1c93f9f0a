"""The Python API against the standard ways of getting a writable buffer of n bytes:
bytearray, ctypes.create_string_buffer and an anonymous mmap. One group per size; each
implementation allocates, writes one byte, and releases, singly and in batches of 1000. The
batch groups also have the pool's batch calls: ``alloc_many`` then ``free_many``, and
``alloc_many`` then ``reset`` (the arena style). Ratios are against bytearray.

    python3 -m pytest bench/test_bench_api.py --benchmark-only
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Callable, Dict

import pytest

import pyalloc

SIZES = [64, 4096, 65536]
BATCH = 1000


def _pool_pair(pool: pyalloc.Pool, n: int) -> None:
    blk = pool.alloc(n)
    pool.free(blk)


def _slab_pair(slab: pyalloc.Slab, n: int) -> None:
    blk = slab.alloc()
    slab.free(blk)


def _bytearray(n: int) -> None:
    buf = bytearray(n)
    buf[0] = 1


def _ctypes(n: int) -> None:
    buf = ctypes.create_string_buffer(n)
    buf[0] = b"\x01"


def _mmap(n: int) -> None:
    m = mmap.mmap(-1, n)
    m[0] = 1
    m.close()


IMPLS = ["pyalloc.Pool", "pyalloc.Slab", "bytearray", "ctypes", "mmap"]
BATCH_IMPLS = [*IMPLS, "Pool.alloc_many+free_many", "Pool.alloc_many+reset"]


@pytest.fixture(scope="module")
def pools() -> Dict[str, object]:
    made = {
        "pool": pyalloc.Pool(256 << 20, "best"),
        "arena": pyalloc.Pool(256 << 20, "best"),
        **{f"slab{n}": pyalloc.Slab(block_size=n, capacity=BATCH * n * 2) for n in SIZES},
    }
    yield made
    for obj in made.values():
        obj.close()


def make_single(impl: str, n: int, pools: Dict[str, object]) -> Callable[[], None]:
    if impl == "pyalloc.Pool":
        pool = pools["pool"]
        return lambda: _pool_pair(pool, n)
    if impl == "pyalloc.Slab":
        slab = pools[f"slab{n}"]
        return lambda: _slab_pair(slab, n)
    fn = {"bytearray": _bytearray, "ctypes": _ctypes, "mmap": _mmap}[impl]
    return lambda: fn(n)


def make_batch(impl: str, n: int, pools: Dict[str, object]) -> Callable[[], None]:
    """BATCH live buffers at once, then all released."""
    if impl.startswith("Pool.alloc_many"):
        import array

        arena = pools["arena"]
        sizes = array.array("Q", [n] * BATCH)
        if impl.endswith("reset"):
            def run_reset() -> None:
                arena.alloc_many(sizes)
                arena.reset()
            return run_reset

        def run_many() -> None:
            arena.free_many(arena.alloc_many(sizes))
        return run_many
    if impl == "pyalloc.Pool":
        pool = pools["pool"]

        def run() -> None:
            blocks = [pool.alloc(n) for _ in range(BATCH)]
            for b in blocks:
                pool.free(b)
        return run
    if impl == "pyalloc.Slab":
        slab = pools[f"slab{n}"]

        def run_slab() -> None:
            blocks = [slab.alloc() for _ in range(BATCH)]
            for b in blocks:
                slab.free(b)
        return run_slab
    if impl == "mmap":
        def run_mmap() -> None:
            maps = [mmap.mmap(-1, n) for _ in range(BATCH)]
            for m in maps:
                m.close()
        return run_mmap
    ctor = {"bytearray": bytearray, "ctypes": ctypes.create_string_buffer}[impl]
    return lambda: [ctor(n) for _ in range(BATCH)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", SIZES)
def test_single(benchmark, pools, impl: str, size: int) -> None:
    benchmark.group = f"python api: one buffer of {size} B"
    benchmark.extra_info.update(impl=impl, size=size, batch=1, baseline="bytearray")
    benchmark(make_single(impl, size, pools))


@pytest.mark.parametrize("impl", BATCH_IMPLS)
@pytest.mark.parametrize("size", SIZES)
def test_batch(benchmark, pools, impl: str, size: int) -> None:
    benchmark.group = f"python api: {BATCH} live buffers of {size} B"
    benchmark.extra_info.update(impl=impl, size=size, batch=BATCH, baseline="bytearray")
    benchmark(make_batch(impl, size, pools))
