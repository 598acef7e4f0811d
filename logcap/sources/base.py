"""The source seam: what a source of log lines implements to run under the source shell.

A :class:`Source` is plain, single-threaded code (files: :class:`~logcap.sources.files.source.
FileSource`); :class:`~logcap.actors.source_shell.SourceShell` runs one in an actor and does
everything that is the same for every source: sending each read to the shard of its stream,
holding what a full shard refused and pumping again, turning ``Acked`` into position commits,
re-reading what was in flight to a shard that restarted, the drain's ``StopReading``, status
asks, and the wake-ups. All methods are called in the shell's thread, except ``wake`` (given
to :meth:`Source.start`), which the source may call from any thread.

The contract, in read order:

* **Window.** :meth:`Source.read` returns what may be read now, one
  :class:`~logcap.messages.Entries` per read (never per line), each with its
  :class:`~logcap.origin.ReadToken`, in read order per stream. The source bounds its own
  unacknowledged reads (per stream and in total): when acks stop, reading stops, and the
  source's backing store (the file) is the buffer. ``Reading.more`` asks to be read again soon.
* **Acks.** :meth:`Source.ack` takes tokens whose lines every sink settled (in any order, stale
  ones included: a token from an older epoch must be ignored) and returns what to tell the
  PositionsKeeper: a position only ever covers a settled prefix of a stream's reads.
* **Rewind.** :meth:`Source.rewind` forgets the unacknowledged reads of the streams a predicate
  selects and reads them again from the committed position (a new epoch, so late acks of the
  old reads are ignored).
* **Resumed positions.** A start or a rewind that resumes past what the disk buffer holds
  durably moves a position without an ack: :meth:`Source.take_updates` gives those commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from logcap.messages import Entries
from logcap.origin import Buffered, ReadToken
from logcap.state.positions_messages import PositionsUpdate

__all__ = ["Reading", "Source"]


@dataclass(slots=True)
class Reading:
    """What one :meth:`Source.read` produced: the entries (read order), whether more is ready
    now, counts for the metrics, and messages for the PositionsKeeper (e.g. forget a file)."""

    entries: list[Entries] = field(default_factory=list)
    more: bool = False
    lines: int = 0
    bytes: int = 0
    truncated_lines: int = 0
    updates: list[PositionsUpdate] = field(default_factory=list)
    read_after_ack: bool = True
    """An ack may let the next read do more (the window held something back): the shell
    reads after the next ``Acked``. False: nothing waits for an ack, so the next read waits
    for a wake-up or a tick (a file source at a steady pace: an ack-driven read would take
    the events of lines being written and send them apart from the rest of their batch)."""


class Source(Protocol):
    """A source of log lines (see the module docstring for the contract)."""

    name: str
    """The source's name (``ReadToken.source`` of its reads, its metrics label)."""
    positions_query: object | None
    """The ask that returns this source's stored positions from the PositionsKeeper (None: the
    source keeps no positions)."""
    tick_interval_s: float
    """How often the shell calls :meth:`on_tick`."""

    def start(self, stored: Sequence[Any], buffered: Buffered,
              wake: Callable[[], None]) -> None:
        """Begin from ``stored`` positions (the answer to ``positions_query``) and, past them,
        the ranges ``buffered`` durably in the disk buffer; ``wake()`` (any thread, coalesced
        by the shell) makes the shell call :meth:`on_wake` and read."""

    def read(self) -> Reading:
        """Read what the window allows now (see the module docstring)."""

    def ack(self, tokens: Sequence[ReadToken]) -> list[PositionsUpdate]:
        """Settle the reads ``tokens``; returns the positions that advanced, for the keeper."""

    def rewind(self, selects: Callable[[str], bool], buffered: Buffered | None = None) -> int:
        """Re-read the unacknowledged reads of the streams ``selects`` picks (by
        ``Entries.stream``); returns how many reads were dropped. ``buffered``: the disk
        buffer's ranges now (as at :meth:`start`): what it holds is not read again."""

    def take_updates(self) -> list[PositionsUpdate]:
        """Positions that moved outside an ack, for the keeper, each given once: a start or a
        rewind that resumed past what the disk buffer holds durably (the shell takes them
        after :meth:`start` and :meth:`rewind`)."""

    def on_wake(self) -> None:
        """After ``wake()``: look at what changed (the shell reads right after)."""

    def on_tick(self) -> None:
        """Every ``tick_interval_s``: the source's own periodic checks (the shell reads right
        after)."""

    def status(self) -> dict[str, Any]:
        """For ``/health`` and ``/stats``: at least ``errors`` (``{what: why}``, problems the
        source reports without failing), plus what the source wants to show."""

    def close(self) -> None:
        """Release everything (threads, descriptors); positions are the keeper's."""
