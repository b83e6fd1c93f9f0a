"""Reaping for test processes that are a child subreaper (as conmon is): what was reparented
to them and has exited."""

import os


def reap_all() -> None:
    """Reap every exited child, without waiting."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
