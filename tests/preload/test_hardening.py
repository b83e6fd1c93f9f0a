"""The defects of issue 13, each with the test that failed before its fix, and the misuse
catalogue: what libpyalloc.so does when a program misuses the heap."""

from __future__ import annotations

import re

import pytest
from conftest import CONFIG_IDS, CONFIGS, config_env, plain_env, run

pytestmark = pytest.mark.timeout(300)


def _rss(out: bytes) -> tuple[int, int]:
    m = re.search(rb"rss_after_alloc_mb=(\d+) rss_after_free_mb=(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("size,order", [(65536, 0), (65536, 1), (16384, 1), (200000, 1),
                                        (65536, 2)],
                         ids=["64k-reverse", "64k-random", "16k-random", "200k-random",
                              "64k-forward"])
def test_freed_medium_blocks_leave_the_resident_set(cbuild, libpyalloc, size, order):
    """1 GiB in medium blocks, all freed, no malloc_trim: RSS drops (it stayed at 1 GiB)."""
    exe = cbuild("medium_release")
    res = run([exe, str(size), str(order)], config_env(None, None))
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    before, after = _rss(res.stdout)
    assert before >= 1000
    assert after <= 64, f"RSS {after} MB after freeing 1 GiB of {size}-byte blocks"


@pytest.mark.parametrize("policy,tcache", CONFIGS, ids=CONFIG_IDS)
def test_freed_medium_blocks_every_policy(cbuild, libpyalloc, policy, tcache):
    res = run([cbuild("medium_release"), "65536", "1"], config_env(policy, tcache))
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert _rss(res.stdout)[1] <= 64


def test_medium_release_under_glibc_for_reference(cbuild):
    res = run([cbuild("medium_release"), "65536", "1"], plain_env())
    assert res.returncode == 0 and _rss(res.stdout)[0] >= 1000
