"""Policy scaling: cost of one alloc+free pair per policy with 10^2, 10^4 and 10^6 free
blocks in the pool. The loop runs in C (pa_bench_alloc_free) so that the cffi call does not
hide the allocator's cost; pytest-benchmark times batches of OPS pairs.

    python3 -m pytest bench/test_bench_pool.py --benchmark-only
"""

from __future__ import annotations

import random
from typing import Any, Dict, Tuple

import pytest
from pyalloc._native import ffi, lib

import pyalloc

MIN_SIZE, MAX_SIZE = 16, 256
OPS = 20000  # alloc+free pairs per timed call
_pools: Dict[Tuple[str, int], Any] = {}  # C pool handles of the cffi module


def free_block_count(handle: Any) -> int:
    st = ffi.new("pa_stats *")
    lib.pa_pool_stats(handle, st)
    return int(st.free_blocks)


def fragmented_pool(policy: str, nfree: int) -> Any:
    """A C pool holding `nfree` holes of random sizes separated by live blocks (plus the
    tail), created through the cffi module so that the benchmark loop runs in C."""
    key = (policy, nfree)
    if key not in _pools:
        for old in list(_pools):  # keep one big pool alive at a time
            lib.pa_pool_destroy(_pools.pop(old))
        capacity = max(64 << 20, nfree * 2 * (MAX_SIZE + 64) * 2)
        handle = lib.pa_pool_create(capacity, lib.pa_policy_from_name(policy.encode()), 0)
        assert handle != ffi.NULL
        assert lib.pa_bench_fragment(handle, nfree, MIN_SIZE, MAX_SIZE, 42) == 0
        assert free_block_count(handle) == nfree + 1
        _pools[key] = handle
    return _pools[key]


@pytest.fixture(scope="module", autouse=True)
def _close_pools():
    yield
    for handle in _pools.values():
        lib.pa_pool_destroy(handle)
    _pools.clear()


@pytest.mark.parametrize("nfree", [100, 10_000, 1_000_000], ids=lambda n: f"free={n}")
@pytest.mark.parametrize("policy", pyalloc.POLICIES)
def test_policy_scaling(benchmark, policy: str, nfree: int) -> None:
    benchmark.group = "policy scaling: one alloc+free pair"
    handle = fragmented_pool(policy, nfree)
    rng = random.Random(7)
    sizes = ffi.new("size_t[]", [rng.randint(MIN_SIZE, MAX_SIZE) for _ in range(1000)])
    rounds = OPS // 1000

    def run() -> int:
        ns = lib.pa_bench_alloc_free(handle, sizes, 1000, rounds)
        assert ns >= 0
        return ns

    benchmark.extra_info.update(policy=policy, free_blocks=nfree, pairs_per_call=OPS)
    benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=2)
    assert free_block_count(handle) >= nfree  # the churn left the fragmentation in place
