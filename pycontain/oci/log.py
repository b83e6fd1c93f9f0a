"""Where pycontain-oci reports: errors on stderr and in ``--log`` (in runc's text or JSON
format: engines such as conmon read the last error from that file), warnings and debug lines
in the log when there is one, else on stderr."""

from __future__ import annotations

import sys
import time

from pycontain import jsonfast as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

PROG = "pycontain-oci"


def rfc3339(t: float) -> str:
    frac = f"{t % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + frac + "Z"


class Logger:
    """Errors on stderr and in ``--log``; warnings and debug lines in the log (or stderr)."""

    def __init__(self, path: Optional[str], fmt: str, debug: bool) -> None:
        self.path = path
        self.json = fmt == "json"
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        if self.json:
            line = json.dumps({"level": level, "msg": msg, "time": rfc3339(time.time())})
        else:
            line = f'time="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}" ' \
                   f'level={level} msg="{msg}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self._write("error", msg)
        sys.stderr.write(f"{PROG}: {msg}\n")

    def warn(self, msg: str) -> None:
        if self.path:
            self._write("warning", msg)
        else:
            sys.stderr.write(f"{PROG}: warning: {msg}\n")

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._write("debug", msg)
            if not self.path:
                sys.stderr.write(f"{PROG}: debug: {msg}\n")
