"""DispatcherShard: batches entries and fans each batch out to every sink, tracking each sink.

Messages taken:

* :class:`~logcap.messages.Entries` (data): first run through the pipeline its origin is
  routed to (:class:`~logcap.pipeline.routing.Router`, if any; stage failures and drops
  counted in the pipeline metrics), then added to the open batch; a batch closes at
  ``batch_size`` lines, ``batch_timeout`` seconds after its oldest lines were seen by their
  source (``Entries.seen``; else after they arrived here: one timer, armed for that
  deadline), or at once when no source in it reads again before that deadline
  (:class:`~logcap.dispatch.batcher.Batcher`); then a :class:`~logcap.messages.Deliver`
  goes to every sink. Entries whose pipeline has a ``rate_limit`` in block mode, and the
  later ones of their ``(source, stream)``, are held first while the stream's bucket lacks
  their tokens (:class:`~logcap.pipeline.throttle.Throttle`; one timer lets them out, in
  pieces, as tokens refill; ``logcap_pipeline_delayed_lines_total``,
  ``logcap_pipeline_blocked_seconds_total``, ``logcap_pipeline_held_lines``). Held entries
  are not acknowledged, so their source's read window bounds them.
* :class:`~logcap.messages.SinkResult` (control, the answer to a ``Deliver`` whose ``reply_to``
  is this shard; batch ids are unique in the process, so a late answer to a predecessor's
  batch, which reaches the same name, never settles one of this shard's): the per-sink
  bookkeeping is a :class:`~logcap.dispatch.outbox.Outbox`.
  Delivered/rejected settles the batch for that sink; retry closes that sink's retry gate (only
  that sink's) for the backoff delay (exponential, full jitter, honouring Retry-After), then
  its batches are resent oldest first, so order is kept; a ``held`` retry puts the batch back
  in line without counting an attempt. A transient failure is retried until the batch is
  delivered (no retry budget, see ARCHITECTURE.md); the :data:`WARN_AFTER_ATTEMPTS`-th failed
  attempt of a batch to a sink is logged once as a warning. When every sink has settled a
  batch, its read tokens go back as :class:`~logcap.messages.Acked` to each part's ``ack_to``
  (one ``Acked`` per source).
* :class:`~logcap.runtime.directory.Rebound` (control): a watched sink (re)started; batches it
  had been sent and not answered are resent to it.
* :class:`InFlight` (ask): lines held by this shard (held for a rate limit + open batch +
  unsettled batches).
* :class:`HeldFrom` (ask, **data lane**: it queues behind every ``Entries`` its asker sent
  before it): the lines of one source this shard holds in its open batch and unsettled
  batches; an open batch holding some is closed and sent first. A source that restarted, or
  whose shard restarted, waits for 0 before it asks the disk buffer what it holds (see
  SourceShell). Reads held for a ``rate_limit`` block are not counted (they may be held for
  long; if they are read again, the timestamp journal gives the copies the same timestamps).
* :class:`Flush` (ask): close the open batch now (the agent's drain before a stop); answers
  like ``InFlight``.
* :class:`ReplaceRouting` (ask, a config reload): the entries taken from now on run through
  freshly compiled pipelines of the new routing (new stage state); entries already processed
  (in the open batch, in flight) are not processed again.
* :class:`~logcap.messages.SinksChanged` (ask, a config reload): sinks added get the batches
  dispatched from now on; sinks removed are sent nothing more, and a batch only they still
  held is released (its reads acknowledged: the other sinks have it).

On start it watches each sink's name (:meth:`~logcap.runtime.directory.Handle.watch`). A
shard does not know its sources: they watch its name, so when it (re)starts they are told
:class:`~logcap.runtime.directory.Rebound` and re-read what they had sent to its predecessor.
On stop the open batch and the unsettled ones are dropped from memory; their lines are not
acknowledged, so they are read again after the restart (at-least-once). A crash does the
same.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcap.actors.sink_set import change_sinks
from logcap.dispatch.batcher import Batcher
from logcap.dispatch.outbox import Gate, OpenGate, Outbox, Send
from logcap.messages import HELD, Acked, Deliver, Entries, Outcome, SinkResult, SinksChanged
from logcap.metrics import (
    PIPELINE_BLOCKED,
    PIPELINE_DELAYED,
    PIPELINE_DROPS,
    PIPELINE_FAILURES,
    PIPELINE_HELD,
    PIPELINE_LINES,
    RESENT_LINES,
)
from logcap.origin import ReadToken
from logcap.pipeline.routing import Router, Routing
from logcap.pipeline.stages.filter import Demand
from logcap.pipeline.throttle import Released, Throttle
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import DataMessage, DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle

__all__ = ["WARN_AFTER_ATTEMPTS", "DispatcherShard", "Flush", "HeldFrom", "InFlight",
           "ReplaceRouting", "ShardSettings"]

log = logging.getLogger(__name__)

RELEASE_MIN_S = 0.005
"""The release timer is armed at least this far ahead (no busy loop on rounding)."""

WARN_AFTER_ATTEMPTS = 10
"""Failed attempts of one batch to one sink after which the shard logs a warning (once); the
batch keeps being retried."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """Ask: lines this shard holds that are not yet settled by every sink."""


@dataclass(frozen=True, slots=True)
class HeldFrom(DataMessage):
    """Ask (data lane): how many lines of ``source`` this shard holds unsettled."""

    source: str


_BATCH_IDS = itertools.count(1)
"""Batch ids of every shard of the process. A restarted shard used to count from 1 again:
the disk buffer's answer to batch 5 of the crashed predecessor (fsynced after the crash)
reached the new shard's name and settled *its* batch 5, acknowledging lines never stored,
or dropping it from its queue unsent. Ids never reused, such an answer is ignored."""


@dataclass(frozen=True, slots=True)
class Flush:
    """Ask: send the open batch now; the answer is the lines still held (as ``InFlight``)."""


@dataclass(frozen=True, slots=True)
class ReplaceRouting:
    """Ask: process the next entries with ``routing`` (None: no processing)."""

    routing: Routing | None


@dataclass(frozen=True, slots=True)
class _FlushDue:
    pass


@dataclass(frozen=True, slots=True)
class _ReleaseDue:
    """Timer: held entries may go (tokens refilled)."""


@dataclass(frozen=True, slots=True)
class _Batch:
    """A closed batch: its parts (each with its read token) and their line count."""

    parts: tuple[Entries, ...]
    lines: int


@dataclass(frozen=True, slots=True)
class ShardSettings:
    batch_size: int
    batch_timeout_s: float
    retry_base_delay_s: float
    retry_max_delay_s: float


COALESCE_BATCHES = 4
"""A resend after a failure carries the batches queued behind the failed one, up to this many
batches' worth of lines (``batch_size`` each) in one request."""


def _lines_of(batch: _Batch) -> int:
    return batch.lines


class DispatcherShard(LogcapActor):
    def __init__(
        self,
        settings: ShardSettings,
        sinks: dict[str, Handle],
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
        router: Router | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.router = router
        self.sinks = dict(sinks)  # its own: a reload changes it (SinksChanged)
        self.scheduler = scheduler
        self.clock = clock
        self.batcher = Batcher(settings.batch_size, settings.batch_timeout_s)
        self.outbox: Outbox[_Batch] = Outbox(
            sinks, base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s, clock=clock)
        self._sink_of = {handle.name: sink for sink, handle in sinks.items()}
        self._lines_held = 0  # lines of the batches not yet settled by every sink
        self._flush_timer: TimerHandle | None = None
        self._flush_at = 0.0  # the open batch's deadline the flush timer is armed for
        self.throttle = Throttle()
        self._release_timer: TimerHandle | None = None
        self._release_at = 0.0
        self._held_published = 0

    def handle_start(self) -> None:
        for handle in self.sinks.values():
            handle.watch(self.address)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            entries, demand = self._process(message)
            if demand is None and not self.throttle.streams():
                self._add(entries)  # nothing held, no rate limit: what offer() would do
                return None
            now = self.clock()
            for released in self.throttle.offer((entries.source, entries.stream), entries,
                                                demand, now):
                self._count_release(released)
                self._add(released.entries)
            self._held_changed(now)
        elif isinstance(message, _ReleaseDue):
            self._release_timer = None
            now = self.clock()
            for released in self.throttle.release(now):
                self._count_release(released)
                self._add(released.entries)
            self._held_changed(now)
        elif isinstance(message, SinkResult):
            self._on_result(message)
        elif isinstance(message, _FlushDue):
            self._flush_timer = None
            if len(self.batcher):
                self._dispatch(self.batcher.take())
        elif isinstance(message, OpenGate):
            self.outbox.open_gate(message.sink)
            self._pump()
        elif isinstance(message, Rebound):
            sink = self._sink_of.get(message.name)
            if sink is not None:
                self.outbox.restarted(sink)
                self._pump()
        elif isinstance(message, (Flush, InFlight)):
            if isinstance(message, Flush) and len(self.batcher):
                self._dispatch(self.batcher.take())
            return self._lines_held + self.batcher.lines + self.throttle.held_lines
        elif isinstance(message, HeldFrom):
            return self._held_from(message.source)
        elif isinstance(message, SinksChanged):
            self._change_sinks(message)
            return True
        elif isinstance(message, ReplaceRouting):
            self.router = message.routing.router() if message.routing is not None else None
        else:
            return super().handle(message)
        return None

    def _change_sinks(self, change: SinksChanged) -> None:
        """A reload added or removed sinks (:class:`~logcap.messages.SinksChanged`); batches
        only a removed sink still held are released (their reads acknowledged)."""
        released, _ = change_sinks(change, self.sinks, self._sink_of, self.outbox,
                                   self.address)
        for batches in released.values():
            for batch in batches:
                self._lines_held -= batch.lines
                self._release(batch)
        self._pump()

    def _add(self, entries: Entries) -> None:
        now = self.clock()
        closed = self.batcher.add(entries, now)
        if closed is not None:
            self._dispatch(closed)
            return
        deadline = self.batcher.deadline()
        assert deadline is not None
        if self._flush_timer is not None:
            if self._flush_at <= deadline:
                return
            self._flush_timer.cancel()  # these entries were seen earlier: sooner
        self._flush_at = deadline
        self._flush_timer = self.scheduler.call_later(deadline - now, self.actor_ref,
                                                      _FlushDue())

    def _held_changed(self, now: float) -> None:
        """Publish what is held; arm the release timer for the first held entries (one)."""
        if self.throttle.held_lines != self._held_published:
            self._held_published = self.throttle.held_lines
            PIPELINE_HELD.labels(self.name).set(self._held_published)
        if not self.throttle.streams():
            return
        due = self.throttle.next_release_s(now)
        if due is None:
            return
        due = max(due, RELEASE_MIN_S)
        if self._release_timer is not None:
            if self._release_at <= now + due:
                return
            self._release_timer.cancel()  # another stream's entries may go sooner
        self._release_at = now + due
        self._release_timer = self.scheduler.call_later(due, self.actor_ref, _ReleaseDue())

    @staticmethod
    def _count_release(released: Released) -> None:
        demand = released.demand
        if demand is not None and released.held_s > 0:
            PIPELINE_DELAYED.labels(demand.pipeline, demand.stage).inc(
                len(released.entries.lines))
            PIPELINE_BLOCKED.labels(demand.pipeline, demand.stage).inc(released.held_s)

    def _process(self, entries: Entries) -> tuple[Entries, Demand | None]:
        """``entries`` through its pipeline (unchanged without one), and the demand of its
        block-mode rate limit, if any. A fully dropped read still goes on, with no lines, so
        that its token is acknowledged in order."""
        pipeline = self.router.route(entries) if self.router is not None else None
        if pipeline is None:
            return entries, None
        result = pipeline.run(entries, self.clock())
        PIPELINE_LINES.labels(pipeline.name).inc(len(entries.lines))
        for (stage, reason), lines in result.failures.items():
            PIPELINE_FAILURES.labels(pipeline.name, stage, reason).inc(lines)
        for (stage, reason), lines in result.drops.items():
            PIPELINE_DROPS.labels(pipeline.name, stage, reason).inc(lines)
        return result.entries, result.demand

    def _held_from(self, source: str) -> int:
        """Lines of ``source`` in the open batch (closed and sent now if there are some) and
        in the batches not settled by every sink."""
        if any(part.source == source for part in self.batcher.parts()):
            self._dispatch(self.batcher.take())
        return sum(len(part.lines) for batch in self.outbox.payloads()
                   for part in batch.parts if part.source == source)

    def handle_stop(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._release_timer is not None:
            self._release_timer.cancel()
        PIPELINE_HELD.labels(self.name).set(0)  # held entries are read again

    def handle_crash(self) -> None:
        """Cancel the timers; the batches and entries held are the sources' to read again."""
        self.handle_stop()

    def _dispatch(self, parts: list[Entries]) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch = _Batch(tuple(parts), sum(len(p.lines) for p in parts))
        if not self.sinks:
            self._release(batch)
            return
        self._lines_held += batch.lines
        self.outbox.add(next(_BATCH_IDS), batch)
        self._pump()

    def _pump(self) -> None:
        for gate in self.outbox.pump(self._transmit, coalesce=_lines_of,
                                     max_weight=COALESCE_BATCHES * self.settings.batch_size):
            self._arm(gate)

    def _transmit(self, send: Send[_Batch]) -> bool:
        parts, lines = send.payload.parts, send.payload.lines
        if send.also:  # a resend carrying the batches queued behind it
            parts = tuple(p for batch in (send.payload, *(b for _, b in send.also))
                          for p in batch.parts)
            lines += sum(batch.lines for _, batch in send.also)
        try:
            self.sinks[send.sink].tell(Deliver(send.batch_id, parts, lines, self.address,
                                               send.attempt))
        except DeliveryRefused:
            return False
        if send.resend:
            RESENT_LINES.labels(self.name, send.sink).inc(lines)
        return True

    def _arm(self, gate: Gate | None) -> None:
        """One retry timer per sink, not per batch, so a stream's batches reach it in order."""
        if gate is not None:
            self.scheduler.call_later(gate.delay_s, self.actor_ref, OpenGate(gate.sink))

    def _on_result(self, result: SinkResult) -> None:
        if result.outcome is Outcome.RETRY and result.reason == HELD:
            self._arm(self.outbox.held(result.batch_id, result.sink))
        elif result.outcome is Outcome.RETRY:
            failure = self.outbox.failed(result.batch_id, result.sink, result.retry_after_s)
            if failure is None:
                return
            if failure.failures == WARN_AFTER_ATTEMPTS:  # retried until delivered
                log.warning("%s: batch %d to %s failed %d times (%s); still retrying",
                            self.name, result.batch_id, result.sink, failure.failures,
                            result.reason)
            self._arm(failure.gate)
        else:
            for done in self.outbox.settle_send(result.batch_id, result.sink):
                self._lines_held -= done.lines
                self._release(done)

    def _release(self, batch: _Batch) -> None:
        by_source: dict[str, tuple[Handle, list[ReadToken]]] = {}
        for part in batch.parts:
            if part.ack_to is not None:
                by_source.setdefault(part.ack_to.name, (part.ack_to, []))[1].append(part.token)
        for handle, tokens in by_source.values():
            try:
                handle.tell(Acked(tuple(tokens)))
            except DeliveryRefused:
                log.debug("%s: source %s gone; its ack is dropped (it will re-read)",
                          self.name, handle.name)
