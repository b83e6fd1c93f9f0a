"""The runtime's error type, shared by the lifecycle, the process setup and both CLIs."""

from __future__ import annotations


class ContainerError(Exception):
    """A runtime error (exit code 125 by docker's convention, 126/127 when exec fails)."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code
