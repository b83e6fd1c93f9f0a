"""Processes and file descriptors from the parent's side: signalling a pid only while it is
still the process that was started (pidfd and start time), waiting, exit codes in docker's
convention, the close-on-exec error pipe of a container's setup, reading back a memfd."""

from __future__ import annotations

import _signal as signal  # the C module: `signal` wraps it in enums, ~1 ms of start-up
import errno
import os
import time

from pycontain.errors import ContainerError
from pycontain.runtime.state import alive, proc_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Union

    StdioArg = Union[int, Any, None]


def read_from_start(fd: int) -> bytes:
    """Everything in the file behind fd (a memfd or temp file), read from offset 0."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


_SELF_START: Dict[int, Optional[int]] = {}


def self_start_time() -> Optional[int]:
    pid = os.getpid()
    if pid not in _SELF_START:
        _SELF_START.clear()
        _SELF_START[pid] = proc_start_time(pid)
    return _SELF_START[pid]


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def waitpid(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 255 << 8
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue


def read_pipe(fd: int) -> bytes:
    """Everything written into a pipe until its write ends close; closes ``fd``."""
    chunks = []
    while True:
        try:
            b = os.read(fd, 65536)
        except InterruptedError:  # pragma: no cover
            continue
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def parse_child_error(raw: bytes) -> ContainerError:
    text = raw.decode(errors="replace")
    code, sep, msg = text.partition("\t")
    if sep and code.isdigit():
        return ContainerError(msg.strip(), int(code))
    return ContainerError(text.strip() or "container setup failed")



def signal_pid(pid: int, start: Optional[int], sig: int) -> None:
    """Signal ``pid`` only if it is still the process we started (pidfd, start time check)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if proc_start_time(pid) == start or start is None:
            signal.pidfd_send_signal(pidfd, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
    finally:
        os.close(pidfd)


def wait_dead(pid: int, start: Optional[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while alive(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def forwarder(pid: int) -> Any:
    def handler(signum: int, frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    return handler


def fileno(obj: StdioArg, default: int) -> int:
    if obj is None:
        return default
    if isinstance(obj, int):
        return obj
    return int(obj.fileno())

