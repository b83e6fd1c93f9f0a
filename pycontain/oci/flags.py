"""runc's command-line conventions (urfave/cli): ``-flag`` or ``--flag``, ``--flag=value``,
booleans as ``--flag`` or ``--flag=false``, flags before the positional arguments; the flag
tables of every pycontain-oci command, and how many positional arguments each takes."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple

# flag name -> (destination, takes a value, repeatable)
GLOBAL = {
    "root": ("root", True, False), "log": ("log", True, False),
    "log-format": ("log_format", True, False), "systemd-cgroup": ("systemd_cgroup", False, False),
    "debug": ("debug", False, False), "criu": ("criu", True, False),
    "rootless": ("rootless", True, False), "help": ("help", False, False),
    "h": ("help", False, False), "version": ("version", False, False),
    "v": ("version", False, False),
}  # fmt: skip
CREATE = {
    "bundle": ("bundle", True, False), "b": ("bundle", True, False),
    "pid-file": ("pid_file", True, False), "console-socket": ("console_socket", True, False),
    "preserve-fds": ("preserve_fds", True, False), "no-pivot": ("no_pivot", False, False),
    "no-new-keyring": ("no_new_keyring", False, False),
    "pidfd-socket": ("pidfd_socket", True, False),
}  # fmt: skip
COMMANDS: Dict[str, Dict[str, Tuple[str, bool, bool]]] = {
    "create": CREATE,
    "run": {**CREATE, "detach": ("detach", False, False), "d": ("detach", False, False),
            "keep": ("keep", False, False)},
    "start": {},
    "state": {},
    "kill": {"all": ("all", False, False), "a": ("all", False, False)},
    "delete": {"force": ("force", False, False), "f": ("force", False, False)},
    "exec": {
        "process": ("process", True, False), "p": ("process", True, False),
        "tty": ("tty", False, False), "t": ("tty", False, False),
        "detach": ("detach", False, False), "d": ("detach", False, False),
        "pid-file": ("pid_file", True, False), "console-socket": ("console_socket", True, False),
        "cwd": ("cwd", True, False), "env": ("env", True, True), "e": ("env", True, True),
        "user": ("user", True, False), "u": ("user", True, False),
        "additional-gids": ("gids", True, True), "g": ("gids", True, True),
        "cap": ("cap", True, True), "c": ("cap", True, True),
        "no-new-privs": ("no_new_privs", False, False),
        "preserve-fds": ("preserve_fds", True, False),
        "process-label": ("process_label", True, False), "apparmor": ("apparmor", True, False),
        "cgroup": ("cgroup", True, True), "ignore-paused": ("ignore_paused", False, False),
        "no-subreaper": ("no_subreaper", False, False),
        "pidfd-socket": ("pidfd_socket", True, False),
    },
    "ps": {"format": ("format", True, False), "f": ("format", True, False)},
    "list": {"format": ("format", True, False), "f": ("format", True, False),
             "quiet": ("quiet", False, False), "q": ("quiet", False, False)},
    "spec": {"bundle": ("bundle", True, False), "b": ("bundle", True, False),
             "rootless": ("rootless", False, False)},
    "features": {},
    "pause": {},
    "resume": {},
    "events": {"stats": ("stats", False, False), "interval": ("interval", True, False)},
    "update": {
        "resources": ("resources", True, False), "r": ("resources", True, False),
        "memory": ("memory", True, False), "memory-swap": ("memory_swap", True, False),
        "memory-reservation": ("memory_reservation", True, False),
        "kernel-memory": ("kernel_memory", True, False),
        "kernel-memory-tcp": ("kernel_memory_tcp", True, False),
        "pids-limit": ("pids_limit", True, False), "cpu-quota": ("cpu_quota", True, False),
        "cpu-period": ("cpu_period", True, False), "cpu-share": ("cpu_share", True, False),
        "cpu-rt-period": ("cpu_rt_period", True, False),
        "cpu-rt-runtime": ("cpu_rt_runtime", True, False),
        "cpuset-cpus": ("cpuset_cpus", True, False), "cpuset-mems": ("cpuset_mems", True, False),
        "blkio-weight": ("blkio_weight", True, False),
        "l3-cache-schema": ("l3_cache_schema", True, False),
        "mem-bw-schema": ("mem_bw_schema", True, False),
    },
}  # fmt: skip
# Positional arguments each command takes: (minimum, maximum or -1 for "the rest").
POSITIONALS = {"create": (1, 1), "run": (1, 1), "start": (1, 1), "state": (1, 1),
                "kill": (1, 2), "delete": (1, 1), "exec": (1, -1), "ps": (1, -1),
                "list": (0, 0), "spec": (0, 0), "features": (0, 0), "pause": (1, 1),
                "resume": (1, 1), "update": (1, 1), "events": (1, 1)}


class UsageError(Exception):
    pass


class Opts:
    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def parse_flags(argv: List[str], table: Dict[str, Tuple[str, bool, bool]],
                stop_at_positional: bool = True) -> Tuple[Opts, List[str]]:
    opts = Opts()
    rest: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1:])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in table:
            raise UsageError(f"flag provided but not defined: -{name}")
        dest, takes_value, repeat = table[name]
        if takes_value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if repeat:
                opts.values.setdefault(dest, []).append(value)
            else:
                opts.values[dest] = value
        else:
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            opts.values[dest] = not eq or value.lower() in ("true", "1")
        i += 1
    return opts, rest
