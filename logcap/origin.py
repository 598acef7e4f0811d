"""Where a read came from: the typed origin token every batch part carries.

A :class:`ReadToken` names one read of a source: the source (by name and kind), the **stream
identity** (what content the read came from, a hashable value: for files a
:class:`FileStream`, ``(dev, ino, fingerprint at read time)``), the range ``[start, end)`` of
that stream (bytes for files), and the reader's own bookkeeping (``generation`` and
``epoch``), which nobody else looks at.

Who uses which part:

* the source that made it, when the token comes back acked: ``generation`` finds its reader,
  and an ``epoch`` older than the reader's (a rewind or rotation happened since) makes the ack
  stale, so it is ignored;
* sink deduplication (:mod:`logcap.dispatch.dedup`) keys delivered ranges by
  ``(source, kind, stream)``;
* the disk buffer's resume ranges (:class:`~logcap.actors.disk_buffer.ResumeRanges`) are keyed
  by ``stream``, within a source (:data:`Buffered`).

A token whose ``stream`` is None identifies no durable content (a DLQ resend, whose range
counts lines of one entry): it is never deduplicated and never resumed past. Tokens are
written into disk-buffer records; their on-disk form is in :mod:`logcap.state.buffer.codec`,
the one place that serialises and parses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["CONTAINER_KIND", "DLQ_KIND", "FILE_KIND", "Buffered", "FileStream", "ReadToken",
           "StreamId"]

FILE_KIND = "file"
"""``ReadToken.kind`` of reads from files (stream: :class:`FileStream`)."""
CONTAINER_KIND = "container"
"""``ReadToken.kind`` of reads from a container's log (stream: container id, stdout|stderr,
run; the container's name is the entries' ``container`` label)."""
DLQ_KIND = "dlq"
"""``ReadToken.kind`` of DLQ resends (stream: None, generation: the entry id)."""

StreamId = tuple[int | str, ...]
"""A stream's identity: a tuple of ints and strings, so it hashes and serialises as is."""


class FileStream(NamedTuple):
    """The identity of a file content at read time (a :data:`StreamId`): its inode and the
    fingerprint of its first bytes (inode reuse and copytruncate change the fingerprint)."""

    dev: int
    ino: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ReadToken:
    """One read: ``[start, end)`` of stream ``stream`` of source ``source`` (kind ``kind``).

    ``generation`` and ``epoch`` belong to the source that made the token (a file source: the
    generation id of the descriptor it read through, and that generation's epoch); an acked
    token from an older epoch is ignored. ``stream`` None: no durable identity (see the module
    docstring).
    """

    source: str
    kind: str
    stream: StreamId | None
    start: int
    end: int
    generation: str = ""
    epoch: int = 0

    @property
    def size(self) -> int:
        """Length of the range (bytes for files)."""
        return self.end - self.start


Buffered = dict[StreamId, list[tuple[int, int]]]
"""Ranges durably in the disk buffer for one source, by stream identity."""
