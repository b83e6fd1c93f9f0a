"""The preload part of `make demo`: a real program (CPython, every allocation through malloc)
run under glibc and under libpyalloc.so with each policy, outputs compared, statistics shown."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

WORKLOAD = r"""
import json, re
words = [f"w{i % 977}-{i}" for i in range(120000)]
index = {}
for w in words:
    index.setdefault(w.split("-")[0], []).append(w)
blob = json.dumps(index)
back = json.loads(blob)
hits = sum(1 for w in words if re.fullmatch(r"w9\d+-\d+", w))
print(len(blob), len(back), hits)
"""


def _run(env_extra: Dict[str, str]) -> Tuple[str, float, int]:
    """Runs the workload; returns (stdout, seconds, peak RSS of the child in KiB)."""
    env = dict(os.environ, PYTHONMALLOC="malloc", **env_extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-S", "-c", WORKLOAD], env=env, check=True,
                         capture_output=True, text=True).stdout
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return out.strip(), seconds, rss if rss > before else before


def run(section: Callable[[str], None]) -> Optional[str]:
    """Prints the section; returns a reason string instead when it cannot run here."""
    from pyalloc import preload

    try:
        lib = str(preload.library_path())
    except Exception as exc:  # the library is not built
        return str(exc)
    if not os.path.isfile(lib):
        return f"{lib} is not built"

    section("2. A real program under LD_PRELOAD=libpyalloc.so (pyalloc run)")
    print("program: CPython with PYTHONMALLOC=malloc building, dumping and parsing a JSON index")
    print(f"$ pyalloc run --policy P --stats-file S -- {os.path.basename(sys.executable)} -c ...")
    print()
    print(f"{'allocator':<26}{'time':>7}{'requests':>10}{'peak live':>12}{'peak mapped':>13}"
          f"{'mapped/live':>12}")
    reference, seconds, _ = _run({})
    print(f"{'glibc malloc':<26}{seconds:>6.2f}s{'-':>10}{'-':>12}{'-':>13}{'-':>12}")
    configs: List[Tuple[str, Dict[str, str]]] = [("pyalloc best (default)", {})]
    configs += [(f"pyalloc {p}, no tcache", {"PYALLOC_POLICY": p, "PYALLOC_TCACHE": "0"})
                for p in ("best", "worst", "first", "fifo")]
    same = True
    with tempfile.TemporaryDirectory(prefix="pyalloc-demo-") as tmp:
        for label, extra in configs:
            stats_file = os.path.join(tmp, "stats.json")
            env = {"LD_PRELOAD": lib, "PYALLOC_STATS": stats_file, **extra}
            out, seconds, _ = _run(env)
            same = same and out == reference
            with open(stats_file) as f:
                st = json.load(f)
            requests = sum(v for v in st.get("requests", {}).values() if isinstance(v, int))
            print(f"{label:<26}{seconds:>6.2f}s{requests:>10,}{st['peak_live_bytes']:>12,}"
                  f"{st['peak_mapped_bytes']:>13,}{st['peak_mapped_over_peak_live']:>12.3f}")
    print()
    print("output identical to glibc's in every run:", "yes" if same else "NO")
    print("peak mapped/peak live: memory the allocator held at its peak per byte the program")
    print("held (1.0 = no overhead); the policy pools carry all requests when tcache is off.")
    return None
