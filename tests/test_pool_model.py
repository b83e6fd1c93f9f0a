"""Property tests: random alloc/free/realloc traces replayed on a real pool and on the reference
model (tests/model.py); after every step the placement, the free set (offset, size, seq), the
tiling of the arena, the byte accounting and the data in every live block must agree."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyalloc
from tests.model import HEADER, Model, tiles

CAPACITY = 64 << 10

small = st.integers(min_value=0, max_value=300)
large = st.integers(min_value=301, max_value=12000)
sizes = st.one_of(small, small, small, large)
aligns = st.one_of(st.none(), st.none(), st.none(), st.sampled_from([32, 64, 256, 4096]))

ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), sizes, aligns),
        st.tuples(st.just("alloc"), sizes, st.none()),
        st.tuples(st.just("free"), st.integers(min_value=0, max_value=10**6), st.none()),
        st.tuples(st.just("realloc"), st.integers(min_value=0, max_value=10**6), sizes),
        st.tuples(st.just("alloc_many"), st.integers(min_value=1, max_value=24),
                  st.integers(min_value=0, max_value=10**6)),
        st.tuples(st.just("free_many"), st.integers(min_value=0, max_value=10**6),
                  st.integers(min_value=1, max_value=12)),
        st.tuples(st.just("reset"), st.integers(min_value=0, max_value=9), st.none()),
    ),
    min_size=1,
    max_size=120,
)


def pattern(tag: int, n: int) -> bytes:
    return bytes((tag + i * 7) & 0xFF for i in range(n))


def check_pool(pool: pyalloc.Pool, model: Model, live: Dict[int, Tuple[pyalloc.Block, int, int]]):
    free = pool.free_blocks()
    assert free == model.free_set()
    live_blocks = pool.live_blocks()
    assert live_blocks == model.live_set()
    totals = tiles(pool.capacity, free, live_blocks)
    stats = pool.stats()
    assert stats["used"] == totals["used"]
    assert stats["free"] == totals["free"]
    # every byte is accounted for: payloads, one header per block, 16 bytes of prologue/epilogue
    assert stats["used"] + stats["free"] + stats["overhead"] == stats["capacity"]
    assert stats["overhead"] == totals["headers"] + 16
    assert stats["free_blocks"] == len(free)
    assert stats["largest_free"] == max((s for _, s, _ in free), default=0)
    last = model.blocks[-1]  # the heap extent: where the free top starts
    assert stats["top"] == (last.start if last.free else pool.capacity)
    pool.check()
    for blk, tag, n in live.values():
        assert bytes(blk.view()[:n]) == pattern(tag, n), f"data of block {blk.offset} changed"


def run_trace(policy: str, trace: List[Tuple[str, int, Optional[int]]]) -> None:
    with pyalloc.Pool(CAPACITY, policy) as pool:
        model = Model(pool.capacity, policy, pool.base_address)
        live: Dict[int, Tuple[pyalloc.Block, int, int]] = {}
        anon: List[int] = []  # offsets from alloc_many
        tag = 0
        for op, a, b in trace:
            tag += 1
            if op == "alloc_many":
                want = [(b * 31 + j * 97) % 400 for j in range(a)]
                expect_many = model.alloc_many(want)
                if expect_many is None:
                    before = pool.stats()["live_blocks"]
                    with pytest.raises(MemoryError):
                        pool.alloc_many(want)
                    assert pool.stats()["live_blocks"] == before  # all or nothing
                else:
                    got = list(pool.alloc_many(want))
                    assert got == expect_many, f"{policy} placed the batch at {got}"
                    anon += got
            elif op == "free_many":
                start = a % len(anon) if anon else 0
                chunk, anon = anon[start:start + b], anon[:start] + anon[start + b:]
                for o in chunk:
                    model.free(o)
                pool.free_many(chunk)
            elif op == "reset":
                if a:  # rarely: a reset ends every block of the trace
                    continue
                model.reset()
                assert pool.reset() == len(live) + len(anon)
                assert not any(blk.live for blk, _, _ in live.values())
                live.clear()
                anon.clear()
            elif op == "alloc":
                expect = model.alloc(a, b)
                if expect is None:
                    with pytest.raises(MemoryError):
                        pool.alloc(a, align=b)
                else:
                    blk = pool.alloc(a, align=b)
                    assert blk.offset == expect, f"{policy} placed {a} at {blk.offset}"
                    if b:
                        assert blk.address % b == 0
                    assert blk.size >= a
                    blk.view()[:a] = pattern(tag, a)
                    live[blk.offset] = (blk, tag, a)
            elif live:
                key = sorted(live)[a % len(live)]
                blk, old_tag, n = live[key]
                if op == "free":
                    model.free(key)
                    pool.free(blk)
                    del live[key]
                else:
                    expect = model.realloc(key, b)
                    if expect is None:
                        with pytest.raises(MemoryError):
                            pool.realloc(blk, b)
                        assert blk.live
                    else:
                        new = pool.realloc(blk, b)
                        assert new.offset == expect
                        keep = min(n, b)
                        assert bytes(new.view()[:keep]) == pattern(old_tag, n)[:keep]
                        del live[key]
                        new.view()[:b] = pattern(tag, b)
                        live[new.offset] = (new, tag, b)
            model.check_tiling()
            check_pool(pool, model, live)
        for blk, _, _ in list(live.values()):
            pool.free(blk)
        pool.free_many(anon)
        assert pool.stats()["free_blocks"] == 1
        assert pool.stats()["used"] == 0


@pytest.mark.parametrize("policy", pyalloc.POLICIES)
@given(trace=ops)
def test_random_traces_follow_the_contract(policy: str, trace) -> None:
    run_trace(policy, trace)


@pytest.mark.parametrize("policy", pyalloc.POLICIES)
def test_policies_choose_differently_on_one_layout(policy: str) -> None:
    """A hand-made layout where each policy picks a different hole."""
    with pyalloc.Pool(1 << 20, policy) as pool:
        # holes of usable 248 (A), 120 (B), 504 (C), 200 (D), separated by live blocks
        sizes = [248, 8, 120, 8, 504, 8, 200, 8]
        blocks = [pool.alloc(n) for n in sizes]
        (tail,) = [s for _, s, _ in pool.free_blocks()]
        filler = pool.alloc(tail)  # the rest of the arena: no tail block left
        assert pool.free_blocks() == []
        for i in (6, 0, 4, 2):  # D freed first: the oldest hole
            pool.free(blocks[i])
        free = {off: size for off, size, _ in pool.free_blocks()}
        a, b, c, d = (blocks[i].offset for i in (0, 2, 4, 6))
        assert [free[a], free[b], free[c], free[d]] == [248, 120, 504, 200]
        got = pool.alloc(100).offset
        assert got == {"best": b, "worst": c, "first": a, "fifo": d}[policy]
        pool.free(filler)


def test_model_and_pool_agree_on_seq_rules() -> None:
    """A merged block takes a new seq; a split remainder keeps its seq."""
    with pyalloc.Pool(1 << 20, "fifo") as pool:
        x, y, z = pool.alloc(200), pool.alloc(200), pool.alloc(200)
        (tail,) = [s for _, s, _ in pool.free_blocks()]
        filler = pool.alloc(tail)  # the initial block (seq 0) would otherwise be the oldest
        pool.free(x)
        (seq_x,) = [s for o, _, s in pool.free_blocks() if o == x.offset]
        pool.free(y)  # merges with x: new seq
        merged = [s for o, _, s in pool.free_blocks() if o == x.offset]
        assert merged and merged[0] > seq_x
        small_blk = pool.alloc(50)  # fifo: the merged block has the lowest seq, is split
        assert small_blk.offset == x.offset
        rest = [s for o, _, s in pool.free_blocks() if o == x.offset + 64]
        assert rest == merged
        pool.free(small_blk)
        pool.free(z)
        pool.free(filler)
    assert HEADER == pyalloc.HEADER
