"""When the disk buffer writes its sinks' cursors: at most once an interval, soon after a change.

``cursors.json`` is written crash-safely (two fsyncs, two renames): written at every group
commit (5 a second) and every maintenance (1), it was 60 % of a commit's CPU and 0.3 % of a
core at 10,000 lines/s (``bench/steady_rate.py --disk-buffer``). :class:`CursorPacing` says
when a write is due: only after a change (an acknowledgement, a failed write), and at most once
per :data:`CURSORS_PERSIST_INTERVAL_S`, so a crash resends each sink at most about that long of
acknowledged batches (with their original timestamps, which Loki keeps once). A clock set back
makes the write due. Times are the caller's clock; the buffer arms its timer by :meth:`wait`.
"""

from __future__ import annotations

__all__ = ["CURSORS_PERSIST_INTERVAL_S", "CursorPacing"]

CURSORS_PERSIST_INTERVAL_S = 1.0
"""The shortest time between two writes of the cursors, and the longest a change waits."""


class CursorPacing:
    """The pacing of the cursors' writes (module docstring); ``changed`` tells whether a change
    waits to be written."""

    __slots__ = ("changed", "interval", "written_at")

    def __init__(self, interval: float = CURSORS_PERSIST_INTERVAL_S) -> None:
        self.interval = interval
        self.changed = False
        self.written_at = -interval  # never: the first change is due at once

    def change(self) -> None:
        """The cursors changed (an acknowledgement, or a write that failed)."""
        self.changed = True

    def due(self, now: float) -> bool:
        """A change waits and the interval passed since the last write (or the clock went
        back)."""
        return self.changed and not 0 <= now - self.written_at < self.interval

    def wait(self, now: float) -> float:
        """Seconds until a waiting change is due (0 to the interval)."""
        return min(max(self.written_at + self.interval - now, 0.0), self.interval)

    def written(self, now: float) -> None:
        """The cursors were written now (a failure calls :meth:`change` again)."""
        self.changed = False
        self.written_at = now
