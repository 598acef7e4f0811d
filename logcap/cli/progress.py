"""Progress of long CLI work on a terminal, and nothing in a pipe.

:class:`Progress` writes one status line to ``stream`` (stderr), rewritten in place with
``\\r`` at most every :data:`REDRAW_INTERVAL_S`, only when the stream is a terminal
(``isatty``) or ``enabled`` says so; :meth:`Progress.done` erases it, so what the command prints
afterwards (its report) starts on a clean line. When disabled it writes nothing at all, so
output in a pipe or a log file stays exactly the command's report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["REDRAW_INTERVAL_S", "Progress"]

REDRAW_INTERVAL_S = 0.1
_ERASE = "\r\x1b[K"


class Progress:
    def __init__(self, what: str, total: int | None = None, *, unit: str = "",
                 stream: TextIO | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.clock = clock
        self.count = 0
        self._drawn_at: float | None = None

    def _line(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            share = min(100.0, 100.0 * self.count / self.total)
            return f"{self.what}: {self.count:,}/{self.total:,}{unit} ({share:.0f}%)"
        return f"{self.what}: {self.count:,}{unit}"

    def update(self, count: int, total: int | None = None) -> None:
        """Set the count done (and the total, if it became known); redraw if due."""
        self.count = count
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < REDRAW_INTERVAL_S \
                and count != self.total:
            return
        self._drawn_at = now
        self.stream.write(_ERASE + self._line())
        self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.update(self.count + n)

    def done(self) -> None:
        """Erase the line (if one was drawn)."""
        if self.enabled and self._drawn_at is not None:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._drawn_at = None
