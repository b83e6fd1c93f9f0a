"""Allocation traces recorded by libpyalloc.so (PYALLOC_TRACE=path) and their replay.

The format is documented in csrc/trace.h and docs/preload.md. `read()` decodes a trace in
pure Python (for inspection and tests); `replay()` runs it in C (pyalloc._native) through a
fresh pool under one policy and measures peak live bytes, peak heap bytes and time.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

MAGIC = b"PYATRACE"
VERSION = 1
HEADER_SIZE = 32
POLICIES = ("best", "worst", "first", "fifo")

MALLOC, CALLOC, MEMALIGN, FREE, REALLOC, THREAD = 1, 2, 3, 4, 5, 6
FAILED = 0x80
OP_NAMES = {MALLOC: "malloc", CALLOC: "calloc", MEMALIGN: "memalign", FREE: "free",
            REALLOC: "realloc"}


class TraceError(ValueError):
    """The file is not a pyalloc trace, or it is damaged."""


class Record(NamedTuple):
    op: str              # malloc | calloc | memalign | free | realloc
    tid: int             # thread number in the trace (1, 2, ...)
    size: int            # requested size (0 for free)
    ptr: int             # result address (0 if the call failed); the freed address for free
    old: int = 0         # realloc: the old address
    align: int = 0       # memalign: the alignment


class Header(NamedTuple):
    version: int
    pid: int


def _uv(data: bytes, pos: int):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise TraceError("truncated varint")
        c = data[pos]
        pos += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TraceError("varint too long")


def _ptr(data: bytes, pos: int, prev: int):
    z, pos = _uv(data, pos)
    d = (z >> 1) ^ -(z & 1)
    addr = (prev + d) & 0xFFFFFFFFFFFFFFFF
    return addr, pos


def read_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE or data[:8] != MAGIC:
        raise TraceError("not a pyalloc trace (bad magic)")
    version, hsize, pid = struct.unpack_from("<IIQ", data, 8)
    if version != VERSION or hsize != HEADER_SIZE:
        raise TraceError(f"unsupported trace version {version}")
    return Header(version, pid)


def iter_records(data: bytes) -> Iterator[Record]:
    """Decodes every record of a trace held in memory."""
    read_header(data)
    pos, prev, tid = HEADER_SIZE, 0, 0
    n = len(data)
    while pos < n:
        code = data[pos]
        pos += 1
        failed = bool(code & FAILED)
        op = code & ~FAILED
        if op == THREAD:
            tid, pos = _uv(data, pos)
        elif op in (MALLOC, CALLOC, MEMALIGN):
            align = 0
            if op == MEMALIGN:
                align, pos = _uv(data, pos)
            size, pos = _uv(data, pos)
            addr = 0
            if not failed:
                addr, pos = _ptr(data, pos, prev)
                prev = addr
            yield Record(OP_NAMES[op], tid, size, addr, 0, align)
        elif op == FREE:
            addr, pos = _ptr(data, pos, prev)
            prev = addr
            yield Record("free", tid, 0, addr)
        elif op == REALLOC:
            old, pos = _ptr(data, pos, prev)
            prev = old
            size, pos = _uv(data, pos)
            addr = 0
            if not failed:
                addr, pos = _ptr(data, pos, prev)
                prev = addr
            yield Record("realloc", tid, size, addr, old)
        else:
            raise TraceError(f"unknown opcode {code:#x} at byte {pos - 1}")


def read(path: str) -> List[Record]:
    with open(path, "rb") as f:
        return list(iter_records(f.read()))


def summary(path: str) -> Dict[str, int]:
    """Counts per operation, threads, and peak live requested bytes (computed in Python)."""
    counts: Dict[str, int] = {name: 0 for name in OP_NAMES.values()}
    live: Dict[int, int] = {}
    cur = peak = 0
    threads = set()
    unmatched = 0
    for r in read(path):
        counts[r.op] += 1
        threads.add(r.tid)
        if r.op == "free":
            size = live.pop(r.ptr, None)
            if size is None:
                unmatched += 1
            else:
                cur -= size
        elif r.op == "realloc":
            if r.ptr:
                old = live.pop(r.old, None)
                if old is None:
                    unmatched += 1
                else:
                    cur -= old
                live[r.ptr] = r.size
                cur += r.size
        elif r.ptr:
            live[r.ptr] = r.size
            cur += r.size
        peak = max(peak, cur)
    return {**counts, "threads": len(threads), "peak_live": peak, "final_live": cur,
            "unmatched": unmatched}


@dataclass
class ReplayResult:
    policy: str
    records: int
    allocs: int
    frees: int
    reallocs: int
    failed: int
    unmatched: int
    threads: int
    peak_live: int       # highest sum of requested bytes of live blocks
    peak_heap: int       # highest payload end offset reached in the pool
    peak_committed: int  # highest committed bytes of the pool
    final_live: int
    ratio: float         # peak_heap / peak_live
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def replay(path: str, policy: str = "best") -> ReplayResult:
    """Replays the trace in C under one policy."""
    return _replay(path, policy, 0, 0)[0]


def series(path: str, policy: str = "best", points: int = 400) -> Tuple[ReplayResult, List[Dict]]:
    """Replays the trace in C under one policy, sampling the heap about `points` times:
    dicts of ops, live (requested bytes), top (heap extent), used and free (below the top)."""
    first = _replay(path, policy, 0, 0)[0]  # counts the operations (fast, in C)
    total = first.allocs + first.frees + first.reallocs
    every = max(1, total // max(1, points))
    return _replay(path, policy, every, points + 2)


def _replay(path: str, policy: str, every: int, points: int) -> Tuple[ReplayResult, List[Dict]]:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    from pyalloc._native import ffi, lib  # lazy: the CLI works without it for other commands

    res = ffi.new("pa_replay_result *")
    samples = ffi.new("pa_replay_sample[]", max(points, 1))
    nsamples = ffi.new("size_t *")
    rc = lib.pa_trace_replay_series(str(path).encode(), POLICIES.index(policy), every,
                                    samples if points else ffi.NULL, points, nsamples, res)
    if rc != 0:
        import errno as _errno
        import os

        code = res.error
        if code == _errno.EINVAL:
            raise TraceError(f"{path}: not a valid pyalloc trace")
        raise OSError(code, os.strerror(code), str(path))
    result = ReplayResult(
        policy=policy, records=res.records, allocs=res.allocs, frees=res.frees,
        reallocs=res.reallocs, failed=res.failed, unmatched=res.unmatched,
        threads=res.threads, peak_live=res.peak_live, peak_heap=res.peak_heap,
        peak_committed=res.peak_committed, final_live=res.final_live, ratio=res.ratio,
        seconds=res.seconds,
    )
    points_out = [{k: int(getattr(samples[i], k)) for k in ("ops", "live", "top", "used", "free")}
                  for i in range(nsamples[0])]
    return result, points_out


def replay_all(path: str, policies: Optional[Sequence[str]] = None) -> List[ReplayResult]:
    return [replay(path, p) for p in (policies or POLICIES)]


def format_table(results: Sequence[ReplayResult]) -> str:
    head = f"{'policy':<7} {'peak live':>14} {'peak heap':>14} {'heap/live':>10} {'time':>9}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.policy:<7} {r.peak_live:>14,} {r.peak_heap:>14,} {r.ratio:>10.4f} "
                     f"{r.seconds * 1000:>7.1f}ms")
    if results:
        r = results[0]
        lines.append(f"({r.records:,} records: {r.allocs:,} allocs, {r.frees:,} frees, "
                     f"{r.reallocs:,} reallocs, {r.threads} threads"
                     + (f", {r.unmatched:,} unmatched" if r.unmatched else "") + ")")
    return "\n".join(lines)
