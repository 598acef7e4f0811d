"""The messages of the data path and their acknowledgements.

Data-lane messages (bounded, may be refused with MailboxFull):

* :class:`Entries` — a source's batch of lines from one stream (a file), sent to a shard; it
  carries the read's origin (:class:`~logcap.origin.ReadToken`) and where to ack it (``ack_to``).
* :class:`Deliver` — a sender's (shard, disk buffer, DLQ) outgoing batch to one sink; it carries
  ``reply_to``, the sender's stable address, where the sink answers.

Control-lane messages (always accepted):

* :class:`SinkResult` — a sink's verdict on one :class:`Deliver` (sink -> ``reply_to``).
* :class:`Acked` — read tokens whose lines every sink has settled (shard -> each part's
  ``ack_to``, the source's stable address).
* :class:`SinksChanged` — a reload added or removed sinks (reloader -> each sender: the
  shards, or the disk buffer, and the DLQ).

A source learns that a shard restarted (and lost what it held) by watching the shard's name
(:meth:`~logcap.runtime.directory.Handle.watch`, :class:`~logcap.runtime.directory.Rebound`),
not from a message of the shard; a sender learns the same of its sinks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from logcap.origin import ReadToken
from logcap.runtime.directory import Handle
from logcap.runtime.mailbox import DataMessage

__all__ = ["HELD", "Acked", "Deliver", "Entries", "Outcome", "ReleaseHold", "SinkResult",
           "SinksChanged"]

HELD = "held"
"""SinkResult reason of a batch a sink did not try because an older batch from the same sender
failed and has not been resent yet (see :class:`logcap.actors.sink.SinkActor`): a *retry*
that is not a failure of the batch itself."""

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Entries(DataMessage):
    """Lines of one stream, in read order; line ``i`` has timestamp ``ts_ns + i`` unless
    ``timestamps`` says otherwise.

    ``token`` is the read's origin. ``ack_to`` is the stable address of the source to tell
    :class:`Acked` once every sink has settled the lines (None: nobody to ack, e.g. entries
    decoded from the disk buffer or a DLQ resend). It is an address, not content: it is not
    compared and not stored on disk.

    Per-line attributes set by processing (each None, or a list as long as ``lines``):

    * ``timestamps``: line ``i``'s timestamp in ns (the log's own time, or the engine's);
    * ``line_labels``: labels line ``i`` adds to ``labels`` (its Loki stream is the union;
      a key in both takes the line's value);
    * ``metadata``: line ``i``'s structured metadata (Loki 3), pairs in order.

    One ``Entries`` stays the unit of acknowledgement, deduplication and buffering even when
    its lines go to several Loki streams.

    ``seen`` is when the source first saw these lines (``time.monotonic()``: the file event
    that woke the read; None: not known, e.g. a periodic sweep or a disk-buffer record): the
    shard's batch deadline counts from it (:class:`~logcap.dispatch.batcher.Batcher`), so a
    source that waits before it reads spends the line's latency budget, it does not add to
    it. ``next_read_at`` is a hint for the same batching: the source will not read this
    stream again before then (monotonic; a file source reads ``read_delay`` after the next
    event at the earliest; None: it may read again at once), so a batch whose deadline comes
    first need not wait for it (:meth:`~logcap.dispatch.batcher.Batcher.add`). Like
    ``ack_to``, both are process-local: not compared, not stored on disk.
    """

    source: str
    stream: str
    labels: Labels
    lines: list[str]
    ts_ns: int
    token: ReadToken
    bytes: int = 0
    ack_to: Handle | None = field(default=None, compare=False)
    timestamps: list[int] | None = None
    line_labels: list[Labels] | None = None
    metadata: list[Labels] | None = None
    seen: float | None = field(default=None, compare=False)
    next_read_at: float | None = field(default=None, compare=False)

    def timestamp(self, i: int) -> int:
        """Line ``i``'s timestamp in ns."""
        return self.timestamps[i] if self.timestamps is not None else self.ts_ns + i

    def addressed(self, ack_to: Handle | None) -> Entries:
        """These entries with ``ack_to`` set: ``dataclasses.replace(self, ack_to=ack_to)``,
        without its per-call field walk (a source shell addresses every read)."""
        return Entries(self.source, self.stream, self.labels, self.lines, self.ts_ns,
                       self.token, self.bytes, ack_to, self.timestamps, self.line_labels,
                       self.metadata, self.seen, self.next_read_at)


@dataclass(frozen=True, slots=True)
class Deliver(DataMessage):
    """One outgoing batch for one sink; ``attempt`` counts from 1. ``reply_to`` is the sender's
    stable address (:attr:`logcap.runtime.actor.LogcapActor.address`): the sink tells it the
    :class:`SinkResult`. ``ordered``: the sender's batches must reach the sink in ``batch_id``
    order (the sink holds later ones behind a failed one, see :data:`HELD`); false for the DLQ's
    resends."""

    batch_id: int
    parts: tuple[Entries, ...]
    lines: int
    reply_to: Handle
    attempt: int = 1
    ordered: bool = True

    @property
    def sender(self) -> str:
        """The sender's name: the key of its holds at the sink (:class:`ReleaseHold`)."""
        return self.reply_to.name


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    """To a sink, from a sender: drop the hold on my batches (the failed batch they waited
    behind was settled another way, e.g. dead-lettered, or I restarted)."""

    sender: str


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # the sink has the lines
    RETRY = "retry"  # transient failure: send again later
    REJECTED = "rejected"  # permanent failure: never retried (DLQ material)


@dataclass(frozen=True, slots=True)
class SinkResult:
    batch_id: int
    sink: str
    outcome: Outcome
    reason: str = "ok"
    retry_after_s: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Acked:
    """To a source: the reads ``tokens`` are settled by every sink (delivered, or rejected for
    good), so their positions may be committed."""

    tokens: tuple[ReadToken, ...]


@dataclass(frozen=True, slots=True)
class SinksChanged:
    """Ask, to a sender (shard, disk buffer, DLQ): the sinks ``added`` (by name, with their
    handles) get the batches sent from now on; the sinks ``removed`` are sent nothing more,
    and what they had not settled is given up for them (a batch every other sink settled is
    released). Answers True once applied."""

    added: tuple[tuple[str, Handle], ...] = ()
    removed: tuple[str, ...] = ()

