"""The `pyalloc` command (also `python -m pyalloc`).

    pyalloc lib                                  path of libpyalloc.so
    pyalloc run [--policy P] [--stats] [--stats-file F] [--no-tcache] [--trace F] -- CMD...
    pyalloc trace replay FILE [--policy all|best|worst|first|fifo] [--json]
    pyalloc trace info FILE
    pyalloc demo [...]                           the project tour (pyalloc.demo)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

POLICIES = ("best", "worst", "first", "fifo")


def _cmd_lib(args: argparse.Namespace) -> int:
    from pyalloc.preload import LibraryNotFound, library_path

    try:
        print(library_path())
    except LibraryNotFound as exc:
        print(f"pyalloc: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pyalloc.preload import LibraryNotFound, env_for

    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("pyalloc run: no command given (pyalloc run [options] -- CMD ...)", file=sys.stderr)
        return 2
    stats = args.stats_file if args.stats_file else (True if args.stats else None)
    try:
        env = env_for(policy=args.policy, stats=stats,
                      tcache=False if args.no_tcache else None, trace=args.trace)
    except LibraryNotFound as exc:
        print(f"pyalloc: {exc}", file=sys.stderr)
        return 1
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as exc:
        print(f"pyalloc run: cannot run {cmd[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - exec does not return


def _cmd_trace_replay(args: argparse.Namespace) -> int:
    from pyalloc import trace

    policies = POLICIES if args.policy == "all" else (args.policy,)
    try:
        results = trace.replay_all(args.file, policies)
    except (OSError, trace.TraceError) as exc:
        print(f"pyalloc trace replay: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(trace.format_table(results))
    return 0


def _cmd_trace_info(args: argparse.Namespace) -> int:
    from pyalloc import trace

    try:
        info = trace.summary(args.file)
    except (OSError, trace.TraceError) as exc:
        print(f"pyalloc trace info: {exc}", file=sys.stderr)
        return 1
    for k, v in info.items():
        print(f"{k:<12} {v}")
    return 0


def _cmd_demo(argv: Sequence[str]) -> int:
    import importlib

    demo = importlib.import_module("pyalloc.demo")
    rc = demo.main(list(argv))
    return int(rc or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyalloc", description="pyalloc: a pooling allocator "
                                "usable from Python and, as libpyalloc.so, by any program.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    s = sub.add_parser("lib", help="print the absolute path of libpyalloc.so")
    s.set_defaults(func=_cmd_lib)
    s = sub.add_parser("run", help="run a command with libpyalloc.so preloaded",
                       usage="pyalloc run [--policy P] [--stats] [--stats-file F] [--no-tcache]"
                             " [--trace F] -- CMD ...")
    s.add_argument("--policy", choices=POLICIES, help="placement policy (default best)")
    s.add_argument("--stats", action="store_true", help="print statistics on stderr at exit")
    s.add_argument("--stats-file", metavar="F",
                   help="write statistics as JSON to F at exit (%%p = pid)")
    s.add_argument("--no-tcache", action="store_true",
                   help="no thread caches: every request goes to the policy pools")
    s.add_argument("--trace", metavar="F", help="record an allocation trace in F (%%p = pid)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    s.set_defaults(func=_cmd_run)
    t = sub.add_parser("trace", help="work with allocation traces")
    tsub = t.add_subparsers(dest="trace_cmd", metavar="SUBCOMMAND")
    r = tsub.add_parser("replay", help="replay a trace under the policies, in C")
    r.add_argument("file")
    r.add_argument("--policy", default="all", choices=("all", *POLICIES))
    r.add_argument("--json", action="store_true", help="JSON output")
    r.set_defaults(func=_cmd_trace_replay)
    i = tsub.add_parser("info", help="count the records of a trace")
    i.add_argument("file")
    i.set_defaults(func=_cmd_trace_info)
    t.set_defaults(func=lambda a: (t.print_help(), 2)[1])
    sub.add_parser("demo", help="a tour of the project (pyalloc.demo)", add_help=False)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    # `demo` hands its arguments over untouched, so pyalloc.demo can parse its own options.
    if args_list and args_list[0] == "demo":
        return _cmd_demo(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
