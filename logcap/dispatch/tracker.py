"""Tracks each sink's delivery of each batch, so that a failure at one sink never resends to
another, and a batch is released only when every sink has settled it.

Per (batch, sink) the state is *pending* (sent, no verdict), *waiting* (failed transiently,
a retry is scheduled) or *settled* (delivered, or rejected for good). When every sink has
settled a batch, :meth:`DeliveryTracker.settle` returns it so the shard can acknowledge its
read tokens. Retry delays use exponential backoff with full jitter: a uniform draw in
``[0, min(max, base * 2**(attempt-1))]``, raised to the sink's ``Retry-After`` when given.
After ``max_retries`` transient failures the batch is *exhausted* for that sink: the caller
dead-letters it, or keeps retrying at the maximum delay when no DLQ is available.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from logcap.messages import Entries

__all__ = ["DeliveryTracker", "Retry", "SinkState", "TrackedBatch"]

MAX_RETRY_AFTER_S = 300.0
"""A sink's Retry-After is honoured up to this many seconds."""


class SinkState(enum.Enum):
    PENDING = "pending"
    WAITING = "waiting"
    SETTLED = "settled"


@dataclass(slots=True)
class TrackedBatch:
    batch_id: int
    parts: tuple[Entries, ...]
    lines: int
    created_at: float
    state: dict[str, SinkState] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """Send ``batch_id`` to ``sink`` again after ``delay_s``; ``exhausted`` past max_retries."""

    batch_id: int
    sink: str
    attempt: int
    delay_s: float
    exhausted: bool


class DeliveryTracker:
    def __init__(
        self,
        sinks: list[str],
        max_retries: int,
        base_delay_s: float,
        max_delay_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._rng = rng or random.Random()
        self._batches: dict[int, TrackedBatch] = {}
        self._next_id = 1
        self.lines_in_flight = 0

    def open(self, parts: list[Entries], now: float) -> TrackedBatch:
        """Register a new batch as pending at every sink."""
        lines = sum(len(p.lines) for p in parts)
        batch = TrackedBatch(self._next_id, tuple(parts), lines, now)
        self._next_id += 1
        for sink in self.sinks:
            batch.state[sink] = SinkState.PENDING
            batch.attempts[sink] = 1
        self._batches[batch.batch_id] = batch
        self.lines_in_flight += lines
        return batch

    def get(self, batch_id: int) -> TrackedBatch | None:
        return self._batches.get(batch_id)

    def settle(self, batch_id: int, sink: str) -> TrackedBatch | None:
        """The sink is done with the batch; returns the batch if every sink now is."""
        batch = self._batches.get(batch_id)
        if batch is None or sink not in batch.state:
            return None
        batch.state[sink] = SinkState.SETTLED
        if all(s is SinkState.SETTLED for s in batch.state.values()):
            del self._batches[batch_id]
            self.lines_in_flight -= batch.lines
            return batch
        return None

    def failed(self, batch_id: int, sink: str, retry_after_s: float | None) -> Retry | None:
        """A transient failure: schedule the next attempt (None if the batch is unknown)."""
        batch = self._batches.get(batch_id)
        if batch is None or batch.state.get(sink) is not SinkState.PENDING:
            return None
        attempt = batch.attempts[sink]
        batch.attempts[sink] = attempt + 1
        batch.state[sink] = SinkState.WAITING
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** min(attempt - 1, 62)))
        delay = self._rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return Retry(batch_id, sink, attempt + 1, delay, exhausted=attempt > self.max_retries)

    def defer(self, batch_id: int, sink: str) -> None:
        """The sink refused the batch (full mailbox): waiting, no attempt counted."""
        batch = self._batches.get(batch_id)
        if batch is not None and batch.state.get(sink) is SinkState.PENDING:
            batch.state[sink] = SinkState.WAITING

    def resend(self, batch_id: int, sink: str) -> TrackedBatch | None:
        """Mark a waiting (or lost) delivery as pending again; returns the batch to send."""
        batch = self._batches.get(batch_id)
        if batch is None or batch.state.get(sink) is SinkState.SETTLED:
            return None
        batch.state[sink] = SinkState.PENDING
        return batch

    def waiting_for(self, sink: str) -> list[int]:
        """Batches waiting to be sent again to ``sink``, oldest first."""
        return sorted(b.batch_id for b in self._batches.values()
                      if b.state.get(sink) is SinkState.WAITING)

    def pending_for(self, sink: str) -> list[int]:
        """Batches the sink has been sent and not answered (lost if the sink restarted)."""
        return [b.batch_id for b in self._batches.values()
                if b.state.get(sink) is SinkState.PENDING]

    def __len__(self) -> int:
        return len(self._batches)
