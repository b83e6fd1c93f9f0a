"""The container part of `make demo`: a container with limits and the allocator inside, and an
out-of-memory kill. Private state and storage roots in a temporary directory; nothing is left."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Dict, Optional

WORKLOAD = r"""
import os, socket
d = {i: str(i) * 8 for i in range(200000)}
print(f"hostname={socket.gethostname()} pid={os.getpid()} "
      f"processes={len([p for p in os.listdir('/proc') if p.isdigit()])} dict={len(d)}")
"""
HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"


def _allocator_summary(alloc: Optional[Dict[str, Any]]) -> str:
    if not alloc:
        return "no allocator statistics"
    totals = alloc.get("totals") or {}
    keys = [k for k in ("mallocs", "frees", "reallocs", "requests", "bytes_requested",
                        "peak_live_bytes", "peak_mapped_bytes") if k in totals]
    keys = keys or sorted(totals)[:6]
    parts = [f"{k}={int(totals[k]):,}" for k in keys]
    return f"policy={alloc.get('policy')} processes={alloc.get('processes')} " + " ".join(parts)


def run(section: Callable[[str], None]) -> Optional[str]:
    """Prints the section; returns a reason string instead when it cannot run here."""
    if os.geteuid() != 0:
        return "containers need root (namespaces, mounts, cgroups)"
    import pycontain

    preload: Optional[str] = "best"
    try:
        from pyalloc import preload as pl

        if not os.path.isfile(str(pl.library_path())):
            preload = None
    except Exception:
        preload = None

    section("3. A container with limits and the allocator inside (pycontain)")
    with tempfile.TemporaryDirectory(prefix="pycontain-demo-") as tmp:
        roots = {"root": os.path.join(tmp, "state"), "storage": os.path.join(tmp, "storage")}
        opts: Dict[str, Any] = {"memory": "64M", "pids": 64, "cpus": 0.5, "hostname": "demo"}
        if preload:
            opts["preload"] = preload
        flags = " ".join(f"--{k} {v}" for k, v in opts.items())
        print(f"$ pycontain run --rm {flags} -- python3 -c <build a 200k-entry dict>")
        res = pycontain.run(["python3", "-c", WORKLOAD], capture_output=True, **roots, **opts)
        print("  " + (res.stdout or b"").decode().strip())
        stats = res.stats
        print(f"  exit code {res.exit_code}; cgroup memory peak "
              f"{stats.get('memory_peak', 0) / 2**20:.1f} MiB of {opts['memory']}; "
              f"cpu {stats.get('cpu_usage_usec', 0) / 1000:.0f} ms")
        if preload:
            print(f"  allocator inside: {_allocator_summary(res.allocator)}")
        else:
            print("  (libpyalloc.so is not built: ran without --preload)")
        print()
        print("$ pycontain run --rm --memory 32M -- python3 -c <allocate until killed>")
        hog = pycontain.run(["python3", "-c", HOG], memory="32M", capture_output=True, **roots)
        print(f"  exit code {hog.exit_code}, oom_killed={hog.oom_killed} "
              "(the kernel's OOM killer stopped it at the cgroup limit)")
    return None
