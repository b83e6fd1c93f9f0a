"""Turns a pytest-benchmark JSON file into Markdown tables (printed, or written into a docs
page between marker comments).

    python3 bench/report.py RESULTS.json [--write docs/pool.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from collections import defaultdict
from typing import Dict, List

MARK_BEGIN = "<!-- scaling-table:begin -->"
MARK_END = "<!-- scaling-table:end -->"


def scaling_table(benchmarks: List[dict]) -> str:
    """Policy scaling: ns per alloc+free pair by policy and free-block count, and the ratio of
    the largest count to the smallest."""
    rows: Dict[str, Dict[int, float]] = defaultdict(dict)
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "pairs_per_call" not in info:
            continue
        ns = b["stats"]["median"] * 1e9 / info["pairs_per_call"]
        rows[info["policy"]][info["free_blocks"]] = ns
    if not rows:
        return ""
    counts = sorted({n for r in rows.values() for n in r})
    head = "| policy | " + " | ".join(f"{n:,} free blocks" for n in counts)
    head += f" | ratio {counts[-1]:,} / {counts[0]:,} |"
    lines = [head, "|" + "---|" * (len(counts) + 2)]
    for policy in ("best", "worst", "first", "fifo"):
        if policy not in rows:
            continue
        r = rows[policy]
        cells = " | ".join(f"{r[n]:.0f} ns" if n in r else "-" for n in counts)
        ratio = r[counts[-1]] / r[counts[0]] if counts[-1] in r and counts[0] in r else 0
        lines.append(f"| {policy} | {cells} | {ratio:.2f}x |")
    return "\n".join(lines)


def machine_line(data: dict) -> str:
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw", platform.processor() or "unknown CPU")
    return (f"Measured {data.get('datetime', '?')[:10]} on {cpu}, "
            f"{mi.get('python_implementation', 'Python')} {mi.get('python_version', '')}, "
            f"medians of the timed rounds.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("json")
    ap.add_argument("--write", help="docs page whose scaling-table block is replaced")
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    table = scaling_table(data["benchmarks"])
    block = f"{MARK_BEGIN}\n{machine_line(data)}\n\n{table}\n{MARK_END}"
    if not args.write:
        print(block)
        return 0
    with open(args.write) as f:
        page = f.read()
    pattern = re.compile(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{args.write}: no {MARK_BEGIN} ... {MARK_END} block to replace")
    with open(args.write, "w") as f:
        f.write(pattern.sub(lambda _: block, page))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
