"""`make demo` / `python3 -m pyalloc.demo`: every capability of the project, in a minute.

1. The four placement policies side by side on one allocation trace.
2. A real program (CPython) under the preloaded allocator, with its statistics.
3. A container with limits and the allocator inside.

Sections whose pieces are not available on this machine say so and are skipped.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pyalloc

Op = Tuple[str, int, int]  # ("alloc", id, size) | ("free", id, 0)


def make_trace(n_ops: int = 20000, seed: int = 1) -> List[Op]:
    """A program-like trace: many short-lived small objects, some long-lived larger ones,
    occasional big buffers, so that the policies leave different holes behind."""
    rng = random.Random(seed)
    trace: List[Op] = []
    live: List[int] = []
    long_lived: List[int] = []
    next_id = 0
    for _ in range(n_ops):
        r = rng.random()
        if r < 0.55 or not live:
            roll = rng.random()
            if roll < 0.70:
                size = rng.randint(8, 128)
            elif roll < 0.95:
                size = rng.randint(129, 2048)
            else:
                size = rng.randint(2049, 32768)
            trace.append(("alloc", next_id, size))
            (long_lived if rng.random() < 0.1 else live).append(next_id)
            next_id += 1
        else:
            victim = live.pop(rng.randrange(len(live)))
            trace.append(("free", victim, 0))
    return trace


def replay(trace: Sequence[Op], policy: str, capacity: int = 32 << 20) -> Dict[str, object]:
    with pyalloc.Pool(capacity, policy) as pool:
        blocks: Dict[int, pyalloc.Block] = {}
        peak_live = live = 0
        peak_extent = 0
        t0 = time.perf_counter()
        for op, ident, size in trace:
            if op == "alloc":
                blk = pool.alloc(size)
                blocks[ident] = blk
                live += size
                peak_live = max(peak_live, live)
                peak_extent = max(peak_extent, blk.offset + blk.size)
            else:
                blk = blocks.pop(ident)
                live -= blk.requested
                pool.free(blk)
        elapsed = time.perf_counter() - t0
        stats = pool.stats()
        return {
            "policy": policy,
            "ops": len(trace),
            "peak_live": peak_live,
            "peak_extent": peak_extent,
            "ratio": peak_extent / peak_live,
            "free_blocks": stats["free_blocks"],
            "fragmentation": stats["fragmentation"],
            "us_per_op": elapsed / len(trace) * 1e6,
            "map": arena_map(pool, peak_extent),
        }


def arena_map(pool: pyalloc.Pool, extent: int, width: int = 60) -> str:
    """One character per slice of the arena up to `extent`, by the share of the slice that
    live blocks occupy: ' ' none, '.' < 25 %, ':' < 50 %, '+' < 75 %, '#' 75 % or more."""
    scale = max(extent, 1) / width
    filled = [0.0] * width
    for off, size in pool.live_blocks():
        lo, hi = float(off), float(min(off + size, extent))
        while lo < hi:
            cell = min(int(lo / scale), width - 1)
            cell_end = min((cell + 1) * scale, hi)
            filled[cell] += cell_end - lo
            lo = cell_end if cell_end > lo else hi
    marks = []
    for amount in filled:
        share = amount / scale
        marks.append(" " if share == 0 else "." if share < 0.25 else ":" if share < 0.5 else
                     "+" if share < 0.75 else "#")
    return "".join(marks)


def section(title: str) -> None:
    print()
    print(title)
    print("-" * len(title))


def policies_side_by_side() -> None:
    section("1. Four placement policies, one trace (the C pool from Python)")
    trace = make_trace()
    allocs = sum(1 for op in trace if op[0] == "alloc")
    print(f"trace: {len(trace)} operations ({allocs} allocs, sizes 8 B .. 32 KiB), "
          "replayed on a fresh 32 MiB pool per policy")
    print()
    print(f"{'policy':<7}{'peak live':>11}{'peak heap':>11}{'heap/live':>10}"
          f"{'free blocks':>13}{'ext. frag':>10}{'us/op':>7}")
    results = [replay(trace, p) for p in pyalloc.POLICIES]
    for r in results:
        print(f"{r['policy']:<7}{r['peak_live']:>11,}{r['peak_extent']:>11,}{r['ratio']:>10.3f}"
              f"{r['free_blocks']:>13}{r['fragmentation']:>10.3f}{r['us_per_op']:>7.2f}")
    print()
    print("arena at the end of the trace, up to the peak heap: share of each slice in live")
    print("blocks (' ' none, '.' <25%, ':' <50%, '+' <75%, '#' more):")
    for r in results:
        print(f"  {r['policy']:<6}|{r['map']}|")
    print("peak heap = highest byte of the arena ever handed out; heap/live is Johnstone &")
    print("Wilson's fragmentation measure (1.0 = no waste). ext. frag = 1 - largest free/free.")
    python_speed()


def _best_ns(fn: Callable[[], object], per_call: int, number: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number / per_call)
    return best * 1e9


def python_speed() -> None:
    """A block against a bytearray of the same size, batches, and a NumPy array over a block."""
    import array

    with pyalloc.Pool(64 << 20) as pool:
        alloc, free = pool.alloc, pool.free
        sizes = array.array("Q", [64] * 1000)

        def ba() -> None:
            buf = bytearray(64)
            buf[0] = 1

        rows = [("bytearray(64), write, drop", _best_ns(ba, 1, 20000)),
                ("pool.alloc(64) + pool.free", _best_ns(lambda: free(alloc(64)), 1, 20000)),
                ("alloc_many(1000 x 64) + free_many, per block",
                 _best_ns(lambda: pool.free_many(pool.alloc_many(sizes)), 1000, 50)),
                ("alloc_many(1000 x 64) + reset, per block",
                 _best_ns(lambda: (pool.alloc_many(sizes), pool.reset()), 1000, 50))]
        print()
        print("the pool from Python, against a bytearray (best of 5 runs, this machine, now):")
        for name, ns in rows:
            print(f"  {name:<46}{ns:8.0f} ns  {ns / rows[0][1]:5.2f}x")
        try:
            import numpy as np
        except ImportError:
            print("  (NumPy is not installed: the array view is not shown)")
            return
        blk = pool.alloc(8 * 1000)
        arr = pyalloc.as_array(blk, np.float64, (10, 100))
        arr[:] = np.arange(1000).reshape(10, 100)
        try:
            pool.free(blk)
        except BufferError as err:
            print(f"  a NumPy array over a block, no copy: sum={arr.sum():.0f}; freeing it while "
                  f"the array lives: BufferError ({err})")
        del arr
        pool.free(blk)


def preload_section() -> Optional[str]:
    try:
        from pyalloc import preload_demo  # type: ignore[attr-defined]
    except ImportError:
        return "the preload library is not built yet"
    return preload_demo.run(section)


def container_section() -> Optional[str]:
    try:
        from pycontain import demo as contain_demo  # type: ignore[attr-defined]
    except ImportError:
        return "pycontain is not available"
    return contain_demo.run(section)


def main(argv: Optional[Sequence[str]] = None) -> int:
    t0 = time.perf_counter()
    print("pyalloc + pycontain demo")
    print("========================")
    policies_side_by_side()
    sections = (("2. A real program under LD_PRELOAD=libpyalloc.so", preload_section),
                ("3. Containers: limits, the allocator inside, an image, the OCI command line",
                 container_section))
    for name, fn in sections:
        skipped = fn()
        if skipped:
            section(name)
            print(f"skipped: {skipped}")
    print()
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
