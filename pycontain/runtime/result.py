"""What a finished container run or exec reports."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional


class Result:
    """What a finished container run (or exec) reports."""

    def __init__(
        self,
        exit_code: int,
        oom_killed: bool = False,
        stats: Optional[Dict[str, Any]] = None,
        allocator: Optional[Dict[str, Any]] = None,
        stdout: Optional[bytes] = None,
        stderr: Optional[bytes] = None,
        name: str = "",
        id: str = "",
    ) -> None:
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.stats: Dict[str, Any] = stats if stats is not None else {}
        self.allocator = allocator
        self.stdout = stdout
        self.stderr = stderr
        self.name = name
        self.id = id
        self.pid = 0  # of the process (exec)

    def __repr__(self) -> str:
        return (f"Result(exit_code={self.exit_code}, oom_killed={self.oom_killed}, "
                f"name={self.name!r})")

