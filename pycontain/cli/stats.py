"""``pycontain stats``: CPU, memory and process counts of running containers, sampled from
their cgroups every interval (one table or JSON array per sample, or one sample with
--no-stream)."""

from __future__ import annotations

import sys
import time

from pycontain import jsonfast as json
from pycontain.cli.containers import human, runtime_of
from pycontain.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple


def _stats_targets(rt: Any, names: List[str]) -> List[Any]:
    if not names:
        return [c for c in rt.containers() if c.status in ("running", "paused")]
    out = []
    for n in names:
        c = rt.get(n)
        if c.status not in ("running", "paused"):
            raise ContainerError(f"container {n} is not running")
        out.append(c)
    return out


def _stats_sample(cs: List[Any]) -> Dict[str, Tuple[float, Dict[str, Any]]]:
    out = {}
    for c in cs:
        try:
            out[c.name] = (time.monotonic(), c.cgroup().stats())
        except Exception:  # stopped or removed meanwhile
            pass
    return out


def cmd_stats(args: Any) -> int:
    """docker stats: CPU use over the interval (100% = one CPU), memory, processes."""
    if not args.interval > 0:
        raise ContainerError(f"invalid --interval {args.interval} (must be > 0)")
    rt = runtime_of(args)
    cs = _stats_targets(rt, args.name)
    prev = _stats_sample(cs)
    fmt = "{:<20} {:<12} {:>7} {:>21} {:>7} {:>6}"
    while True:
        time.sleep(args.interval)
        if not args.name:
            cs = _stats_targets(rt, [])
        cur = _stats_sample(cs)
        rows = []
        for c in cs:
            if c.name not in cur:
                continue
            t, st = cur[c.name]
            t0, st0 = prev.get(c.name, (t, st))
            used = (st.get("cpu_usage_usec") or 0) - (st0.get("cpu_usage_usec") or 0)
            cpu = 100.0 * used / ((t - t0) * 1e6) if t > t0 else 0.0
            mem, lim = st.get("memory_current"), st.get("memory_limit")
            rows.append({"name": c.name, "id": c.id, "status": c.status,
                         "cpu_percent": round(cpu, 1), "memory": mem, "memory_limit": lim,
                         "memory_percent": round(100.0 * mem / lim, 1) if mem and lim else None,
                         "pids": st.get("pids_current")})
        prev = cur
        if args.json:
            print(json.dumps(rows))
        else:
            print(fmt.format("NAME", "ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"))
            for r in rows:
                mem_pct = "-" if r["memory_percent"] is None else f"{r['memory_percent']:.1f}%"
                print(fmt.format(r["name"][:20], r["id"][:12], f"{r['cpu_percent']:.1f}%",
                                 f"{human(r['memory'])} / {human(r['memory_limit'])}",
                                 mem_pct, r["pids"] if r["pids"] is not None else "-"))
        sys.stdout.flush()
        if args.no_stream:
            return 0
        if not args.json:
            print()
