"""Turns pytest-benchmark JSON into docs/BENCHMARKS.md: the machine, the versions and the
exact command at the top, then one table per benchmark group (medians, and ratios against the
group's baseline measured in the same run), the policy scaling table, and PNG plots when
matplotlib is installed.

    python3 bench/report.py RESULTS.json [--out docs/BENCHMARKS.md] [--command "make bench"]
    python3 bench/report.py RESULTS.json --scaling-into docs/pool.md   # only the scaling table

Conventions the suites follow so that this script needs no knowledge of them:
  extra_info["impl"]      the implementation measured (glibc, jemalloc, runc, bytearray ...)
  extra_info["baseline"]  the impl the group's ratios are taken against (default: the fastest)
  extra_info["peak_rss_kb"], any other numeric extra_info: shown as columns (medians of runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
from collections import OrderedDict, defaultdict
from typing import Any, Dict, List, Optional

MARK_BEGIN = "<!-- scaling-table:begin -->"
MARK_END = "<!-- scaling-table:end -->"
HIDDEN_INFO = {"impl", "baseline", "policy", "free_blocks", "pairs_per_call", "size", "batch"}


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def scaling_rows(benchmarks: List[dict]) -> Dict[str, Dict[int, float]]:
    rows: Dict[str, Dict[int, float]] = defaultdict(dict)
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "pairs_per_call" in info:
            ns = b["stats"]["median"] * 1e9 / info["pairs_per_call"]
            rows[info["policy"]][info["free_blocks"]] = ns
    return rows


def scaling_table(benchmarks: List[dict]) -> str:
    """ns per alloc+free pair by policy and free-block count, and the ratio of the largest
    count to the smallest."""
    rows = scaling_rows(benchmarks)
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


def group_tables(benchmarks: List[dict]) -> OrderedDict[str, str]:
    groups: OrderedDict[str, List[dict]] = OrderedDict()
    for b in benchmarks:
        if "pairs_per_call" in b.get("extra_info", {}) or b["name"].startswith("test_zz_"):
            continue  # the scaling group has its own table; test_zz_* only print summaries
        groups.setdefault(b.get("group") or b["name"], []).append(b)
    out: OrderedDict[str, str] = OrderedDict()
    for name, items in groups.items():
        out[name] = one_group(items)
    return out


def one_group(items: List[dict]) -> str:
    def impl(b: dict) -> str:
        return str(b.get("extra_info", {}).get("impl") or b["param"] or b["name"])

    base_name = next((b["extra_info"]["baseline"] for b in items
                      if b.get("extra_info", {}).get("baseline")), None)
    base = next((b for b in items if impl(b) == base_name), None)
    if base is None:
        base = min(items, key=lambda b: b["stats"]["median"])
        base_name = impl(base)
    base_median = base["stats"]["median"]
    extra_cols = sorted({k for b in items for k, v in b.get("extra_info", {}).items()
                         if k not in HIDDEN_INFO and isinstance(v, (int, float))})
    head = f"| implementation | median | IQR | ratio to {base_name} |"
    head += "".join(f" {c} |" for c in extra_cols)
    lines = [head, "|" + "---|" * (4 + len(extra_cols))]
    for b in sorted(items, key=lambda b: b["stats"]["median"]):
        st = b["stats"]
        row = (f"| {impl(b)} | {fmt_time(st['median'])} | {fmt_time(st['iqr'])} | "
               f"{st['median'] / base_median:.2f}x |")
        for c in extra_cols:
            v = b.get("extra_info", {}).get(c)
            if isinstance(v, float) and not v.is_integer():
                row += f" {v:,.3g} |"
            else:
                row += f" {v:,.0f} |" if isinstance(v, (int, float)) else " - |"
        lines.append(row)
    return "\n".join(lines)


def versions() -> str:
    parts = [f"Python {platform.python_version()}", f"kernel {platform.release()}"]
    try:
        libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True, check=False)
        parts.append(libc.stdout.splitlines()[0].split()[-1].join(["glibc ", ""]))
    except (OSError, IndexError):
        pass
    for pkg in ("libjemalloc2", "libmimalloc2.0", "libtcmalloc-minimal4", "runc"):
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                               capture_output=True, text=True, check=False)
            if r.returncode == 0 and r.stdout:
                parts.append(f"{pkg} {r.stdout}")
        except OSError:
            break
    return ", ".join(parts)


def machine_line(data: dict) -> str:
    mi = data.get("machine_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw") or platform.processor() or "unknown CPU"
    cores = os.cpu_count()
    return (f"Measured {data.get('datetime', '?')[:10]} on {cpu} ({cores} cores), "
            f"{mi.get('python_implementation', 'Python')} {mi.get('python_version', '')}; "
            "medians of the timed rounds.")


def plots(data: dict, outdir: str) -> List[str]:
    """PNG plots (matplotlib is optional): returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    rows = scaling_rows(data["benchmarks"])
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for policy, r in rows.items():
            xs = sorted(r)
            ax.plot(xs, [r[x] for x in xs], marker="o", label=policy)
        ax.set_xscale("log")
        ax.set_xlabel("free blocks in the pool")
        ax.set_ylabel("ns per alloc+free pair (median)")
        ax.set_title("Policy scaling")
        ax.legend()
        ax.grid(alpha=0.3)
        path = os.path.join(outdir, "scaling.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    peers = peer_ratios(data["benchmarks"])
    if peers:
        workloads = list(peers)
        impls = [i for i in ("pyalloc", "jemalloc", "mimalloc", "tcmalloc")
                 if any(i in peers[w] for w in workloads)]
        fig, ax = plt.subplots(figsize=(7, 3.8))
        width = 0.8 / max(len(impls), 1)
        for k, impl in enumerate(impls):
            xs = [i + k * width for i in range(len(workloads))]
            ax.bar(xs, [peers[w].get(impl, 0) for w in workloads], width, label=impl)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(workloads))])
        ax.set_xticklabels(workloads)
        ax.set_ylabel("wall time / glibc's (median)")
        ax.set_title("Preloaded allocators against glibc (lower is faster)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        path = os.path.join(outdir, "peers.png")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def peer_ratios(benchmarks: List[dict]) -> Dict[str, Dict[str, float]]:
    """{workload: {allocator: median time / glibc's median}} from the preload groups."""
    med: Dict[str, Dict[str, float]] = defaultdict(dict)
    for b in benchmarks:
        group = b.get("group") or ""
        if group.startswith("preload: "):
            med[group[len("preload: "):]][b["extra_info"].get("impl", "")] = b["stats"]["median"]
    return {w: {i: v / d["glibc"] for i, v in d.items() if i != "glibc"}
            for w, d in med.items() if d.get("glibc")}


def render(data: dict, command: str, outdir: str) -> str:
    out = ["# Benchmarks", "",
           "Generated by `bench/report.py` from one pytest-benchmark run; every ratio compares",
           "two implementations measured side by side in that run.", "",
           f"- Command: `{command}`", f"- Machine: {machine_line(data)}",
           f"- Versions: {versions()}", ""]
    table = scaling_table(data["benchmarks"])
    if table:
        out += ["## Policy scaling (one alloc+free pair in C)", "", table, ""]
    for path in plots(data, outdir):
        out += [f"![{os.path.basename(path)}]({os.path.basename(path)})", ""]
    for name, tbl in group_tables(data["benchmarks"]).items():
        out += [f"## {name}", "", tbl, ""]
    frag = os.path.join(outdir, "fragmentation.json")
    if os.path.exists(frag):
        out += fragmentation_section(frag)
    suite = os.path.join(outdir, "mbench.md")
    if os.path.exists(suite):
        out += suite_section(suite)
    return "\n".join(out)


def suite_section(path: str) -> List[str]:
    """The summary of the last mimalloc-bench run (`make bench-suite`, bench/mbench.py), whose
    full report is mbench.md next to this page."""
    with open(path) as f:
        lines = f.read().splitlines()
    out = ["## mimalloc-bench (the public allocator suite)", "",
           "From the last `make bench-suite MIMALLOC_BENCH=...` run (`bench/mbench.py`); all",
           "tables, per program, and the command: [mbench.md](mbench.md); the security",
           "programs: [mbench-security.md](mbench-security.md).", ""]
    keep = False
    for ln in lines:
        if ln.startswith("## "):
            keep = ln.startswith("## Summary")
            continue
        if keep:
            out.append(ln)
    out.append("")
    return out


def fragmentation_section(path: str) -> List[str]:
    """A summary of bench/fragmentation.py's results (details in fragmentation.md)."""
    with open(path) as f:
        data = json.load(f)
    policies = ("best", "worst", "first", "fifo")
    out = ["## Fragmentation study (peak heap / peak live, Johnstone & Wilson)", "",
           "Traces of real programs replayed under each policy; details, fragmentation over",
           "time and the comparison with the literature: [fragmentation.md](fragmentation.md)",
           "(`python3 bench/fragmentation.py`).", "",
           "| program | " + " | ".join(policies) + " |", "|---" * (len(policies) + 1) + "|"]
    for name, d in data.items():
        cells = " | ".join(f"{d['policies'][p]['ratio']:.3f}" for p in policies)
        out.append(f"| {name} | {cells} |")
    out.append("")
    return out


def replace_block(page: str, block: str, begin: str, end: str) -> Optional[str]:
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(page):
        return None
    return pattern.sub(lambda _: block, page)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="pytest-benchmark JSON -> Markdown")
    ap.add_argument("json")
    ap.add_argument("--out", help="write the full report here (default: print it)")
    ap.add_argument("--command", default="make bench", help="command printed at the top")
    ap.add_argument("--scaling-into", help="docs page whose scaling-table block is replaced")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        data: Dict[str, Any] = json.load(f)
    if args.scaling_into:
        block = f"{MARK_BEGIN}\n{machine_line(data)}\n\n{scaling_table(data['benchmarks'])}\n"
        block += MARK_END
        with open(args.scaling_into) as f:
            page = replace_block(f.read(), block, MARK_BEGIN, MARK_END)
        if page is None:
            raise SystemExit(f"{args.scaling_into}: no {MARK_BEGIN} block to replace")
        with open(args.scaling_into, "w") as f:
            f.write(page)
        return 0
    outdir = os.path.dirname(os.path.abspath(args.out)) if args.out else "."
    text = render(data, args.command, outdir)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
