"""SourceShell: the actor that runs one :class:`~logcap.sources.base.Source` (e.g. a FileSource).

Messages taken (control lane):

* ``_Wake`` — the source called its ``wake`` (coalesced: at most one pending): the source's
  ``on_wake``, then read.
* ``_Tick`` — timer, every ``source.tick_interval_s``: the source's ``on_tick``, then read.
* ``_Pump`` — to itself: keep reading while there is data and window room.
* :class:`~logcap.messages.Acked` — from shards (each ``Entries`` names this shell as its
  ``ack_to``): settled reads; what the source returns goes to the PositionsKeeper, and the
  freed window lets reading continue (a read follows when the last one said an ack may let
  it do more, ``Reading.read_after_ack``, or refused entries wait).
* :class:`~logcap.runtime.directory.Rebound` — a shard this shell watches was (re)started:
  what was in flight to it is lost, so the source re-reads the streams of that shard from
  their committed positions, past what the disk buffer holds (asked then, once the new shard
  has handed over what it took from us before this message; while it has not, or the buffer
  cannot answer, reading waits and ``_RetryRewind`` tries again); pending entries for it are
  dropped too.
* :class:`SourceStatus` (ask) — the source's status, with ``source`` (its name).
* :class:`StopReading` (ask) — the agent is stopping, or a reload removes or changes this
  source: read nothing more (entries a full shard refused are still offered, and acks are
  still taken, so positions reach what was delivered); lasts until the actor stops.
* :class:`Unsettled` (ask) — what this source read and is not yet acknowledged:
  ``{"pending": entries not yet taken by a shard, "inflight_bytes": bytes read and not
  acknowledged}`` (a reload waits for both to be 0 before it stops the source).

Backpressure: each read goes to the shard chosen by a stable hash of its stream
(:func:`shard_index`: one stream, one shard, so its lines stay in order). A full shard refuses
at once; the shell keeps the refused entries in order, stops reading, and offers them again
on a timer (``PAUSE_S``). The source bounds its unacknowledged reads, so a down sink stops the
reading, not the memory.

On start: watches every shard's name (so a shard restart reaches it as ``Rebound``), asks the
PositionsKeeper for the source's stored positions and, with the disk buffer on, waits (at most
``SETTLE_MAX_S``) until no shard holds lines of this source any more (what a crashed
predecessor sent is still on its way to the buffer), then asks the buffer for the ranges it
holds durably (which may be ahead of the positions file), starts the source, commits the
positions the source resumed at past those ranges (``take_updates``), starts its tick, and
reads. On stop: closes the source (positions are the keeper's). A crash loses
only in-memory reads, which were not committed: the restarted shell reads them again from the
committed positions. Needs the ``directory`` keyword (its address is the ``ack_to``).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import pykka

from logcap.actors.disk_buffer import ResumeRanges
from logcap.actors.shard import HeldFrom
from logcap.messages import Acked, Entries
from logcap.metrics import SOURCE_BYTES, SOURCE_LINES, SOURCE_PAUSES, SOURCE_TRUNCATED
from logcap.origin import Buffered
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import ActorUnavailable, DeliveryRefused, MailboxFull
from logcap.runtime.timers import Scheduler
from logcap.sources.base import Source
from logcap.state.positions_messages import WRITTEN_BEFORE_READING

__all__ = ["PAUSE_S", "SourceShell", "SourceStatus", "StopReading", "Unsettled", "shard_index"]

log = logging.getLogger(__name__)

PAUSE_S = 0.02
"""How long a shell waits before offering refused entries again."""
START_ASK_TIMEOUT_S = 10.0
REWIND_ASK_TIMEOUT_S = 2.0
RECORD_ASK_TIMEOUT_S = 5.0
"""How long the shell waits for the keeper to write a :data:`WRITTEN_BEFORE_READING` update."""
REWIND_RETRY_S = 0.1
"""While the disk buffer cannot give its ranges, or the restarted shard still holds lines of
this source, how often a pending rewind is retried."""
SETTLE_MAX_S = 5.0
"""How long a start or a rewind waits for the shards to hand what they hold of this source to
the disk buffer before it asks the buffer's ranges anyway (lines may then be read twice)."""
SETTLE_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class StopReading:
    """Ask: read nothing more until stopped (the agent's drain before a stop)."""


@dataclass(frozen=True, slots=True)
class Unsettled:
    """Ask: ``{"pending", "inflight_bytes"}`` of this source (module docstring)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """Ask: the source's status (``Source.status()`` plus ``source``, its name)."""


@dataclass(frozen=True, slots=True)
class _Wake:
    pass


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Pump:
    pass


@dataclass(frozen=True, slots=True)
class _RetryRewind:
    pass


def _incarnation(handle: Handle) -> str | None:
    """The urn of the actor bound to ``handle`` now (None: none)."""
    ref = handle.directory.lookup(handle.name)
    return None if ref is None else ref.actor_urn


def shard_index(stream: str, shards: int) -> int:
    """The shard of a stream: a stable hash, so one stream always goes to one shard."""
    return zlib.crc32(stream.encode("utf-8", "surrogateescape")) % shards


class _NotYet(Exception):
    """A rewind must wait (the restarted shard still holds lines of this source)."""


class SourceShell(LogcapActor):
    def __init__(
        self,
        source: Source,
        shards: list[Handle],
        positions: Handle | None,
        scheduler: Scheduler,
        buffer: Handle | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.source = source
        self.shards = shards
        self.positions = positions
        self.scheduler = scheduler
        self.buffer = buffer
        self._shard_of_name = {handle.name: i for i, handle in enumerate(shards)}
        # metric children looked up once (a ``labels()`` call per read costs a lock and a
        # dict look-up)
        self._lines_read = SOURCE_LINES.labels(source.name)
        self._bytes_read = SOURCE_BYTES.labels(source.name)
        self._truncated = SOURCE_TRUNCATED.labels(source.name)
        self._pauses = SOURCE_PAUSES.labels(source.name)
        self._sleeper = threading.Event()  # never set: a bounded wait in the start
        self._address: Handle | None = None
        self._pending: list[Entries] = []
        self._wake_sent = False
        self._pump_sent = False
        self._read_after_ack = True  # what the last read said (Reading.read_after_ack)
        self._paused = False
        self._stopped_reading = False
        self._rewinds_due: dict[str, float] = {}  # shard -> since when (monotonic)
        # per shard, the incarnation (actor urn) this shell sends to: the one bound at its
        # start or at the last rewind for that shard
        self._in_step: list[str | None] = [None] * len(shards)

    # -- lifecycle -------------------------------------------------------------------------

    def handle_start(self) -> None:
        self._address = self.address
        for shard in self.shards:
            shard.watch(self._address)
        self._in_step = [_incarnation(shard) for shard in self.shards]
        stored: list[Any] = []
        query = self.source.positions_query
        if self.positions is not None and query is not None:
            stored = self.positions.ask(query, timeout=START_ASK_TIMEOUT_S)
        buffered: Buffered = {}
        if self.buffer is not None:
            self._await_predecessor()
            buffered = self._start_ranges()
        self.source.start(stored, buffered, self._wake)
        self._tell_keeper(self.source.take_updates())
        self.scheduler.call_later(self.source.tick_interval_s, self.actor_ref, _Tick())
        self._pump()

    def handle_stop(self) -> None:
        self.source.close()

    def handle_crash(self) -> None:
        """Close the source (its descriptors, its watcher thread) as at a stop: what it read
        and did not commit is read again by the restarted shell."""
        self.source.close()

    def _held_by(self, shard: Handle) -> int:
        """Lines of this source ``shard`` holds unsettled (0 when it is not running: a shard
        that restarts holds nothing). Raises ``MailboxFull`` / ``pykka.Timeout`` when it
        cannot say now."""
        try:
            return int(shard.ask(HeldFrom(self.source.name), timeout=REWIND_ASK_TIMEOUT_S))
        except ActorUnavailable:
            return 0

    def _await_predecessor(self) -> None:
        """Wait (at most ``SETTLE_MAX_S``) until no shard holds lines of this source: what a
        crashed predecessor sent is still on its way to the disk buffer, and asked before it
        arrives, the buffer's ranges would miss it: this shell would read it again with new
        timestamps, and Loki would keep both copies. :class:`HeldFrom` queues behind those
        entries in each shard's data lane, so a shard answering 0 has handed them all to the
        buffer (stored, or refused and given back to be read again)."""
        deadline = time.monotonic() + SETTLE_MAX_S
        waiting = list(self.shards)
        while True:
            still = []
            for shard in waiting:
                try:
                    if self._held_by(shard):
                        still.append(shard)
                except (DeliveryRefused, pykka.Timeout):
                    still.append(shard)
            waiting = still
            if not waiting:
                return
            if time.monotonic() >= deadline:
                log.warning("%s: %s still hold lines read before this restart after %.0fs; "
                            "starting anyway (those lines may be read twice)", self.source.name,
                            ", ".join(s.name for s in waiting), SETTLE_MAX_S)
                return
            self._sleeper.wait(SETTLE_POLL_S)

    def _start_ranges(self) -> Buffered:
        """The buffer's :class:`ResumeRanges`, asked again while its data lane is full
        (until ``START_ASK_TIMEOUT_S``; then the refusal fails the start)."""
        assert self.buffer is not None
        deadline = time.monotonic() + START_ASK_TIMEOUT_S
        while True:
            try:
                ranges: Buffered = self.buffer.ask(ResumeRanges(self.source.name),
                                                   timeout=START_ASK_TIMEOUT_S)
                return ranges
            except MailboxFull:
                if time.monotonic() >= deadline:
                    raise
                self._sleeper.wait(SETTLE_POLL_S)

    def _wake(self) -> None:
        """The source's wake-up; may be called from any thread."""
        if not self._wake_sent:
            self._wake_sent = True
            self.actor_ref.tell(_Wake())

    # -- messages --------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, StopReading):
            self._stopped_reading = True
        elif isinstance(message, _Wake):
            self._wake_sent = False
            self.source.on_wake()
            self._pump()
        elif isinstance(message, _Pump):
            self._pump_sent = False
            self._paused = False
            self._pump()
        elif isinstance(message, Acked):
            self._tell_keeper(self.source.ack(message.tokens))
            if self._read_after_ack or self._pending:
                self._pump()
        elif isinstance(message, Rebound):
            self._rewind(message.name)
        elif isinstance(message, _RetryRewind):
            for shard_name in sorted(self._rewinds_due):
                if shard_name in self._rewinds_due:
                    self._rewind(shard_name)
        elif isinstance(message, _Tick):
            self.source.on_tick()
            self.scheduler.call_later(self.source.tick_interval_s, self.actor_ref, _Tick())
            self._pump()
        elif isinstance(message, SourceStatus):
            return {"source": self.source.name, **self.source.status()}
        elif isinstance(message, Unsettled):
            return {"pending": len(self._pending),
                    "inflight_bytes": int(self.source.status().get("inflight_bytes", 0))}
        else:
            return super().handle(message)
        return None

    def _tell_keeper(self, messages: list[Any]) -> None:
        """Forward the source's updates to the PositionsKeeper: told, except the
        :data:`WRITTEN_BEFORE_READING` kinds, asked (waiting, at most
        :data:`RECORD_ASK_TIMEOUT_S`, until the keeper wrote them) before anything more is
        read."""
        if self.positions is None:
            return
        for message in messages:
            try:
                if isinstance(message, WRITTEN_BEFORE_READING):
                    if self.positions.ask(message, timeout=RECORD_ASK_TIMEOUT_S) is not True:
                        log.warning("%s: positions not written at once (%s); kept in memory "
                                    "and written later", self.source.name,
                                    type(message).__name__)
                else:
                    self.positions.tell(message)
            except (DeliveryRefused, pykka.Timeout):
                log.warning("%s: positions keeper unavailable; commit postponed to the next ack",
                            self.source.name)

    def _rewind(self, shard_name: str) -> None:
        """Re-read what was in flight to ``shard_name`` (restarted), past what the disk buffer
        holds. Nothing is read, and the rewind is retried every ``REWIND_RETRY_S``, while

        - the new shard still holds lines of ours (:class:`HeldFrom`; at most
          ``SETTLE_MAX_S``): reads sent to it between its start and this ``Rebound`` are
          on their way to the buffer; asked before they arrive, its ranges would miss them,
          and they would be read again with new timestamps (kept by Loki);
        - the buffer cannot say (it restarts too): read without its ranges, the reads it
          stored would come again with new timestamps, and reading on would send newer lines
          of those streams before the rewound ones.

        :class:`ResumeRanges` travels behind the batches the crashed shard had sent the
        buffer, so its answer includes them."""
        index = self._shard_of_name.get(shard_name)
        if index is None:
            return
        due_since = self._rewinds_due.setdefault(shard_name, time.monotonic())
        buffered: Buffered | None = None
        if self.buffer is not None:
            waited = time.monotonic() - due_since
            try:
                if waited < SETTLE_MAX_S and self._held_by(self.shards[index]):
                    raise _NotYet
                buffered = self.buffer.ask(ResumeRanges(self.source.name),
                                           timeout=REWIND_ASK_TIMEOUT_S)
            except (_NotYet, DeliveryRefused, pykka.Timeout):
                self.scheduler.call_later(REWIND_RETRY_S, self.actor_ref, _RetryRewind())
                return
        del self._rewinds_due[shard_name]
        self._in_step[index] = _incarnation(self.shards[index])
        n = len(self.shards)

        def selects(stream: str) -> bool:
            return shard_index(stream, n) == index

        dropped = self.source.rewind(selects, buffered)
        self._tell_keeper(self.source.take_updates())
        self._pending = [e for e in self._pending if not selects(e.stream)]
        if dropped:
            log.info("%s: %s restarted; re-reading %d unacknowledged batches",
                     self.source.name, shard_name, dropped)
        self._pump()

    # -- reading ---------------------------------------------------------------------------

    def _send_pending(self) -> bool:
        """Offer held entries in order; False if a shard refused (then we pause), or if it
        restarted and its ``Rebound`` is not handled yet: sent to the new shard before the
        rewind, a read would reach the buffer while the one before it, lost with the old
        shard, is read again after it (out of order, and read twice when the rewind cannot
        resume past it)."""
        n = len(self.shards)
        while self._pending:
            entries = self._pending[0]
            index = shard_index(entries.stream, n)
            try:
                if not self.shards[index].tell_incarnation(self._in_step[index], entries):
                    return False
            except DeliveryRefused:
                return False
            self._pending.pop(0)
        return True

    def _pump(self) -> None:
        if self._paused or self._rewinds_due:
            return
        if self._stopped_reading:
            if not self._send_pending():
                self._pause()
            return
        if not self._send_pending():
            self._pause()
            return
        reading = self.source.read()
        self._read_after_ack = reading.read_after_ack
        if reading.lines:
            self._lines_read.inc(reading.lines)
            self._bytes_read.inc(reading.bytes)
        if reading.truncated_lines:
            self._truncated.inc(reading.truncated_lines)
        if reading.updates:
            self._tell_keeper(list(reading.updates))
        address = self._address
        self._pending.extend(e.addressed(address) for e in reading.entries)
        if not self._send_pending():
            self._pause()
            return
        if reading.more and not self._pump_sent:
            self._pump_sent = True
            self.actor_ref.tell(_Pump())

    def _pause(self) -> None:
        self._pauses.inc()
        self._paused = True
        if not self._pump_sent:
            self._pump_sent = True
            self.scheduler.call_later(PAUSE_S, self.actor_ref, _Pump())
