"""Policy scaling: cost of one alloc+free pair per policy with 10^2, 10^4 and 10^6 free
blocks in the pool. The loop runs in C (pa_bench_alloc_free) so that the cffi call does not
hide the allocator's cost; pytest-benchmark times batches of OPS pairs.

    python3 -m pytest bench/test_bench_pool.py --benchmark-only
"""

from __future__ import annotations

import random
from typing import Dict, Tuple

import pytest
from pyalloc._native import ffi, lib

import pyalloc

MIN_SIZE, MAX_SIZE = 16, 256
OPS = 20000  # alloc+free pairs per timed call
_pools: Dict[Tuple[str, int], pyalloc.Pool] = {}


def fragmented_pool(policy: str, nfree: int) -> pyalloc.Pool:
    """A pool holding `nfree` holes of random sizes separated by live blocks (plus the tail)."""
    key = (policy, nfree)
    if key not in _pools:
        for old in list(_pools):  # keep one big pool alive at a time
            _pools.pop(old).close()
        capacity = max(64 << 20, nfree * 2 * (MAX_SIZE + 64) * 2)
        pool = pyalloc.Pool(capacity, policy)
        handle = pool._handle
        assert lib.pa_bench_fragment(handle, nfree, MIN_SIZE, MAX_SIZE, 42) == 0
        assert pool.stats()["free_blocks"] == nfree + 1
        _pools[key] = pool
    return _pools[key]


@pytest.fixture(scope="module", autouse=True)
def _close_pools():
    yield
    for pool in _pools.values():
        pool.close()
    _pools.clear()


@pytest.mark.parametrize("nfree", [100, 10_000, 1_000_000], ids=lambda n: f"free={n}")
@pytest.mark.parametrize("policy", pyalloc.POLICIES)
def test_policy_scaling(benchmark, policy: str, nfree: int) -> None:
    benchmark.group = "policy scaling: one alloc+free pair"
    pool = fragmented_pool(policy, nfree)
    rng = random.Random(7)
    sizes = ffi.new("size_t[]", [rng.randint(MIN_SIZE, MAX_SIZE) for _ in range(1000)])
    rounds = OPS // 1000

    def run() -> int:
        ns = lib.pa_bench_alloc_free(pool._handle, sizes, 1000, rounds)
        assert ns >= 0
        return ns

    benchmark.extra_info.update(policy=policy, free_blocks=nfree, pairs_per_call=OPS)
    benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=2)
    assert pool.stats()["free_blocks"] >= nfree  # the churn left the fragmentation in place
