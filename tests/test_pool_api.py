"""The Python API contract: blocks, views, errors, closing, threads."""

from __future__ import annotations

import gc
import threading

import pytest

import pyalloc


def test_readme_example() -> None:
    pool = pyalloc.Pool(capacity=64 << 20, policy="best")
    blk = pool.alloc(100)
    assert isinstance(blk, pyalloc.Block)
    assert blk.size >= 100 and blk.offset % pyalloc.ALIGNMENT == 0
    blk.view()[:5] = b"hello"
    assert bytes(blk.view()[:5]) == b"hello"
    assert blk.address == pool.base_address + blk.offset
    pool.free(blk)
    assert not blk.live
    stats = pool.stats()
    for key in ("capacity", "used", "free", "largest_free", "free_blocks", "fragmentation",
                "peak_used", "allocs", "frees", "failed_allocs"):
        assert key in stats
    assert stats["allocs"] == 1 and stats["frees"] == 1 and stats["peak_used"] >= 100
    pool.close()


def test_view_is_zero_copy() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(64)
        v1, v2 = blk.view(), blk.view()
        v1[0:3] = b"abc"
        assert bytes(v2[0:3]) == b"abc"  # both views see the same memory
        import ctypes

        assert ctypes.string_at(blk.address, 3) == b"abc"
        del v1, v2
        pool.free(blk)


def test_memoryview_of_block() -> None:
    """A Block is a buffer on every Python version (the C buffer protocol, not __buffer__)."""
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(10)
        m = memoryview(blk)
        m[0] = 7
        assert blk.view()[0] == 7
        m.release()
        pool.free(blk)


@pytest.mark.parametrize("policy", pyalloc.POLICIES)
def test_each_policy_allocates_and_frees(policy: str) -> None:
    with pyalloc.Pool(1 << 20, policy=policy) as pool:
        blocks = [pool.alloc(n) for n in range(1, 2000, 37)]
        for b in blocks[::2]:
            pool.free(b)
        for b in blocks[1::2]:
            pool.free(b)
        assert pool.stats()["free_blocks"] == 1
        pool.check()


def test_exhaustion_raises_memory_error_and_counts() -> None:
    with pyalloc.Pool(64 << 10) as pool:
        with pytest.raises(MemoryError, match="pool exhausted"):
            pool.alloc(1 << 20)
        blocks = []
        with pytest.raises(MemoryError):
            while True:
                blocks.append(pool.alloc(1000))
        assert pool.stats()["failed_allocs"] == 2
        for b in blocks:
            b.free()
        pool.check()


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"capacity": 0}, ValueError, "capacity"),
        ({"capacity": -5}, ValueError, "capacity"),
        ({"capacity": "big"}, TypeError, "capacity"),
        ({"capacity": 1.5}, TypeError, "capacity"),
        ({"capacity": True}, TypeError, "capacity"),
        ({"capacity": 1 << 60}, ValueError, "capacity"),
        ({"policy": "random"}, ValueError, "policy"),
        ({"policy": 3}, TypeError, "policy"),
        ({"trim_threshold": -1}, ValueError, "trim_threshold"),
    ],
)
def test_bad_pool_arguments(kwargs, exc, word) -> None:
    args = {"capacity": 1 << 20, **kwargs}
    with pytest.raises(exc, match=word):
        pyalloc.Pool(**args)


@pytest.mark.parametrize(
    ("call", "exc", "word"),
    [
        (lambda p: p.alloc(-1), ValueError, "size"),
        (lambda p: p.alloc("10"), TypeError, "size"),
        (lambda p: p.alloc(10.0), TypeError, "size"),
        (lambda p: p.alloc(10, align=24), ValueError, "align"),
        (lambda p: p.alloc(10, align=0), ValueError, "align"),
        (lambda p: p.alloc(10, align=1 << 30), ValueError, "align"),
        (lambda p: p.alloc(10, align="x"), TypeError, "align"),
        (lambda p: p.free(123), TypeError, "block"),
        (lambda p: p.realloc(p.alloc(8), -3), ValueError, "size"),
    ],
)
def test_bad_call_arguments(call, exc, word) -> None:
    with pyalloc.Pool(1 << 20) as pool:
        with pytest.raises(exc, match=word):
            call(pool)
        pool.check()


def test_double_free_and_foreign_block() -> None:
    with pyalloc.Pool(1 << 20) as a, pyalloc.Pool(1 << 20) as b:
        blk = a.alloc(32)
        with pytest.raises(pyalloc.AllocError, match="another pool"):
            b.free(blk)
        a.free(blk)
        with pytest.raises(pyalloc.AllocError, match="double free"):
            a.free(blk)
        with pytest.raises(pyalloc.AllocError):
            blk.free()
        assert issubclass(pyalloc.AllocError, ValueError)
        a.check()
        b.check()
        assert a.stats()["frees"] == 1 and b.stats()["frees"] == 0


def test_use_after_free_raises() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(32)
        pool.free(blk)
        with pytest.raises(pyalloc.AllocError):
            blk.view()
        with pytest.raises(pyalloc.AllocError):
            _ = blk.address
        with pytest.raises(pyalloc.AllocError):
            pool.realloc(blk, 64)


def test_free_with_live_view_raises_buffer_error() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(32)
        view = blk.view()
        part = view[4:8]
        del view
        with pytest.raises(BufferError, match="view"):
            pool.free(blk)
        with pytest.raises(BufferError):
            pool.realloc(blk, 1000)
        assert blk.live
        part.release()
        pool.free(blk)
        assert not blk.live


def test_close_rules() -> None:
    pool = pyalloc.Pool(1 << 20)
    blk = pool.alloc(10)
    view = blk.view()
    with pytest.raises(BufferError):
        pool.close()
    del view
    pool.close()
    assert pool.closed and not blk.live
    with pytest.raises(pyalloc.AllocError, match="closed"):
        pool.alloc(1)
    with pytest.raises(pyalloc.AllocError):
        blk.view()
    with pytest.raises(pyalloc.AllocError):
        pool.stats()
    pool.close()  # idempotent


def test_context_manager_closes() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(10)
    assert pool.closed and not blk.live


def test_view_keeps_memory_alive_after_pool_is_dropped() -> None:
    pool = pyalloc.Pool(1 << 20)
    view = pool.alloc(100).view()
    del pool
    gc.collect()
    view[:4] = b"safe"  # the pool is still mapped: the view keeps it alive
    assert bytes(view[:4]) == b"safe"
    view.release()
    gc.collect()


def test_realloc_in_place_and_moving() -> None:
    with pyalloc.Pool(1 << 20, "first") as pool:
        a = pool.alloc(100)
        a.view()[:4] = b"data"
        b = pool.realloc(a, 1000)  # the next block is the free tail: grows in place
        assert b.offset == a.offset and not a.live and b.size >= 1000
        c = pool.alloc(10)  # now b is fenced in
        d = pool.realloc(b, 5000)
        assert d.offset != b.offset
        assert bytes(d.view()[:4]) == b"data"
        e = pool.realloc(d, 10)  # shrink in place
        assert e.offset == d.offset and e.size < d.size
        for blk in (c, e):
            pool.free(blk)
        pool.check()
        assert pool.stats()["reallocs"] == 3


def test_aligned_allocations() -> None:
    with pyalloc.Pool(4 << 20) as pool:
        for align in (32, 64, 128, 1024, 4096, 65536):
            pool.alloc(3)  # disturb the alignment of the next free payload
            blk = pool.alloc(100, align=align)
            assert blk.address % align == 0
        pool.check()


def test_fragmentation_is_reported() -> None:
    with pyalloc.Pool(1 << 20, "first") as pool:
        blocks = [pool.alloc(1000) for _ in range(100)]
        for b in blocks[::2]:
            pool.free(b)
        st = pool.stats()
        assert st["free_blocks"] == 51
        assert st["fragmentation"] == pytest.approx(1 - st["largest_free"] / st["free"])
        assert 0.0 < st["fragmentation"] < 1.0


def test_threads_share_one_pool() -> None:
    errors = []
    with pyalloc.Pool(16 << 20, "best") as pool:

        def work(seed: int) -> None:
            try:
                mine = []
                for i in range(2000):
                    blk = pool.alloc((seed * 131 + i * 17) % 3000 + 1)
                    blk.view()[:1] = bytes([seed])
                    mine.append(blk)
                    if len(mine) > 20:
                        old = mine.pop(0)
                        assert old.view()[0] == seed
                        pool.free(old)
                for blk in mine:
                    pool.free(blk)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        pool.check()
        assert pool.stats()["live_blocks"] == 0


def test_trim_returns_memory() -> None:
    with pyalloc.Pool(64 << 20, trim_threshold=1 << 20) as pool:
        big = [pool.alloc(1 << 20) for _ in range(32)]
        peak = pool.stats()["committed"]
        for b in big:
            pool.free(b)
        st = pool.stats()
        assert st["trims"] >= 1
        assert st["committed"] < peak
        assert st["peak_committed"] >= peak


def test_slab_contract() -> None:
    with pyalloc.Slab(block_size=64, capacity=1 << 16) as slab:
        assert slab.block_size == 64
        blocks = [slab.alloc() for _ in range(slab.capacity // 64)]
        assert len({b.offset for b in blocks}) == len(blocks)
        assert all(b.offset % 64 == 0 and b.size == 64 for b in blocks)
        with pytest.raises(MemoryError, match="slab exhausted"):
            slab.alloc()
        blocks[3].view()[:3] = b"xyz"
        assert bytes(blocks[3].view()[:3]) == b"xyz"
        slab.free(blocks[3])
        with pytest.raises(pyalloc.AllocError):
            slab.free(blocks[3])
        again = slab.alloc()
        assert again.offset == blocks[3].offset  # LIFO reuse, O(1)
        st = slab.stats()
        assert st["live_blocks"] == len(blocks) and st["failed_allocs"] == 1
        with pyalloc.Pool(1 << 20) as pool:
            with pytest.raises(pyalloc.AllocError, match="another"):
                pool.free(again)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": "8"}, TypeError, "block_size"),
        ({"capacity": 0}, ValueError, "capacity"),
        ({"block_size": 4096, "capacity": 100}, ValueError, "capacity"),
    ],
)
def test_bad_slab_arguments(kwargs, exc, word) -> None:
    with pytest.raises(exc, match=word):
        pyalloc.Slab(**kwargs)


def test_view_in_a_reference_cycle_is_released_by_gc() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(16)

        class Holder:
            pass

        h = Holder()
        h.view = blk.view()[2:6]
        h.me = h  # a cycle: only the cyclic collector frees it
        del h
        with pytest.raises(BufferError):
            pool.free(blk)
        gc.collect()
        pool.free(blk)  # the collector released the view; nothing deadlocked


def test_explicit_trim_releases_free_pages() -> None:
    with pyalloc.Pool(64 << 20) as pool:
        blocks = [pool.alloc(200 << 10) for _ in range(40)]
        for b in blocks:
            b.view()[:] = b"\x01" * b.size
        fence = blocks.pop(0)
        for b in blocks[::2]:  # small frees below the threshold: not purged on the spot
            pool.free(b)
        released = pool.trim()
        assert released > 0
        assert pool.stats()["trims"] >= 1
        pool.check()
        for b in blocks[1::2]:
            assert bytes(b.view()[:4]) == b"\x01" * 4  # live data untouched
            pool.free(b)
        pool.free(fence)
        assert pool.trim() >= 0
