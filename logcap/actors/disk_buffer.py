"""DiskBuffer: the durable stage between the shards and the sinks.

To a shard the buffer is one sink, named ``buffer``: a shard sends it
:class:`~logcap.messages.Deliver` and gets a :class:`~logcap.messages.SinkResult` back at the
message's ``reply_to``, so the shard's per-sink tracking, retries and backpressure apply
unchanged. The verdict is *delivered* only once the batch is **fsynced** (group commit, one
fsync per ``fsync_interval`` covers every append since the last one; sooner once
:data:`EARLY_SYNC_BYTES` wait, in a burst): that is the moment the shard acknowledges the read
to its source, and positions move. With the buffer full (``when_full: block``) or the disk full
(ENOSPC), the verdict is *retry* (reasons ``buffer_full``, ``disk_full``): the shard backs off,
sources stop reading, nothing is lost, and everything resumes by itself when space returns. A
disk-full state is reported in ``/health`` (``Degraded`` ask).

To the sinks the buffer is the shard: it reads each sink's next batches from that sink's own
cursor (at most ``MAX_INFLIGHT_PER_SINK`` outstanding) into an
:class:`~logcap.dispatch.outbox.Outbox` (batch id = record seq), sends them as ``Deliver``
(``reply_to`` = this buffer) and settles the seq on the sink's verdict; a retry closes that
sink's gate (only that sink's) for the backoff delay (exponential, full jitter, ``Retry-After``
honoured) and then its failed batches are resent oldest first, so a stream arrives in order.
The buffer watches each sink's name: at a restart (``Rebound``) the sink gets its unanswered
batches again. Rejected batches are settled (a DLQ, when there is one, has them). What stays
here, outside the outbox: the store's cursors, the group-commit fsync, the persisted records and
the hand-off to the DLQ.

With ``batch_persistence`` (an :class:`~logcap.state.inflight.InflightBatches`), every batch
sent to a sink is recorded (attempts, failures, last error, next retry), the records ride on the
group commit, and a batch that failed ``max_recovery_retries + 1`` times, or whose first failure
is ``batch_ttl`` old, is handed to the DLQ and settled (if the DLQ refuses it, it is retried as
before: nothing is given up that is not stored elsewhere). Without it, a sink's failed batches
are retried for ever, under backpressure.

Messages: ``Deliver`` and ``ResumeRanges`` (data, from shards and sources), ``SinkResult``
(control, from sinks), ``Rebound`` (control, from the directory: a sink restarted),
``SinksChanged`` (ask, a reload: sinks join, reading from the records stored after, or leave),
``Degraded`` and ``BufferStats`` (asks),
private timers. On start: opens the store (recovery: torn tails cut, corrupt records skipped,
all logged), watches the sinks and tells them ``ReleaseHold`` (a predecessor may have left a
hold). The shards watch the buffer's name, so what they had sent a predecessor comes again.
On stop: fsync, cursors persisted, store closed. A failed fsync crashes the actor on purpose:
only a reopen knows what is on disk.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from logcap.actors.buffer_metrics import publish_store_stats
from logcap.actors.dead_letters import hand_over
from logcap.actors.sink_set import change_sinks
from logcap.dispatch.outbox import Gate, OpenGate, Outbox, Send
from logcap.messages import (
    HELD,
    Deliver,
    Entries,
    Outcome,
    ReleaseHold,
    SinkResult,
    SinksChanged,
)
from logcap.metrics import (
    BUFFER_CAPACITY,
    BUFFER_RECOVERED,
    INFLIGHT_GIVEN_UP,
    INFLIGHT_OVERDUE,
    INFLIGHT_PENDING,
    RESENT_LINES,
)
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import DataMessage, DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle
from logcap.state.buffer.cursor_pacing import CursorPacing
from logcap.state.buffer.recovery import RecoveryReport
from logcap.state.buffer.segments import BufferFull, SegmentStore
from logcap.state.buffer.stored_ranges import StoredRanges
from logcap.state.dlq_entry import DeadLetter
from logcap.state.inflight import RETRY, InflightBatches

__all__ = ["BUFFER_SINK", "MAX_INFLIGHT_PER_SINK", "BufferStats", "Degraded", "DiskBuffer",
           "ResumeRanges"]

log = logging.getLogger(__name__)

BUFFER_SINK = "buffer"
MAX_INFLIGHT_PER_SINK = 4
MAINTAIN_INTERVAL_S = 1.0
EARLY_SYNC_BYTES = 4 * 1024 * 1024
"""The group commit comes early once this many payload bytes wait for it: in a burst the sources'
unacknowledged reads (16 MiB each, :data:`~logcap.sources.files.generation.
DEFAULT_MAX_INFLIGHT_BYTES`) would otherwise fill before ``fsync_interval`` passes and reading
would stall until it does (at 10,000 lines/s of 200 bytes an interval holds 0.4 MB: the timer
commits). On ``bench/peers.py``'s 1,000,000-line burst: 350,000 -> 419,000 lines/s (the
sources no longer wait for the timer), CPU 1.36 -> 1.45 µs per line (more fsyncs)."""
DEFAULT_RESUME_WINDOW_S = 30.0
"""How far back (by line timestamp) start-up looks in the buffer for reads newer than the
positions file; the tree passes max(this, 3 x positions.flush_interval)."""


@dataclass(frozen=True, slots=True)
class Degraded:
    """Ask: the reason the buffer cannot take data now ("" when it can)."""


@dataclass(frozen=True, slots=True)
class ResumeRanges(DataMessage):
    """Ask: for ``source``, the ranges held in the buffer's recent records, by stream identity
    of their tokens (:data:`~logcap.origin.Buffered`: ``{stream: [(start, end), ...]}``; for
    files the stream is ``(dev, ino, fingerprint)``). Tokens without a stream are left out.

    It travels in the **data lane**, behind the ``Deliver`` s queued before it: asked in the
    control lane, it overtook the batches a crashed shard had sent, the answer missed them, and
    the source read them again with new timestamps (Loki kept both copies). The buffer
    fsyncs before it answers (a group commit), so every range answered is durable and the
    source commits the position it resumes at."""

    source: str


@dataclass(frozen=True, slots=True)
class BufferStats:
    """Ask: the store's counters."""


@dataclass(frozen=True, slots=True)
class _SyncDue:
    pass


@dataclass(frozen=True, slots=True)
class _CursorsDue:
    """The cursors' write is due (:mod:`~logcap.state.buffer.cursor_pacing`): a commit writes
    them."""


@dataclass(frozen=True, slots=True)
class _Maintain:
    pass


@dataclass(frozen=True, slots=True)
class _Feed:
    pass


class DiskBuffer(LogcapActor):
    def __init__(self, settings: Any, store: SegmentStore, sinks: dict[str, Handle],
                 scheduler: Scheduler, retry_base_s: float,
                 retry_max_s: float, resume_window_s: float = DEFAULT_RESUME_WINDOW_S,
                 batches: InflightBatches | None = None, dlq: Handle | None = None,
                 clock: Callable[[], float] = time.time, **kw: Any) -> None:
        super().__init__(**kw)
        self.batches = batches
        self.dlq = dlq
        self.clock = clock
        self.resume_window_s = resume_window_s
        self._ranges = StoredRanges()
        self.settings = settings
        self.store = store
        self.sinks = dict(sinks)  # its own: a reload changes it (SinksChanged)
        self.scheduler = scheduler
        self.outbox: Outbox[tuple[Entries, ...]] = Outbox(
            sinks, base_delay_s=retry_base_s, max_delay_s=retry_max_s, clock=clock)
        self._sink_of = {handle.name: sink for sink, handle in sinks.items()}
        self._waiting: list[tuple[int, Handle, int]] = []  # (seq, reply_to, batch_id) to fsync
        self._sync_timer: TimerHandle | None = None
        self._dropped_lines: dict[str, int] = {}  # the store's totals already counted
        self._degraded = ""
        self._feed_pending = False
        self._cursors = CursorPacing()
        self._cursors_timer: TimerHandle | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def handle_start(self) -> None:
        report = self.store.open()
        for problem in _report_lines(report):
            log.error("disk buffer: %s", problem)
            BUFFER_RECOVERED.inc()
        log.info("disk buffer %s: %d segments, seqs %d..%d", self.settings.directory,
                 report.segments, report.first_seq, report.last_seq)
        since_ns = int((time.time() - self.resume_window_s) * 1e9)
        for _, batch in self.store.select(since_ns=since_ns):
            self._ranges.add(batch)
        BUFFER_CAPACITY.set(self.settings.max_total_size)
        if self.batches is not None:
            self._load_batches()
        self.scheduler.call_later(MAINTAIN_INTERVAL_S, self.actor_ref, _Maintain())
        for handle in self.sinks.values():
            handle.watch(self.address)
        _release_holds(self.name, self.sinks.values())
        self._feed()

    def _load_batches(self) -> None:
        assert self.batches is not None
        for problem in self.batches.load(self.clock()):
            log.error("disk buffer: %s", problem)
        self.batches.forget_settled({sink: self.store.acked_seq(sink) for sink in self.sinks})
        if len(self.batches):
            log.info("disk buffer: %d batches were in flight at the last stop; resent with "
                     "their attempts counted", len(self.batches))

    def handle_stop(self) -> None:
        try:
            self.store.sync()
        except OSError as exc:
            log.error("disk buffer: final fsync failed: %s", exc)
        self._persist_batches()
        try:
            self.store.close()
        except OSError as exc:  # e.g. ENOSPC writing the cursors: resent after restart
            log.error("disk buffer: closing failed: %s", exc)

    def handle_crash(self) -> None:
        """Release the store's descriptors and directory lock without syncing or persisting
        the cursors (what kill -9 leaves): the restarted buffer reopens and recovers it, and
        the shards resend what it had not answered."""
        for timer in (self._sync_timer, self._cursors_timer):
            if timer is not None:
                timer.cancel()
        self.store.abandon()

    # -- messages --------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self._append(message)
        elif isinstance(message, _SyncDue):
            self._sync_timer = None
            self._sync()
        elif isinstance(message, _CursorsDue):
            self._cursors_timer = None
            self._sync()
        elif isinstance(message, SinkResult):
            self._on_result(message)
        elif isinstance(message, OpenGate):
            self.outbox.open_gate(message.sink)
            self._feed()
        elif isinstance(message, _Feed):
            self._feed_pending = False
            self._feed()
        elif isinstance(message, Rebound):
            sink = self._sink_of.get(message.name)
            if sink is not None:  # what it was sent and had not answered is resent
                self.outbox.restarted(sink)
                self._feed()
        elif isinstance(message, SinksChanged):
            self._change_sinks(message)
            return True
        elif isinstance(message, _Maintain):
            self._maintain()
        elif isinstance(message, Degraded):
            return self._degraded
        elif isinstance(message, BufferStats):
            return {**self.store.stats(), "in_flight": self._in_flight_stats()}
        elif isinstance(message, ResumeRanges):
            self._sync()  # every range answered is durable: the source may commit past it
            return self._ranges.of(message.source)
        else:
            return super().handle(message)
        return None

    def _change_sinks(self, change: SinksChanged) -> None:
        """A reload added or removed sinks: an added one reads the records stored from now on
        (its cursor starts at the last seq, persisted at once); a removed one is sent nothing
        more, its cursor and in-flight records dropped (segments only it held are released at
        the next maintenance)."""
        released, added = change_sinks(change, self.sinks, self._sink_of, self.outbox,
                                       self.address)
        for sink in released:
            self.store.remove_sink(sink)
        for sink in added:
            self.store.add_sink(sink)
            _release_holds(self.name, [self.sinks[sink]])
        if self.batches is not None:
            self.batches.forget_settled({sink: self.store.acked_seq(sink) for sink in self.sinks})
        self._persist_cursors()
        self._feed()

    @staticmethod
    def _reply(reply_to: Handle, result: SinkResult) -> None:
        try:
            reply_to.tell(result)
        except DeliveryRefused:
            pass  # the shard restarted: its sources re-read, we may store it twice

    def _append(self, message: Deliver) -> None:
        try:
            seq = self.store.append(list(message.parts))
        except BufferFull:
            self._refuse(message, "buffer_full", "the disk buffer is full (max_total_size)")
            return
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            self._refuse(message, "disk_full", f"no space left on {self.settings.directory}")
            return
        if self._degraded:
            log.info("disk buffer: accepting data again")
            self._degraded = ""
        self._ranges.add(message.parts)  # a source restarted now resumes past it too
        self._waiting.append((seq, message.reply_to, message.batch_id))
        if self.settings.fsync_interval <= 0 or self.store.unsynced_bytes >= EARLY_SYNC_BYTES:
            self._sync()
        elif self._sync_timer is None:
            self._sync_timer = self.scheduler.call_later(self.settings.fsync_interval,
                                                         self.actor_ref, _SyncDue())
        self._schedule_feed()

    def _refuse(self, message: Deliver, reason: str, detail: str) -> None:
        if self._degraded != detail:
            log.error("disk buffer: %s; backpressure until it has room", detail)
        self._degraded = detail
        self._reply(message.reply_to, SinkResult(message.batch_id, BUFFER_SINK, Outcome.RETRY,
                                              reason, 1.0, detail))

    def _sync(self) -> None:
        durable = self.store.sync()  # an OSError here crashes us: a reopen must check
        if self._cursors.due(self.clock()):
            self._persist_cursors()
        elif self._cursors.changed:
            self._arm_cursors()
        self._persist_batches()
        still = []
        for seq, reply_to, batch_id in self._waiting:
            if seq <= durable:
                self._reply(reply_to, SinkResult(batch_id, BUFFER_SINK, Outcome.DELIVERED))
            else:
                still.append((seq, reply_to, batch_id))
        self._waiting = still

    def _arm_cursors(self) -> None:
        """A commit for when the cursors are next due (one timer at a time)."""
        if self._cursors_timer is None:
            self._cursors_timer = self.scheduler.call_later(
                self._cursors.wait(self.clock()), self.actor_ref, _CursorsDue())

    def _persist_cursors(self) -> None:
        """Write the cursors (a failure is logged and retried when they are next due). A cursor
        may name a seq that a crash then takes from the segments: the store numbers on from
        the highest seq a cursor names, so no seq is given twice."""
        self._cursors.written(self.clock())
        try:
            self.store.persist_cursors()
        except OSError as exc:
            log.error("disk buffer: writing cursors failed: %s (retried)", exc)
            self._cursors.change()
            self._arm_cursors()

    # -- feeding the sinks -----------------------------------------------------------------

    def _schedule_feed(self) -> None:
        if not self._feed_pending:
            self._feed_pending = True
            self.actor_ref.tell(_Feed())

    def _feed(self) -> None:
        """Read each sink's next records into the outbox (up to MAX_INFLIGHT_PER_SINK
        unsettled; none while its gate is closed), then send what may go."""
        for sink in self.sinks:
            room = MAX_INFLIGHT_PER_SINK - self.outbox.unsettled(sink)
            if room <= 0 or self.outbox.gate_closed(sink):
                continue  # full, or retrying: everything waits behind the oldest failed batch
            for seq, batch in self.store.read(sink, room):
                record = self.batches.get(sink, seq) if self.batches is not None else None
                self.outbox.add(seq, tuple(batch), [sink],
                                attempt=1 + (record.attempts if record is not None else 0))
        for gate in self.outbox.pump(self._transmit):
            self._arm(gate)
        for problem in self.store.drain_problems():
            log.error("disk buffer: %s", problem)

    def _transmit(self, send: Send[tuple[Entries, ...]]) -> bool:
        lines = sum(len(p.lines) for p in send.payload)
        try:
            self.sinks[send.sink].tell(Deliver(send.batch_id, send.payload, lines, self.address,
                                               send.attempt))
        except DeliveryRefused:
            return False
        if send.resend:
            RESENT_LINES.labels(self.name, send.sink).inc(lines)
        if self.batches is not None:
            self.batches.sent(send.sink, send.batch_id, lines, self.clock())
        return True

    def _arm(self, gate: Gate | None) -> None:
        if gate is not None:  # one timer per sink keeps the order
            self.scheduler.call_later(gate.delay_s, self.actor_ref, OpenGate(gate.sink))

    def _on_result(self, result: SinkResult) -> None:
        batch = self.outbox.payload(result.batch_id)
        if batch is None or self.outbox.attempt(result.batch_id, result.sink) is None:
            return  # not ours (e.g. from before a restart of the sink, already resent)
        if result.outcome is Outcome.RETRY and result.reason == HELD:
            self._arm(self.outbox.held(result.batch_id, result.sink))  # not a failure
        elif result.outcome is Outcome.RETRY:
            failure = self.outbox.failed(result.batch_id, result.sink, result.retry_after_s)
            if failure is None:
                return  # an answer to an earlier send
            if self.batches is not None and self._give_up(result, batch, failure.delay_s):
                self.outbox.abandon(failure)
                self._settle(result.sink, result.batch_id)
                _release_holds(self.name, [self.sinks[result.sink]])
                return
            self._arm(failure.gate)
        else:
            self._settle(result.sink, result.batch_id)

    def _give_up(self, result: SinkResult, batch: tuple[Entries, ...], delay: float) -> bool:
        """Record the failure; True if the batch was handed to the DLQ (so it is settled)."""
        assert self.batches is not None
        error = f"{result.reason}: {result.detail}" if result.detail else result.reason
        verdict = self.batches.failed(result.sink, result.batch_id, error, delay, self.clock())
        if verdict == RETRY:
            return False
        record = self.batches.get(result.sink, result.batch_id)
        assert record and record.first_failure is not None and record.last_failure is not None
        entry = DeadLetter.from_parts(result.sink, verdict, None, record.attempts,
                                      record.first_failure, record.last_failure,
                                      record.last_error, batch)
        assert self.dlq is not None  # batch_persistence requires the DLQ (config check)
        why = hand_over(self.dlq, entry)
        if why:
            log.warning("disk buffer: batch %s (%d lines) %s, but the DLQ cannot take it now "
                        "(%s); retrying", record.id, record.lines, verdict, why)
            return False
        log.warning("disk buffer: batch %s (%d lines) %s after %d attempts (%s); moved to the "
                    "DLQ as entry %s", record.id, record.lines, verdict, record.attempts,
                    record.last_error, entry.id)
        INFLIGHT_GIVEN_UP.labels(result.sink, verdict).inc()
        return True

    def _settle(self, sink: str, seq: int) -> None:
        """``sink`` is done with ``seq`` (delivered, rejected or dead-lettered)."""
        self.outbox.settle(seq, sink)
        if self.batches is not None:
            self.batches.done(sink, seq)
        self.store.ack(sink, seq)
        self._cursors.change()
        self._arm_cursors()
        self._feed()

    def _persist_batches(self) -> None:
        if self.batches is None:
            return
        try:
            self.batches.persist(self.clock())
        except OSError as exc:
            log.warning("disk buffer: writing %s failed: %s (retried)", self.batches.path, exc)

    def _in_flight_stats(self) -> dict[str, Any]:
        """Per sink: batches sent and unanswered, failed and waiting for their retry, read but
        not yet sent; with batch_persistence, the persisted records too."""
        out: dict[str, Any] = {}
        recorded = self.batches.pending(self.sinks) if self.batches is not None else None
        for sink in self.sinks:
            row: dict[str, Any] = {"batches": self.outbox.unsettled(sink),
                                   "failed": self.outbox.waiting(sink),
                                   "retry_gate_closed": self.outbox.gate_closed(sink)}
            if recorded is not None:
                row["persisted"] = recorded[sink]
            out[sink] = row
        return out

    def _maintain(self) -> None:
        if self._cursors.due(self.clock()):  # else written by a commit, when due
            self._persist_cursors()
        try:
            # Runs even when the cursors could not be written: freeing acknowledged segments is
            # the way out of a full disk (see SegmentStore.collect).
            self.store.collect()
        except OSError as exc:
            log.error("disk buffer: releasing segments failed: %s", exc)
        publish_store_stats(self.store.stats(), self._dropped_lines)
        for sink in self.sinks:
            INFLIGHT_PENDING.labels(sink).set(self.outbox.unsettled(sink))
        self._persist_batches()  # failures change records without a group commit
        if self.batches is not None:
            for record in self.batches.overdue(self.clock()):
                INFLIGHT_OVERDUE.labels(record.sink).inc()
                log.warning("disk buffer: batch %s (%d lines) sent %.0fs ago, no answer yet "
                            "(batch_timeout); the sink's request timeout and the supervisor's "
                            "hang check resend it", record.id, record.lines,
                            self.clock() - record.last_sent)
        if self._degraded:
            self._schedule_feed()
        self.scheduler.call_later(MAINTAIN_INTERVAL_S, self.actor_ref, _Maintain())
        self._feed()


def _release_holds(sender: str, sinks: Iterable[Handle]) -> None:
    """Tell ``sinks`` to stop holding ``sender``'s batches behind a failed one."""
    for sink in sinks:
        try:
            sink.tell(ReleaseHold(sender))
        except DeliveryRefused:
            pass  # not running: a restarted sink holds nothing


def _report_lines(report: RecoveryReport) -> list[str]:
    return [*report.problems, *report.key_problems]
