"""DispatcherShard: batches entries and fans each batch out to every sink, tracking each sink.

Messages taken:

* :class:`~logcap.messages.Entries` (data): first run through the pipeline its origin is
  routed to (:class:`~logcap.pipeline.routing.Router`, if any; stage failures and drops
  counted in the pipeline metrics), then added to the open batch; a batch closes at
  ``batch_size`` lines or ``batch_timeout`` seconds, then a :class:`~logcap.messages.Deliver`
  goes to every sink.
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
* :class:`InFlight` (ask): lines held by this shard (open batch + unsettled batches).
* :class:`HeldFrom` (ask, **data lane**: it queues behind every ``Entries`` its asker sent
  before it): the lines of one source this shard holds, not yet settled by every sink; an
  open batch holding some is closed and sent first. A source that restarted, or whose shard
  restarted, waits for 0 before it asks the disk buffer what it holds (see SourceShell).
* :class:`Flush` (ask): close the open batch now (the agent's drain before a stop); answers
  like ``InFlight``.
* :class:`ReplaceRouting` (ask, a config reload): the entries taken from now on run through
  freshly compiled pipelines of the new routing (new stage state); entries already processed
  (in the open batch, in flight) are not processed again.

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

from logcap.dispatch.batcher import Batcher
from logcap.dispatch.outbox import Gate, OpenGate, Outbox, Send
from logcap.messages import HELD, Acked, Deliver, Entries, Outcome, SinkResult
from logcap.metrics import PIPELINE_DROPS, PIPELINE_FAILURES, PIPELINE_LINES, RESENT_LINES
from logcap.origin import ReadToken
from logcap.pipeline.routing import Router, Routing
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import DataMessage, DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle

__all__ = ["WARN_AFTER_ATTEMPTS", "DispatcherShard", "Flush", "HeldFrom", "InFlight",
           "ReplaceRouting", "ShardSettings"]

log = logging.getLogger(__name__)

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
        self.sinks = sinks
        self.scheduler = scheduler
        self.clock = clock
        self.batcher = Batcher(settings.batch_size, settings.batch_timeout_s)
        self.outbox: Outbox[_Batch] = Outbox(
            sinks, base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s, clock=clock)
        self._sink_of = {handle.name: sink for sink, handle in sinks.items()}
        self._lines_held = 0  # lines of the batches not yet settled by every sink
        self._flush_timer: TimerHandle | None = None

    def handle_start(self) -> None:
        for handle in self.sinks.values():
            handle.watch(self.address)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            closed = self.batcher.add(self._process(message), self.clock())
            if closed is not None:
                self._dispatch(closed)
            elif self._flush_timer is None:
                self._flush_timer = self.scheduler.call_later(
                    self.settings.batch_timeout_s, self.actor_ref, _FlushDue()
                )
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
            return self._lines_held + self.batcher.lines
        elif isinstance(message, HeldFrom):
            return self._held_from(message.source)
        elif isinstance(message, ReplaceRouting):
            self.router = message.routing.router() if message.routing is not None else None
        else:
            return super().handle(message)
        return None

    def _process(self, entries: Entries) -> Entries:
        """``entries`` through its pipeline (unchanged without one). A fully dropped read
        still goes on, with no lines, so that its token is acknowledged in order."""
        pipeline = self.router.route(entries) if self.router is not None else None
        if pipeline is None:
            return entries
        result = pipeline.run(entries, self.clock())
        PIPELINE_LINES.labels(pipeline.name).inc(len(entries.lines))
        for (stage, reason), lines in result.failures.items():
            PIPELINE_FAILURES.labels(pipeline.name, stage, reason).inc(lines)
        for (stage, reason), lines in result.drops.items():
            PIPELINE_DROPS.labels(pipeline.name, stage, reason).inc(lines)
        return result.entries

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

    def handle_crash(self) -> None:
        """Cancel the flush timer; the batches held are the sources' to read again."""
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
        for gate in self.outbox.pump(self._transmit):
            self._arm(gate)

    def _transmit(self, send: Send[_Batch]) -> bool:
        batch = send.payload
        try:
            self.sinks[send.sink].tell(Deliver(send.batch_id, batch.parts, batch.lines,
                                               self.address, send.attempt))
        except DeliveryRefused:
            return False
        if send.resend:
            RESENT_LINES.labels(self.name, send.sink).inc(batch.lines)
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
            done = self.outbox.settle(result.batch_id, result.sink)
            if done is not None:
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
