"""The batches the buffer appended last, kept in memory so its sinks are sent them without
reading them back from the segment files.

A batch is appended (encoded, compressed, written), made durable by the group commit, and then
read by each sink from its cursor: at a steady pace the sinks read what was just written, and
reading it back (read, verify the checksum, decompress, decode: ~0.45 µs CPU per line,
``bench/buffer_append.py``) only gives again the entries the buffer was handed. So
:class:`RecentBatches` holds them by seq, and :meth:`SegmentStore.read
<logcap.state.buffer.segments.SegmentStore.read>` takes a batch from here when it has it and
from the files otherwise (after a restart, and for a sink behind by more than the bound: a
Loki outage's backlog).

What a sink gets is the same either way: the codec round-trips every field of an
:class:`~logcap.messages.Entries` exactly except ``ack_to`` (an in-process address, not stored),
so batches are kept with ``ack_to`` cleared, as decoded ones have it. The durability does not
change: the disk is still what a restart reads, and what the sources' positions wait for.

Bounded: at most :data:`RECENT_BYTES` of line bytes (the oldest leave first; a batch above the
bound is not kept and empties it, so what is held is always the seqs from the oldest held to
the last appended), and a batch leaves once every sink has read past it
(:meth:`RecentBatches.forget_below`). While no sink reads behind what is held, the store keeps
no file open for reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from logcap.messages import Entries

__all__ = ["RECENT_BYTES", "RecentBatches"]

RECENT_BYTES = 4 * 1024 * 1024
"""Line bytes kept at most: at a steady pace the sinks read a few batches behind the writes
(at most 4 outstanding each), which is well below this; beyond it they read from the files."""


class RecentBatches:
    """Batches by seq, in append order, within a bound of line bytes (module docstring)."""

    __slots__ = ("_batches", "_bytes", "limit")

    def __init__(self, limit: int = RECENT_BYTES) -> None:
        self.limit = limit
        self._batches: dict[int, tuple[list[Entries], int]] = {}
        self._bytes = 0

    def keep(self, seq: int, batch: Sequence[Entries], size: int) -> None:
        """Remember the batch appended as ``seq`` (``size``: its line bytes), dropping the
        oldest beyond the bound. Seqs must come in increasing order."""
        if size > self.limit:
            self.clear()  # what is held stays contiguous: seqs oldest .. the last appended
            return
        kept = [e if e.ack_to is None else replace(e, ack_to=None) for e in batch]
        self._batches[seq] = (kept, size)
        self._bytes += size
        batches = self._batches
        while self._bytes > self.limit:
            oldest = next(iter(batches))
            self._bytes -= batches.pop(oldest)[1]

    def get(self, seq: int) -> list[Entries] | None:
        """The batch ``seq`` (a new list each time), or None when it is not held."""
        held = self._batches.get(seq)
        return None if held is None else list(held[0])

    def forget_below(self, seq: int) -> None:
        """Drop every batch older than ``seq`` (every sink has read them)."""
        batches = self._batches
        while batches:
            oldest = next(iter(batches))
            if oldest >= seq:
                return
            self._bytes -= batches.pop(oldest)[1]

    def covers(self, seq: int, last_seq: int) -> bool:
        """Every batch from ``seq`` to ``last_seq`` (the last appended) is held: a reader
        there needs no file."""
        if seq > last_seq:
            return True
        return bool(self._batches) and seq >= next(iter(self._batches))

    def clear(self) -> None:
        self._batches.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def bytes(self) -> int:
        """Line bytes held."""
        return self._bytes
