"""DispatcherShard: batches entries and fans each batch out to every sink, tracking each sink.

Messages taken:

* :class:`~logcap.messages.Entries` (data): added to the open batch; a batch closes at
  ``batch_size`` lines or ``batch_timeout`` seconds, then a :class:`~logcap.messages.Deliver`
  goes to every sink.
* :class:`~logcap.messages.SinkResult` (control): delivered/rejected settles the batch for that
  sink; retry holds that sink's batches (only that sink's) for the backoff delay (exponential,
  full jitter, honouring Retry-After), then resends them oldest first, so order is kept. When
  every sink has settled a batch, its read tokens go back as :class:`~logcap.messages.Acked`
  to each part's ``ack_to`` (one ``Acked`` per source).
* :class:`SinkStarted` (control): a sink (re)started; batches it had been sent and not answered
  are resent to it.
* :class:`InFlight` (ask): lines held by this shard (open batch + unsettled batches).
* :class:`Flush` (ask): close the open batch now (the agent's drain before a stop); answers
  like ``InFlight``.

A shard does not know its sources: they watch its name, so when it (re)starts they are told
:class:`~logcap.runtime.directory.Rebound` and re-read what they had sent to its predecessor.
On stop the open batch and the unsettled ones are dropped from memory; their lines are not
acknowledged, so they are read again after the restart (at-least-once). A crash does the
same.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcap.dispatch.batcher import Batcher
from logcap.dispatch.tracker import DeliveryTracker, TrackedBatch
from logcap.messages import Acked, Deliver, Entries, Outcome, SinkResult
from logcap.metrics import SINK_LINES
from logcap.origin import ReadToken
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle
from logcap.runtime.mailbox import DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle

__all__ = ["REFUSED_RETRY_S", "DispatcherShard", "Flush", "InFlight", "ShardSettings",
           "SinkStarted"]

log = logging.getLogger(__name__)

REFUSED_RETRY_S = 0.02
"""Delay before offering a batch again to a sink whose mailbox was full."""


@dataclass(frozen=True, slots=True)
class SinkStarted:
    sink: str


@dataclass(frozen=True, slots=True)
class InFlight:
    """Ask: lines this shard holds that are not yet settled by every sink."""


@dataclass(frozen=True, slots=True)
class Flush:
    """Ask: send the open batch now; the answer is the lines still held (as ``InFlight``)."""


@dataclass(frozen=True, slots=True)
class _FlushDue:
    pass


@dataclass(frozen=True, slots=True)
class _OpenGate:
    """Timer: the retry delay of a sink is over; resend what waits for it, oldest first."""

    sink: str


@dataclass(frozen=True, slots=True)
class ShardSettings:
    batch_size: int
    batch_timeout_s: float
    max_retries: int
    retry_base_delay_s: float
    retry_max_delay_s: float


class DispatcherShard(LogcapActor):
    def __init__(
        self,
        settings: ShardSettings,
        sinks: dict[str, Handle],
        scheduler: Scheduler,
        clock: Callable[[], float] = time.monotonic,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.sinks = sinks
        self.scheduler = scheduler
        self.clock = clock
        self.batcher = Batcher(settings.batch_size, settings.batch_timeout_s)
        self.tracker = DeliveryTracker(
            list(sinks), settings.max_retries, settings.retry_base_delay_s,
            settings.retry_max_delay_s, random.Random(),
        )
        self._flush_timer: TimerHandle | None = None
        self._gates: dict[str, TimerHandle] = {}

    def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            closed = self.batcher.add(message, self.clock())
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
        elif isinstance(message, _OpenGate):
            self._gates.pop(message.sink, None)
            for batch_id in self.tracker.waiting_for(message.sink):
                batch = self.tracker.resend(batch_id, message.sink)
                if batch is not None:
                    self._send(batch, message.sink)
        elif isinstance(message, SinkStarted):
            for batch_id in self.tracker.pending_for(message.sink):
                batch = self.tracker.get(batch_id)
                if batch is not None:
                    self._send(batch, message.sink)
        elif isinstance(message, (Flush, InFlight)):
            if isinstance(message, Flush) and len(self.batcher):
                self._dispatch(self.batcher.take())
            return self.tracker.lines_in_flight + self.batcher.lines
        else:
            return super().handle(message)
        return None

    def handle_stop(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()

    def _dispatch(self, parts: list[Entries]) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch = self.tracker.open(parts, self.clock())
        if not self.sinks:
            self._release(batch)
            return
        for sink in self.sinks:
            self._send(batch, sink)

    def _send(self, batch: TrackedBatch, sink: str) -> None:
        if sink in self._gates:  # the sink is retrying: wait behind the older batches
            self.tracker.defer(batch.batch_id, sink)
            return
        message = Deliver(batch.batch_id, self.name, batch.parts, batch.lines,
                          batch.attempts[sink])
        try:
            self.sinks[sink].tell(message)
        except DeliveryRefused:
            self.tracker.defer(batch.batch_id, sink)
            self._close_gate(sink, REFUSED_RETRY_S)

    def _close_gate(self, sink: str, delay_s: float) -> None:
        """Hold every batch for ``sink`` for ``delay_s``, then resend them in order: one retry
        timer per sink, not per batch, so a stream's batches reach the sink in order."""
        if sink not in self._gates:
            self._gates[sink] = self.scheduler.call_later(delay_s, self.actor_ref,
                                                          _OpenGate(sink))

    def _on_result(self, result: SinkResult) -> None:
        if result.outcome is Outcome.RETRY:
            retry = self.tracker.failed(result.batch_id, result.sink, result.retry_after_s)
            if retry is None:
                return
            batch = self.tracker.get(result.batch_id)
            lines = batch.lines if batch else 0
            SINK_LINES.labels(result.sink, "retried").inc(lines)
            if retry.exhausted:
                # No line is dropped: past max_retries the batch keeps being retried at the
                # maximum delay (the DLQ, when enabled, takes exhausted batches instead).
                log.warning("%s: batch %d to %s failed %d times (%s); still retrying",
                            self.name, result.batch_id, result.sink, retry.attempt - 1,
                            result.reason)
            self._close_gate(result.sink, retry.delay_s)
            return
        done = self.tracker.settle(result.batch_id, result.sink)
        if done is not None:
            self._release(done)

    def _release(self, batch: TrackedBatch) -> None:
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
