"""SourceShell: the actor that runs one :class:`~logcap.sources.base.Source` (e.g. a FileSource).

Messages taken (control lane):

* ``_Wake`` — the source called its ``wake`` (coalesced: at most one pending): the source's
  ``on_wake``, then read.
* ``_Tick`` — timer, every ``source.tick_interval_s``: the source's ``on_tick``, then read.
* ``_Pump`` — to itself: keep reading while there is data and window room.
* :class:`~logcap.messages.Acked` — from shards (each ``Entries`` names this shell as its
  ``ack_to``): settled reads; what the source returns goes to the PositionsKeeper, and the
  freed window lets reading continue.
* :class:`~logcap.runtime.directory.Rebound` — a shard this shell watches was (re)started:
  what was in flight to it is lost, so the source re-reads the streams of that shard from
  their committed positions, past what the disk buffer holds (asked then; while the buffer
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
PositionsKeeper for the source's stored positions and, with the disk buffer on, the buffer for
the ranges it holds durably (which may be ahead of the positions file), starts the source and
its tick, and reads. On stop: closes the source (positions are the keeper's). A crash loses
only in-memory reads, which were not committed: the restarted shell reads them again from the
committed positions. Needs the ``directory`` keyword (its address is the ``ack_to``).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import pykka

from logcap.actors.disk_buffer import ResumeRanges
from logcap.messages import Acked, Entries
from logcap.metrics import SOURCE_BYTES, SOURCE_LINES, SOURCE_PAUSES, SOURCE_TRUNCATED
from logcap.origin import Buffered
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import DeliveryRefused
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
"""While the disk buffer cannot give its ranges, how often a pending rewind is retried."""


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


def shard_index(stream: str, shards: int) -> int:
    """The shard of a stream: a stable hash, so one stream always goes to one shard."""
    return zlib.crc32(stream.encode("utf-8", "surrogateescape")) % shards


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
        self._address: Handle | None = None
        self._pending: list[Entries] = []
        self._wake_sent = False
        self._pump_sent = False
        self._paused = False
        self._stopped_reading = False
        self._rewinds_due: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def handle_start(self) -> None:
        self._address = self.address
        for shard in self.shards:
            shard.watch(self._address)
        stored: list[Any] = []
        query = self.source.positions_query
        if self.positions is not None and query is not None:
            stored = self.positions.ask(query, timeout=START_ASK_TIMEOUT_S)
        buffered: Buffered = {}
        if self.buffer is not None:
            buffered = self.buffer.ask(ResumeRanges(self.source.name),
                                       timeout=START_ASK_TIMEOUT_S)
        self.source.start(stored, buffered, self._wake)
        self.scheduler.call_later(self.source.tick_interval_s, self.actor_ref, _Tick())
        self._pump()

    def handle_stop(self) -> None:
        self.source.close()

    def handle_crash(self) -> None:
        """Close the source (its descriptors, its watcher thread) as at a stop: what it read
        and did not commit is read again by the restarted shell."""
        self.source.close()

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
            self._pump()
        elif isinstance(message, Rebound):
            self._rewind(message.name)
        elif isinstance(message, _RetryRewind):
            for shard_name in sorted(self._rewinds_due):
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
        holds. While the buffer cannot say (it restarts too), nothing is read and the rewind
        is retried every ``REWIND_RETRY_S``: read without its ranges, the reads it stored
        would come again with new timestamps (kept by Loki), and reading on would send newer
        lines of those streams before the rewound ones."""
        index = self._shard_of_name.get(shard_name)
        if index is None:
            return
        buffered: Buffered | None = None
        if self.buffer is not None:
            try:
                buffered = self.buffer.ask(ResumeRanges(self.source.name),
                                           timeout=REWIND_ASK_TIMEOUT_S)
            except (DeliveryRefused, pykka.Timeout):
                self._rewinds_due.add(shard_name)
                self.scheduler.call_later(REWIND_RETRY_S, self.actor_ref, _RetryRewind())
                return
        self._rewinds_due.discard(shard_name)
        n = len(self.shards)

        def selects(stream: str) -> bool:
            return shard_index(stream, n) == index

        dropped = self.source.rewind(selects, buffered)
        self._pending = [e for e in self._pending if not selects(e.stream)]
        if dropped:
            log.info("%s: %s restarted; re-reading %d unacknowledged batches",
                     self.source.name, shard_name, dropped)
        self._pump()

    # -- reading ---------------------------------------------------------------------------

    def _send_pending(self) -> bool:
        """Offer held entries in order; False if a shard refused (then we pause)."""
        n = len(self.shards)
        while self._pending:
            entries = self._pending[0]
            try:
                self.shards[shard_index(entries.stream, n)].tell(entries)
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
        name = self.source.name
        if reading.lines:
            SOURCE_LINES.labels(name).inc(reading.lines)
            SOURCE_BYTES.labels(name).inc(reading.bytes)
        if reading.truncated_lines:
            SOURCE_TRUNCATED.labels(name).inc(reading.truncated_lines)
        self._tell_keeper(list(reading.updates))
        self._pending.extend(dataclasses.replace(e, ack_to=self._address)
                             for e in reading.entries)
        if not self._send_pending():
            self._pause()
            return
        if reading.more and not self._pump_sent:
            self._pump_sent = True
            self.actor_ref.tell(_Pump())

    def _pause(self) -> None:
        SOURCE_PAUSES.labels(self.source.name).inc()
        self._paused = True
        if not self._pump_sent:
            self._pump_sent = True
            self.scheduler.call_later(PAUSE_S, self.actor_ref, _Pump())
