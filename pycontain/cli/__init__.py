"""The docker-like ``pycontain`` command, a thin layer over the runtime core.

    parser.py      the grammar: argparse for every verb, a fast path for a plain ``run``
    containers.py  run, exec, ps, logs, kill, stop, rm, pause, unpause, update, inspect
    stats.py       stats
    images.py      image ls/rm/inspect/import/export/tag, commit

Runtime errors print one line on stderr and exit with 125; ``run`` in the foreground exits with
the container's exit code (128+signal when it was killed). Only the module of the verb given is
imported: ``run`` must start quickly.
"""

from __future__ import annotations

import os
import sys

from pycontain.cli.parser import build_parser, fast_run_args

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

# verb -> (module under pycontain.cli, function)
COMMANDS = {
    "run": ("containers", "cmd_run"), "exec": ("containers", "cmd_exec"),
    "ps": ("containers", "cmd_ps"), "logs": ("containers", "cmd_logs"),
    "kill": ("containers", "cmd_kill"), "stop": ("containers", "cmd_stop"),
    "rm": ("containers", "cmd_rm"), "inspect": ("containers", "cmd_inspect"),
    "pause": ("containers", "cmd_pause"), "unpause": ("containers", "cmd_unpause"),
    "update": ("containers", "cmd_update"), "stats": ("stats", "cmd_stats"),
    "image": ("images", "run"), "commit": ("images", "run"), "pull": ("images", "run"),
    "push": ("images", "run"), "login": ("images", "run"), "logout": ("images", "run"),
    "network": ("networks", "run"), "port": ("containers", "cmd_port"),
}


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = fast_run_args(argv)
    if args is None:
        verb = next((a for a in argv if not a.startswith("-")), None)
        # Options before the verb take a value (--root X): only a verb-first command line is
        # safe to parse with the single-verb parser.
        only = verb if argv and argv[0] == verb and verb in COMMANDS else None
        args = build_parser(only).parse_args(argv)
    try:
        module, func = COMMANDS[args.verb]
        mod = __import__(f"pycontain.cli.{module}", fromlist=[func])
        return int(getattr(mod, func)(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        from pycontain.errors import ContainerError

        if isinstance(e, ContainerError):
            sys.stderr.write(f"pycontain: error: {e}\n")
            return e.exit_code
        if isinstance(e, (OSError, ImportError)):  # ImportError: the native module or cffi
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
    from pycontain.errors import ContainerError

    return ContainerError(msg)

