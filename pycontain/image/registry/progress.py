"""Progress of a pull or push on stderr: on a terminal, one live line per blob (bytes done,
total, rate) redrawn in place at most ten times a second; otherwise one plain line when a blob
starts and one when it ends (with its size, time and rate), so logs stay readable; nothing when
quiet. Thread-safe: layers are fetched in parallel."""

from __future__ import annotations

import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, List, Optional


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"


class Bar:
    def __init__(self, display: Display, verb: str, label: str, total: Optional[int]) -> None:
        self.display, self.verb, self.label, self.total = display, verb, label, total
        self.done, self.start, self.status = 0, time.monotonic(), ""

    def update(self, n: int) -> None:
        self.done += n
        self.display._changed(self)

    def finish(self, status: str = "done") -> None:
        self.status = status
        self.display._finished(self)

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-3)

    def line(self, width: int = 80) -> str:
        head = f"{self.verb} {self.label}"
        if self.status:
            return f"{head} {self.status}"
        if self.total:
            frac = min(self.done / self.total, 1.0)
            cells = 20
            fill = int(frac * cells)
            bar = "=" * fill + (">" if fill < cells else "") + " " * (cells - fill - 1)
            return (f"{head} [{bar[:cells]}] {human(self.done)} / {human(self.total)} "
                    f"{human(self.rate())}/s")[:width]
        return f"{head} {human(self.done)} {human(self.rate())}/s"[:width]


class Display:
    def __init__(self, stream: Optional[IO[str]] = None, quiet: bool = False,
                 tty: Optional[bool] = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = (self.stream.isatty() if tty is None else tty) and not quiet
        self.bars: List[Bar] = []
        self.lock = threading.Lock()
        self.drawn = 0
        self.last = 0.0

    def bar(self, verb: str, label: str, total: Optional[int] = None) -> Bar:
        b = Bar(self, verb, label, total)
        with self.lock:
            self.bars.append(b)
            if self.quiet:
                return b
            if self.tty:
                self._draw()
            else:
                size = f" ({human(total)})" if total else ""
                self._write(f"{verb} {label}{size}\n")
        return b

    def note(self, text: str) -> None:
        """A line of its own (``Writing manifest``, ``... already present``)."""
        if self.quiet:
            return
        with self.lock:
            if self.tty:
                self._erase()
                self._write(text + "\n")
                self.drawn = 0
                self._draw()
            else:
                self._write(text + "\n")

    def _changed(self, bar: Bar) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        with self.lock:
            self.last = now
            self._draw()

    def _finished(self, bar: Bar) -> None:
        if self.quiet:
            return
        with self.lock:
            if self.tty:
                self._draw()
            else:
                took = time.monotonic() - bar.start
                self._write(f"{bar.verb} {bar.label}: {bar.status} ({human(bar.done)} in "
                            f"{took:.1f}s, {human(bar.rate())}/s)\n" if bar.done else
                            f"{bar.verb} {bar.label}: {bar.status}\n")

    def _erase(self) -> None:
        if self.drawn:
            self._write(f"\x1b[{self.drawn}A\x1b[J")

    def _draw(self) -> None:
        self._erase()
        self._write("".join(f"\x1b[2K{b.line()}\n" for b in self.bars))
        self.drawn = len(self.bars)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
