"""Accumulates :class:`~logcap.messages.Entries` into outgoing batches.

A batch is closed when it holds ``batch_size`` lines or when its oldest entry has waited
``batch_timeout_s`` (checked by :meth:`Batcher.due`, driven by the shard's timer). Entries are
never split: a batch may exceed ``batch_size`` by at most one Entries' lines.
"""

from __future__ import annotations

from logcap.messages import Entries

__all__ = ["Batcher"]


class Batcher:
    __slots__ = ("_opened_at", "_parts", "batch_size", "batch_timeout_s", "lines")

    def __init__(self, batch_size: int, batch_timeout_s: float) -> None:
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self._parts: list[Entries] = []
        self.lines = 0
        self._opened_at = 0.0

    def add(self, entries: Entries, now: float) -> list[Entries] | None:
        """Add entries; returns the closed batch if this filled it."""
        if not self._parts:
            self._opened_at = now
        self._parts.append(entries)
        self.lines += len(entries.lines)
        if self.lines >= self.batch_size:
            return self.take()
        return None

    def due(self, now: float) -> bool:
        return bool(self._parts) and now - self._opened_at >= self.batch_timeout_s

    def deadline(self) -> float | None:
        return self._opened_at + self.batch_timeout_s if self._parts else None

    def parts(self) -> tuple[Entries, ...]:
        """The open batch's parts, in arrival order."""
        return tuple(self._parts)

    def take(self) -> list[Entries]:
        parts, self._parts, self.lines = self._parts, [], 0
        return parts

    def __len__(self) -> int:
        return len(self._parts)
