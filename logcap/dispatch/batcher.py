"""Accumulates :class:`~logcap.messages.Entries` into outgoing batches.

A batch is closed when it holds ``batch_size`` lines or when its oldest lines have waited
``batch_timeout_s`` (checked by :meth:`Batcher.due`, driven by the shard's timer). A line
waits from when its source saw it (``Entries.seen``, when known and earlier than its arrival
here), else from its arrival: a source that reads ``read_delay`` after a file's event spends
that delay inside the batch timeout, so ``batch_timeout`` bounds a line's time from its write
being seen to its batch being sent, whatever the source waited (entries whose deadline has
passed close the batch at once, :meth:`Batcher.add`). It also closes at once when waiting
cannot add to it: every source in it said it reads again only after the deadline
(``Entries.next_read_at`` of its latest entries). Entries are never split: a batch may exceed
``batch_size`` by at most one Entries' lines.
"""

from __future__ import annotations

from logcap.messages import Entries

__all__ = ["Batcher"]


class Batcher:
    __slots__ = ("_next_reads", "_opened_at", "_parts", "batch_size", "batch_timeout_s",
                 "lines")

    def __init__(self, batch_size: int, batch_timeout_s: float) -> None:
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self._parts: list[Entries] = []
        self.lines = 0
        self._opened_at = 0.0
        self._next_reads: dict[str, float | None] = {}  # source -> its latest next_read_at

    def add(self, entries: Entries, now: float) -> list[Entries] | None:
        """Add entries; returns the closed batch if this filled it, if its deadline has passed
        (its oldest lines were seen ``batch_timeout_s`` ago or more), or if no source in it
        reads again before the deadline."""
        seen = entries.seen
        since = now if seen is None or seen > now else seen
        if not self._parts or since < self._opened_at:
            self._opened_at = since
        self._parts.append(entries)
        self.lines += len(entries.lines)
        self._next_reads[entries.source] = entries.next_read_at
        deadline = self._opened_at + self.batch_timeout_s
        if self.lines >= self.batch_size or now >= deadline or self._quiet_until(deadline):
            return self.take()
        return None

    def _quiet_until(self, deadline: float) -> bool:
        """No source of the open batch reads again before ``deadline``."""
        for next_read in self._next_reads.values():
            if next_read is None or next_read < deadline:
                return False
        return True

    def due(self, now: float) -> bool:
        return bool(self._parts) and now - self._opened_at >= self.batch_timeout_s

    def deadline(self) -> float | None:
        return self._opened_at + self.batch_timeout_s if self._parts else None

    def parts(self) -> tuple[Entries, ...]:
        """The open batch's parts, in arrival order."""
        return tuple(self._parts)

    def take(self) -> list[Entries]:
        parts, self._parts, self.lines = self._parts, [], 0
        self._next_reads = {}
        return parts

    def __len__(self) -> int:
        return len(self._parts)
