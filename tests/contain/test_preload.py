"""--preload: the pyalloc pool preloaded into the container, its statistics in the state."""

from __future__ import annotations

import json
import os

import pytest


def _library() -> str:
    try:
        from pyalloc import preload

        path = str(preload.library_path())
    except Exception:
        pytest.skip("libpyalloc.so not built")
    if not os.path.isfile(path):
        pytest.skip("libpyalloc.so not built")
    return path


WORKLOAD = "d = {i: str(i) * 10 for i in range(20000)}\nprint(len(d))\n"


def _numbers(obj: object) -> list:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [obj]
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return []


def test_preload_best_reports_allocator_counters(rt) -> None:  # type: ignore[no-untyped-def]
    lib = _library()
    p = rt.cli("run", "--name", "pl", "--memory", "256M", "--preload", "best", "--",
               "python3", "-c", WORKLOAD + "import os\nprint(os.environ['LD_PRELOAD'])\n"
               "print(os.environ['PYALLOC_POLICY'])\n"
               "print(any('libpyalloc' in l for l in open('/proc/self/maps')))\n", check=0)
    out = p.stdout.decode().split()
    assert out == ["20000", "/.pyalloc/libpyalloc.so", "best", "True"], (out, lib)
    info = rt.inspect("pl")
    alloc = info["allocator"]
    assert alloc and alloc["policy"] == "best" and alloc["processes"] >= 1, info
    assert any(n > 0 for n in _numbers(alloc["files"])), json.dumps(alloc)[:2000]
    assert info["memory"]["peak"] > 0  # shown next to the cgroup's memory peak
    rt.cli("rm", "pl", check=0)
