"""The ``pycontain`` command line's grammar: the argparse parser of every verb (built for one
verb only when the command line starts with it: building them all costs milliseconds), and a
fast path that parses a plain ``run`` without argparse at all."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional


class _Args:
    """The parsed command line (argparse.Namespace without importing argparse)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


def build_parser(only: Optional[str] = None) -> Any:
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
        r.add_argument("--net", default=None,
                       help="none (loopback only, the default), host, or a network's name")
        r.add_argument("--network", action="append", default=[], metavar="NAME",
                       help="join this network (repeatable; bridge networks: network create)")
        r.add_argument("-p", "--publish", action="append", default=[],
                       metavar="[IP:]HOST:CONTAINER[/udp]",
                       help="publish a container port on the host (default network if none)")
        r.add_argument("-P", "--publish-all", action="store_true",
                       help="publish every port the image exposes on a free host port")
        r.add_argument("--ip", help="the address on the first network")
        r.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                       help="another name the container answers to on its networks")
        r.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
        r.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
        r.add_argument("-w", "--workdir")
        r.add_argument("--read-only", action="store_true", help="mount the root read-only")
        r.add_argument("--storage-opt", action="append", default=[], metavar="size=SIZE",
                       help="size=SIZE caps the writable layer (on a tmpfs of that size)")
        r.add_argument("-d", "--detach", action="store_true", help="run in the background")
        r.add_argument("--rm", action="store_true", help="remove the container when it exits")
        r.add_argument("--init", action=argparse.BooleanOptionalAction, default=True,
                       help="run the command under a minimal init (default) or as PID 1")
        r.add_argument("--preload", nargs="?", const="best", metavar="POLICY",
                       help="preload libpyalloc.so with POLICY (best|worst|first|fifo)")
        r.add_argument("--pull", choices=("always", "missing", "never"),
                       help="pull the image first (default: missing when the reference names "
                            "a registry, else never)")
        r.add_argument("--tls-verify", default="true", choices=("true", "false"),
                       help="for --pull: false for a registry without a trusted certificate")
        r.add_argument("--limit-fallback", metavar="rlimit",
                       help="rootless without a cgroup: --memory and --pids as rlimits "
                            "(RLIMIT_AS per process, RLIMIT_NPROC)")
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

    if only in (None, "port"):
        po = sub.add_parser("port", parents=[common], help="a container's published ports")
        po.add_argument("name")

    if only in (None, "network"):
        from pycontain.cli import networks

        networks.add_subparsers(sub, [common], _Parser)

    if only in (None, "image", "commit", "pull", "push", "login", "logout"):
        from pycontain.cli import images

        images.add_subparsers(sub, [common], _Parser)
    return p


def strip_dashdash(cmd: List[str]) -> List[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


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
    "--storage-opt": ("storage_opt", True, True, None),
    "--detach": ("detach", False, False, True), "--rm": ("rm", False, False, True),
    "--init": ("init", False, False, True), "--no-init": ("init", False, False, False),
    "--root": ("root", True, False, None), "--storage": ("storage", True, False, None),
    "--limit-fallback": ("limit_fallback", True, False, None),
    "--network": ("network", True, True, None), "-p": ("publish", True, True, None),
    "--publish": ("publish", True, True, None), "--ip": ("ip", True, False, None),
    "--network-alias": ("network_alias", True, True, None),
    "--pull": ("pull", True, False, None), "--tls-verify": ("tls_verify", True, False, None),
    "-P": ("publish_all", False, False, True), "--publish-all": ("publish_all", False, False,
                                                                 True),
}  # fmt: skip
_RUN_DEFAULTS = {"name": None, "image": "host", "rootfs": None, "memory": None,
                 "memory_swap": None, "pids": None, "cpus": None, "hostname": None,
                 "net": None, "network": [], "publish": [], "ip": None, "network_alias": [],
                 "publish_all": False, "pull": None, "tls_verify": "true",
                 "env": [], "volume": [], "workdir": None, "read_only": False,
                 "storage_opt": [], "detach": False, "rm": False, "init": True, "preload": None,
                 "limit_fallback": None}


def fast_run_args(argv: List[str]) -> Optional[Any]:
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
