"""The docker-like ``pycontain`` command (a thin layer over pycontain.container).

Runtime errors print one line on stderr and exit with 125; ``run`` in the foreground exits with
the container's exit code (128+signal when it was killed). Imports are lazy: ``run`` must start
quickly.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

NEEDS_ROOT = {"run", "exec", "kill", "stop", "rm", "pause", "unpause", "update"}


class _Args:
    """The parsed command line (argparse.Namespace without importing argparse)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def _parser(only: Optional[str] = None) -> Any:
    """The full parser, or (for speed: argparse construction is costly) only verb ``only``."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # usage errors: one line, exit 125 like docker
            sys.stderr.write(f"pycontain: error: {message} (see '{self.prog} --help')\n")
            sys.exit(125)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS,
                        help="state root (default $PYCONTAIN_ROOT or /run/pycontain)")
    common.add_argument("--storage", default=argparse.SUPPRESS,
                        help="storage root (default $PYCONTAIN_STORAGE or /var/lib/pycontain)")
    p = _Parser(prog="pycontain", description="A container runtime in Python.",
                parents=[common])
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    if only in (None, "run"):
        r = sub.add_parser("run", parents=[common], help="run a command in a new container")
        r.add_argument("--name", help="container name (default: the id's first 12 hex digits)")
        src = r.add_mutually_exclusive_group()
        src.add_argument("--image", default="host", help="image (default: host)")
        src.add_argument("--rootfs", help="use this directory as the root filesystem")
        r.add_argument("-m", "--memory", help="memory limit, e.g. 64M (swap off)")
        r.add_argument("--memory-swap", help="memory+swap limit (-1: unlimited swap)")
        r.add_argument("--pids", type=str, help="maximum number of processes")
        r.add_argument("--cpus", help="CPU quota in CPUs, e.g. 0.5")
        r.add_argument("--hostname", help="hostname (default: the container name)")
        r.add_argument("--net", default="none", help="none (loopback only, default) or host")
        r.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
        r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
        r.add_argument("-w", "--workdir")
        r.add_argument("--read-only", action="store_true", help="mount the root read-only")
        r.add_argument("-d", "--detach", action="store_true", help="run in the background")
        r.add_argument("--rm", action="store_true", help="remove the container when it exits")
        r.add_argument("--init", action=argparse.BooleanOptionalAction, default=True,
                       help="run the command under a minimal init (default) or as PID 1")
        r.add_argument("--preload", nargs="?", const="best", metavar="POLICY",
                       help="preload libpyalloc.so with POLICY (best|worst|first|fifo)")
        r.add_argument("command", nargs=argparse.REMAINDER)

    if only in (None, "exec"):
        e = sub.add_parser("exec", parents=[common], help="run a command in a running container")
        e.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
        e.add_argument("-w", "--workdir")
        e.add_argument("name")
        e.add_argument("command", nargs=argparse.REMAINDER)

    if only in (None, "ps"):
        ps = sub.add_parser("ps", parents=[common], help="list containers")
        ps.add_argument("-a", "--all", action="store_true", help="include stopped containers")
        ps.add_argument("--json", action="store_true")
        ps.add_argument("-q", "--quiet", action="store_true", help="names only")

    if only in (None, "logs"):
        lg = sub.add_parser("logs", parents=[common], help="print a detached container's output")
        lg.add_argument("name")

    if only in (None, "kill"):
        k = sub.add_parser("kill", parents=[common], help="send a signal (default KILL)")
        k.add_argument("name")
        k.add_argument("signal", nargs="?", default="KILL")
        k.add_argument("-s", "--signal", dest="signal_opt")

    if only in (None, "stop"):
        st = sub.add_parser("stop", parents=[common], help="SIGTERM, then SIGKILL after a timeout")
        st.add_argument("-t", "--time", type=float, default=10.0)
        st.add_argument("name", nargs="+")

    if only in (None, "rm"):
        rm = sub.add_parser("rm", parents=[common], help="remove containers")
        rm.add_argument("-f", "--force", action="store_true", help="kill running containers first")
        rm.add_argument("name", nargs="+")

    if only in (None, "pause"):
        pa = sub.add_parser("pause", parents=[common],
                            help="freeze every process of containers (cgroup freezer)")
        pa.add_argument("name", nargs="+")

    if only in (None, "unpause"):
        up = sub.add_parser("unpause", parents=[common], help="resume paused containers")
        up.add_argument("name", nargs="+")

    if only in (None, "update"):
        u = sub.add_parser("update", parents=[common],
                           help="change the limits of running containers")
        u.add_argument("-m", "--memory", help="memory limit, e.g. 256M (-1: unlimited)")
        u.add_argument("--memory-swap", help="memory+swap limit (-1: unlimited swap)")
        u.add_argument("--pids", help="maximum number of processes (-1: unlimited)")
        u.add_argument("--cpus", help="CPU quota in CPUs (0: unlimited)")
        u.add_argument("--cpu-shares", help="relative CPU weight (v1 shares, 2-262144)")
        u.add_argument("--cpuset-cpus", help="CPUs the container may use, e.g. 0-1")
        u.add_argument("--cpuset-mems", help="memory nodes the container may use")
        u.add_argument("name", nargs="+")

    if only in (None, "stats"):
        sa = sub.add_parser("stats", parents=[common],
                            help="live CPU, memory and process counts of running containers")
        sa.add_argument("--no-stream", action="store_true", help="print one sample and exit")
        sa.add_argument("--json", action="store_true", help="a JSON array per sample")
        sa.add_argument("-i", "--interval", type=float, default=1.0,
                        help="seconds between samples (default 1)")
        sa.add_argument("name", nargs="*", help="containers (default: every running one)")

    if only in (None, "inspect"):
        ins = sub.add_parser("inspect", parents=[common], help="JSON state of a container")
        ins.add_argument("name", nargs="+")

    if only in (None, "image", "commit"):
        from pycontain import image_cli

        image_cli.add_subparsers(sub, [common], _Parser)
    return p


def _strip_dashdash(cmd: List[str]) -> List[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


def _runtime(args: Any) -> Any:
    from pycontain.container import Runtime

    return Runtime(getattr(args, "root", None), getattr(args, "storage", None))


def _human(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def cmd_run(args: Any) -> int:
    rt = _runtime(args)
    command = _strip_dashdash(args.command)
    c = rt.create(
        command, args.image, rootfs=args.rootfs, name=args.name, memory=args.memory,
        memory_swap=args.memory_swap, pids=args.pids, cpus=args.cpus, hostname=args.hostname,
        net=args.net, env=args.env, volumes=args.volume, workdir=args.workdir,
        read_only=args.read_only, init=args.init, preload=args.preload, detach=args.detach,
        remove=args.rm)
    if args.detach:
        c.start()
        print(c.id)
        return 0
    sys.stdout.flush()
    res = c.run(forward_signals=True)
    if res.oom_killed:
        limit = _human(c.state(refresh=False).get("limits", {}).get("memory")) \
            if not args.rm else args.memory
        sys.stderr.write(f"pycontain: container {c.name} was killed by the OOM killer "
                         f"(memory limit {limit})\n")
    return int(res.exit_code)


def cmd_exec(args: Any) -> int:
    c = _runtime(args).get(args.name)
    res = c.exec(_strip_dashdash(args.command), env=args.env, workdir=args.workdir)
    return int(res.exit_code)


def cmd_ps(args: Any) -> int:
    import json

    rows = []
    for c in _runtime(args).containers():
        try:
            info = c.inspect()
        except Exception:  # removed meanwhile
            continue
        if not args.all and info["state"] not in ("running", "created", "paused"):
            continue
        rows.append(info)
    if args.json:
        keys = ("name", "id", "image", "rootfs", "state", "pid", "exit_code", "oom_killed",
                "command", "created", "limits")
        print(json.dumps([{k: r.get(k) for k in keys} for r in rows], indent=2))
        return 0
    if args.quiet:
        for r in rows:
            print(r["name"])
        return 0
    fmt = "{:<20} {:<12} {:<10} {:<16} {:>7}  {}"
    print(fmt.format("NAME", "ID", "IMAGE", "STATUS", "PID", "COMMAND"))
    for r in rows:
        state = r["state"]
        if state == "stopped":
            code = r.get("exit_code")
            state = f"exited ({'?' if code is None else code})"
            if r.get("oom_killed"):
                state += " oom"
        image = r.get("image") or "rootfs"
        print(fmt.format(r["name"][:20], (r.get("id") or "")[:12], image[:10], state,
                         r.get("pid") or "-", " ".join(r.get("command") or [])[:60]))
    return 0


def cmd_logs(args: Any) -> int:
    data = _runtime(args).get(args.name).logs()
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_kill(args: Any) -> int:
    _runtime(args).get(args.name).kill(args.signal_opt or args.signal)
    return 0


def cmd_stop(args: Any) -> int:
    return _each(args, lambda c: c.stop(timeout=args.time))


def cmd_rm(args: Any) -> int:
    return _each(args, lambda c: c.remove(force=args.force))


def _each(args: Any, action: Callable[[Any], None]) -> int:
    """Applies action to each named container, printing each name as docker does."""
    rt = _runtime(args)
    for name in args.name:
        action(rt.get(name))
        print(name)
    return 0


def cmd_pause(args: Any) -> int:
    return _each(args, lambda c: c.pause())


def cmd_unpause(args: Any) -> int:
    return _each(args, lambda c: c.resume())


def cmd_update(args: Any) -> int:
    return _each(args, lambda c: c.update(
        args.memory, args.pids, args.cpus, memory_swap=args.memory_swap,
        cpu_shares=args.cpu_shares, cpuset_cpus=args.cpuset_cpus,
        cpuset_mems=args.cpuset_mems))


def _stats_targets(rt: Any, names: List[str]) -> List[Any]:
    from pycontain.container import ContainerError

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
    import time

    out = {}
    for c in cs:
        try:
            out[c.name] = (time.monotonic(), c.cgroup().stats())
        except Exception:  # stopped or removed meanwhile
            pass
    return out


def cmd_stats(args: Any) -> int:
    """docker stats: CPU use over the interval (100% = one CPU), memory, processes."""
    import json
    import time

    from pycontain.container import ContainerError

    if not args.interval > 0:
        raise ContainerError(f"invalid --interval {args.interval} (must be > 0)")
    rt = _runtime(args)
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
                                 f"{_human(r['memory'])} / {_human(r['memory_limit'])}",
                                 mem_pct, r["pids"] if r["pids"] is not None else "-"))
        sys.stdout.flush()
        if args.no_stream:
            return 0
        if not args.json:
            print()


def cmd_inspect(args: Any) -> int:
    import json

    rt = _runtime(args)
    out = [rt.get(n).inspect() for n in args.name]
    print(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
    return 0


def cmd_image(args: Any) -> int:
    from pycontain import image_cli
    from pycontain.container import ContainerError
    from pycontain.images import ImageError

    rt = _runtime(args)
    try:
        if args.verb == "commit":
            return image_cli.cmd_commit(args, rt.storage, rt.root)
        return image_cli.cmd_image(args, rt.storage, rt.root)
    except ImageError as e:
        raise ContainerError(str(e)) from None


COMMANDS = {
    "run": cmd_run, "exec": cmd_exec, "ps": cmd_ps, "logs": cmd_logs, "kill": cmd_kill,
    "stop": cmd_stop, "rm": cmd_rm, "inspect": cmd_inspect, "image": cmd_image, "commit": cmd_image,
    "pause": cmd_pause, "unpause": cmd_unpause, "update": cmd_update, "stats": cmd_stats,
}


# `run` options for the fast path: option -> (dest, takes a value, append, constant).
_RUN_OPTS = {
    "--name": ("name", True, False, None), "--image": ("image", True, False, None),
    "--rootfs": ("rootfs", True, False, None), "-m": ("memory", True, False, None),
    "--memory": ("memory", True, False, None), "--memory-swap": ("memory_swap", True, False, None),
    "--pids": ("pids", True, False, None), "--cpus": ("cpus", True, False, None),
    "--hostname": ("hostname", True, False, None), "--net": ("net", True, False, None),
    "-e": ("env", True, True, None), "--env": ("env", True, True, None),
    "-v": ("volume", True, True, None), "--volume": ("volume", True, True, None),
    "-w": ("workdir", True, False, None), "--workdir": ("workdir", True, False, None),
    "--read-only": ("read_only", False, False, True), "-d": ("detach", False, False, True),
    "--detach": ("detach", False, False, True), "--rm": ("rm", False, False, True),
    "--init": ("init", False, False, True), "--no-init": ("init", False, False, False),
    "--root": ("root", True, False, None), "--storage": ("storage", True, False, None),
}  # fmt: skip
_RUN_DEFAULTS = {"name": None, "image": "host", "rootfs": None, "memory": None,
                 "memory_swap": None, "pids": None, "cpus": None, "hostname": None,
                 "net": "none", "env": [], "volume": [], "workdir": None, "read_only": False,
                 "detach": False, "rm": False, "init": True, "preload": None}


def _fast_run_args(argv: List[str]) -> Optional[Any]:
    """Parse a plain ``run`` command line without building argparse parsers (a few ms that
    matter for container start latency). Returns None for anything unusual (help, errors,
    --preload's optional value, ...): argparse then handles it and reports errors."""
    if not argv or argv[0] != "run":
        return None
    values: Dict[str, Any] = {k: (list(v) if isinstance(v, list) else v)
                              for k, v in _RUN_DEFAULTS.items()}
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            i += 1
            break
        if not tok.startswith("-"):
            break
        opt, eq, inline = tok.partition("=")
        spec = _RUN_OPTS.get(opt)
        if spec is None:
            return None
        dest, takes_value, append, const = spec
        if takes_value:
            if eq:
                value = inline
            else:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            if append:
                values[dest].append(value)
            else:
                values[dest] = value
        else:
            if eq:
                return None
            values[dest] = const
        i += 1
    if values["image"] != "host" and values["rootfs"] is not None:
        return None  # mutually exclusive: let argparse say so
    values["command"] = argv[i:]
    values["verb"] = "run"
    return _Args(**values)


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _fast_run_args(argv)
    if args is None:
        verb = next((a for a in argv if not a.startswith("-")), None)
        # Options before the verb take a value (--root X): only a verb-first command line is
        # safe to parse with the single-verb parser.
        only = verb if argv and argv[0] == verb and verb in COMMANDS else None
        args = _parser(only).parse_args(argv)
    try:
        if args.verb in NEEDS_ROOT and os.geteuid() != 0:
            raise _error("pycontain must run as root (rootless containers are not supported "
                         "yet)")
        return COMMANDS[args.verb](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        from pycontain.container import ContainerError

        if isinstance(e, ContainerError):
            sys.stderr.write(f"pycontain: error: {e}\n")
            return e.exit_code
        if isinstance(e, OSError):
            sys.stderr.write(f"pycontain: error: {e}\n")
            return 125
        raise


def run_main() -> None:
    """Entry point of ``python3 -m pycontain``: main(), then a fast exit (the interpreter's
    teardown is a few ms of nothing useful for a short-lived command)."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code & 0xFF if code >= 0 else 1)


def _error(msg: str) -> Exception:
    from pycontain.container import ContainerError

    return ContainerError(msg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
