"""Batches (alloc_many, free_many, reset), the buffer protocol on every Python version, and
NumPy arrays over blocks: placement, all-or-nothing, the offsets a batch may free, lifetimes."""

from __future__ import annotations

import array
import gc
from typing import Any

import pytest

import pyalloc
from tests.model import HEADER, need_for

np = pytest.importorskip("numpy")  # installed by `make deps`; an optional dependency of pyalloc


@pytest.mark.parametrize("policy", pyalloc.POLICIES)
def test_batch_is_one_request_carved_in_order(policy: str) -> None:
    sizes = [1, 64, 100, 0, 1000, 17]
    with pyalloc.Pool(1 << 20, policy) as a, pyalloc.Pool(1 << 20, policy) as b:
        for p in (a, b):  # the same holes in both
            keep = [p.alloc(n) for n in (300, 2000, 50, 5000, 80)]
            p.free(keep[1])
            p.free(keep[3])
        offs = a.alloc_many(sizes)
        assert isinstance(offs, array.array) and offs.typecode == "Q"
        total = sum(need_for(n) for n in sizes)
        single = b.alloc(total - HEADER)  # the block the policy picks for the whole batch
        assert offs[0] == single.offset
        for i in range(1, len(sizes)):
            assert offs[i] - offs[i - 1] == need_for(sizes[i - 1])
        assert a.stats()["live_blocks"] == 3 + len(sizes)
        a.check()
        a.free_many(offs)
        a.check()
        assert a.stats()["live_blocks"] == 3


def test_sizes_from_buffers_and_sequences() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        for sizes in ([10, 20], (10, 20), array.array("I", [10, 20]), bytes([10, 20]),
                      np.array([10, 20], dtype=np.int64), memoryview(array.array("H", [10, 20]))):
            offs = pool.alloc_many(sizes)
            assert len(offs) == 2
            pool.free_many(offs)
            pool.free_many(array.array("Q"))  # nothing
        assert len(pool.alloc_many([])) == 0
        pool.check()
        assert pool.stats()["live_blocks"] == 0


@pytest.mark.parametrize(
    ("sizes", "exc", "word"),
    [
        ([1, -2], ValueError, "sizes[1]"),
        ([1, "x"], TypeError, "sizes[1]"),
        ([1, True], TypeError, "sizes[1]"),
        (array.array("d", [1.0]), TypeError, "integers"),
        (np.array([5, -1], dtype=np.int32), ValueError, "sizes[1]"),
        (np.array([1 << 62], dtype=np.uint64), ValueError, "sizes[0]"),
        (42, TypeError, "sequence"),
    ],
)
def test_bad_sizes_name_the_item(sizes: Any, exc: type, word: str) -> None:
    with pyalloc.Pool(1 << 20) as pool:
        with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
            pool.alloc_many(sizes)
        assert pool.stats()["live_blocks"] == 0
        pool.check()


def test_exhaustion_allocates_nothing() -> None:
    with pyalloc.Pool(64 << 10) as pool:
        with pytest.raises(MemoryError, match="pool exhausted"):
            pool.alloc_many([1000] * 100)
        st = pool.stats()
        assert st["live_blocks"] == 0 and st["failed_allocs"] == 1
        pool.check()


def test_free_many_takes_only_anonymous_live_blocks() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(64)
        offs = pool.alloc_many([64, 64, 64])
        for bad, why in ((blk.offset, "Block object"), (offs[0] + 16, "not a live block"),
                         (3, "not a block offset"), (1 << 40, "not a block offset")):
            with pytest.raises(pyalloc.AllocError, match=why):
                pool.free_many([bad])
        with pytest.raises(pyalloc.AllocError, match=r"offsets\[2\].*the 2 before it were freed"):
            pool.free_many([offs[0], offs[1], offs[0]])  # the third is a double free
        assert blk.live
        pool.free_many([offs[2]])
        pool.free(blk)
        assert pool.stats()["live_blocks"] == 0
        pool.check()


def test_offsets_from_before_a_reset_are_refused() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        offs = pool.alloc_many([64] * 8)
        blk = pool.alloc(64)
        pool.reset()
        for o in (*offs, blk.offset):  # their headers are still in memory: not trusted
            with pytest.raises(pyalloc.AllocError, match="not a live block"):
                pool.free_many([o])
        pool.check()
        assert pool.stats()["live_blocks"] == 0 and pool.stats()["free_blocks"] == 1


def test_reset_kills_every_block_at_once() -> None:
    with pyalloc.Pool(1 << 20, "fifo") as pool:
        blocks = [pool.alloc(n) for n in (10, 200, 3000)]
        pool.alloc_many([50] * 40)
        view = blocks[1].view()
        with pytest.raises(BufferError, match="view"):
            pool.reset()
        view.release()
        assert pool.reset() == 43
        assert not any(b.live for b in blocks)
        with pytest.raises(pyalloc.AllocError):
            blocks[0].view()
        with pytest.raises(pyalloc.AllocError, match="not live"):
            pool.free(blocks[2])
        st = pool.stats()
        assert st["live_blocks"] == 0 and st["used"] == 0 and st["free_blocks"] == 1
        assert len(pool.free_blocks()) == 1
        pool.check()
        again = pool.alloc(10)
        assert again.live and again.offset == blocks[0].offset
        assert pool.live_count() == 1


def test_buffer_protocol_counts_every_export() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(32)
        m = memoryview(blk)
        assert len(m) == blk.size and not m.readonly
        m[0] = 9
        part = m[4:8]
        m.release()
        with pytest.raises(BufferError, match="1 view"):
            pool.free(blk)
        part.release()
        pool.free(blk)
        with pytest.raises(pyalloc.AllocError):
            memoryview(blk)


def test_numpy_array_over_a_block() -> None:
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(64)
        arr = pyalloc.as_array(blk, "float64", (2, 4))
        arr[:] = np.arange(8).reshape(2, 4)
        assert bytes(blk.view()[8:16]) == np.float64(1).tobytes()  # zero-copy
        whole = np.asarray(blk)  # the buffer protocol directly: one uint8 per byte
        assert whole.shape == (blk.size,)
        with pytest.raises(BufferError):
            pool.free(blk)  # the arrays keep the block
        with pytest.raises(BufferError):
            pool.close()
        del arr, whole
        gc.collect()
        with pytest.raises(ValueError, match="needs 800 bytes"):
            pyalloc.as_array(blk, "float64", (10, 10))
        assert pyalloc.as_array(blk, np.int32).shape == (blk.size // 4,)
        pool.free(blk)
        with pytest.raises(pyalloc.AllocError):
            pyalloc.as_array(blk)


def test_blocks_cannot_be_made_from_python() -> None:
    with pytest.raises(TypeError):
        pyalloc.Block()  # type: ignore[call-arg]
    with pyalloc.Pool(1 << 20) as pool:
        blk = pool.alloc(8)
        import copy

        with pytest.raises(TypeError):
            copy.copy(blk)
