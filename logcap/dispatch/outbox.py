"""The outbox: what a sender (shard, disk buffer, DLQ) has sent to each of its sinks, and what
it must send next. Plain synchronous code: no threads, no actors, an injected clock and rng.

A batch has an ``int`` id, ordered by age (a newer batch has a larger id), a payload the outbox
never looks at, and one *delivery* per sink it goes to. A delivery is

- *queued*: waiting to be sent (new, or back in line after a failure, a refusal, a hold or a
  restart of the sink);
- *sent*: handed to the sink, no answer yet;
- gone once *settled* (delivered, rejected for good, or given up by the caller).

When every delivery of a batch is settled, :meth:`Outbox.settle` returns its payload: the batch
is *released* (the shard acknowledges its read tokens then), once.

**Order.** Each sink has a queue sorted by id and a **retry gate**. :meth:`Outbox.pump` sends,
per sink with an open gate, the queued batches oldest first, and stops at the first one the
sink refuses. So a sink is never sent batch N+1 before N's first send, and resends come oldest
first. A counted failure (:meth:`Outbox.failed`) closes the sink's gate for the backoff delay
(:func:`logcap.dispatch.retry.retry_delay`, full jitter, ``Retry-After``): while it is closed,
that sink's newer batches wait behind the failed ones; the other sinks go on. There is one gate
(one timer) per sink, not one per batch: independent jittered timers would reorder a stream.

**Backoff level, per sink, reset on success.** The delay of a failure is drawn for the sink's
*level*, not for the batch's attempt: a success (any batch the sink settled after a send)
resets the level to 0. A failure less than :data:`PARTIAL_FAILURE_WINDOW_S` after the sink's
last success is a *partial* failure (a share of requests failing at random): the level is 1,
the base delay. Only when the sink has had no success for that long (an outage, or no success
yet) does the level grow by one per failure, and the delay with it. Without this, a batch unlucky
several times in a row under 50 % random errors would park the sink (and everything queued
behind it, since order is kept) for the exponential delay of its own attempts, while the sink
serves half the requests.

**Attempts.** A delivery's attempt starts at ``attempt`` (1, or more for a batch whose earlier
attempts are known, e.g. persisted) and grows by one at each counted failure. A refusal (full
mailbox: :meth:`pump`'s ``transmit`` returns False), a *held* answer (:meth:`held`: the sink did
not try the batch because an older one failed) and a restart of the sink (:meth:`restarted`)
put the delivery back in line without counting; a refusal or a hold closes the gate for
:data:`~logcap.dispatch.retry.REFUSED_RETRY_S` (if it was open). Past ``max_retries`` counted
failures (None: no budget) a :class:`Failure` is ``exhausted``: the caller decides (hand to the
DLQ, give up). The shard has no budget: it retries until delivered.

**Timers.** The outbox never waits. A call that closes a gate returns a :class:`Gate`: the
caller arms a timer and calls :meth:`Outbox.open_gate` when it fires, then :meth:`pump`.
:meth:`Outbox.overdue` lists deliveries sent and unanswered for longer than a timeout.

**Sinks join and leave** (a reload): :meth:`Outbox.add_sink` gives the batches added from then
on to the new sink; :meth:`Outbox.remove_sink` gives up what the leaving sink had not settled
and returns the batches that this releases.

Answers for a delivery that is not *sent* (from an earlier send) are ignored, except a
settlement, which is taken in any state (the sink has the batch: no need to send it again).
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from logcap.dispatch.retry import (
    DEFAULT_RETRY_BASE_DELAY_S,
    DEFAULT_RETRY_MAX_DELAY_S,
    REFUSED_RETRY_S,
    retry_delay,
)

__all__ = ["PARTIAL_FAILURE_WINDOW_S", "Failure", "Gate", "OpenGate", "Outbox", "Send"]

T = TypeVar("T")

PARTIAL_FAILURE_WINDOW_S = 10.0
"""A failure this soon after the sink's last success is a partial failure (retried at the base
delay); later, an outage (the backoff grows): see *Backoff level* in the module docstring."""


@dataclass(frozen=True, slots=True)
class Send(Generic[T]):
    """Send ``payload`` (batch ``batch_id``) to ``sink``, as attempt number ``attempt``;
    ``resend``: it was sent to that sink before (after a failure, a hold or a restart)."""

    batch_id: int
    sink: str
    payload: T
    attempt: int
    resend: bool = False


@dataclass(frozen=True, slots=True)
class Gate:
    """``sink``'s retry gate closed: call :meth:`Outbox.open_gate` after ``delay_s``."""

    sink: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class OpenGate:
    """The timer message a sender's shell schedules for a :class:`Gate` (to itself); on it,
    :meth:`Outbox.open_gate` then :meth:`Outbox.pump`."""

    sink: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A counted failure of ``batch_id`` at ``sink``: its ``failures`` so far, the backoff
    ``delay_s`` drawn for it, ``exhausted`` past max_retries, and the ``gate`` timer to arm
    (None when the sink's gate was already closed: the batch waits behind the older one)."""

    batch_id: int
    sink: str
    failures: int
    delay_s: float
    exhausted: bool
    gate: Gate | None


@dataclass(slots=True)
class _Delivery:
    attempt: int
    sent: bool = False
    sent_at: float = 0.0
    sends: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Batch(Generic[T]):
    payload: T
    deliveries: dict[str, _Delivery] = field(default_factory=dict)


class Outbox(Generic[T]):
    """Per sink: batches in flight, the retry gate, resends oldest first (module docstring)."""

    def __init__(
        self,
        sinks: Iterable[str],
        *,
        max_retries: int | None = None,
        base_delay_s: float = DEFAULT_RETRY_BASE_DELAY_S,
        max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.clock = clock
        self.rng = rng or random.Random()
        self._batches: dict[int, _Batch[T]] = {}
        self._queues: dict[str, list[int]] = {sink: [] for sink in self.sinks}
        self._closed: set[str] = set()
        self._level: dict[str, int] = {sink: 0 for sink in self.sinks}
        self._last_success: dict[str, float] = {}

    # -- what the caller tells the outbox ----------------------------------------------------

    def add(self, batch_id: int, payload: T, sinks: Iterable[str] | None = None,
            attempt: int = 1) -> None:
        """Queue a batch for ``sinks`` (default: every sink). A known ``batch_id`` gets the
        new sinks added (the disk buffer reads one record for each sink in turn)."""
        batch = self._batches.setdefault(batch_id, _Batch(payload))
        for sink in self.sinks if sinks is None else sinks:
            if sink in batch.deliveries:
                raise ValueError(f"batch {batch_id} is already in the outbox for {sink}")
            batch.deliveries[sink] = _Delivery(attempt)
            bisect.insort(self._queues[sink], batch_id)

    def pump(self, transmit: Callable[[Send[T]], bool],
             sinks: Iterable[str] | None = None) -> list[Gate]:
        """Send what may go now: per sink with an open gate, its queued batches oldest first,
        each through ``transmit`` (True: sent; False: refused). A refusal keeps that batch and
        the later ones queued and closes the gate for REFUSED_RETRY_S. Returns the gates
        closed (timers to arm)."""
        gates = []
        for sink in self.sinks if sinks is None else sinks:
            queue = self._queues[sink]
            while queue and sink not in self._closed:
                batch_id = queue[0]
                batch = self._batches[batch_id]
                delivery = batch.deliveries[sink]
                send = Send(batch_id, sink, batch.payload, delivery.attempt, delivery.sends > 0)
                if not transmit(send):
                    gates.append(self._close(sink, REFUSED_RETRY_S))
                    break
                queue.pop(0)
                delivery.sent = True
                delivery.sent_at = self.clock()
                delivery.sends += 1
        return gates

    def settle(self, batch_id: int, sink: str) -> T | None:
        """``sink`` is done with the batch (delivered, rejected, or given up by the caller).
        Returns the payload when every sink of the batch now is (the batch is released and
        forgotten); None otherwise, and for an unknown or already settled delivery."""
        batch = self._batches.get(batch_id)
        if batch is None:
            return None
        delivery = batch.deliveries.pop(sink, None)
        if delivery is None:
            return None
        if delivery.sent:  # the sink answered a send: it is up
            self._last_success[sink] = self.clock()
            self._level[sink] = 0
        else:
            self._queues[sink].remove(batch_id)
        if batch.deliveries:
            return None
        del self._batches[batch_id]
        return batch.payload

    def failed(self, batch_id: int, sink: str,
               retry_after_s: float | None = None) -> Failure | None:
        """A transient failure of a sent delivery: counted, back in line, the sink's gate
        closed for the backoff delay. None if the delivery is not *sent* (a stale answer)."""
        delivery = self._sent(batch_id, sink)
        if delivery is None:
            return None
        delay = retry_delay(self._failure_level(sink), self.base_delay_s, self.max_delay_s,
                            self.rng, retry_after_s)
        delivery.attempt += 1
        delivery.failures += 1
        self._requeue(batch_id, sink, delivery)
        closed = sink not in self._closed
        gate = self._close(sink, delay) if closed else None
        exhausted = self.max_retries is not None and delivery.failures > self.max_retries
        return Failure(batch_id, sink, delivery.failures, delay, exhausted, gate)

    def abandon(self, failure: Failure) -> T | None:
        """The caller gives the batch up at that sink after ``failure`` (exhausted, or handed
        to the DLQ): settled as by :meth:`settle`, and the gate this failure closed is open
        again (nothing waits behind a batch given up). Returns what :meth:`settle` returns."""
        if failure.gate is not None:
            self._closed.discard(failure.sink)
        return self.settle(failure.batch_id, failure.sink)

    def held(self, batch_id: int, sink: str) -> Gate | None:
        """The sink did not try the batch (an older one failed): back in line, no attempt
        counted. Returns the gate timer to arm when the gate was open."""
        delivery = self._sent(batch_id, sink)
        if delivery is None:
            return None
        self._requeue(batch_id, sink, delivery)
        return None if sink in self._closed else self._close(sink, REFUSED_RETRY_S)

    def open_gate(self, sink: str) -> None:
        """The gate's timer fired: ``sink``'s queued batches may go (at the next :meth:`pump`)."""
        self._closed.discard(sink)

    def restarted(self, sink: str) -> None:
        """``sink`` restarted: what it was sent and had not answered is lost with it; put it
        back in line (no attempt counted), to be sent oldest first."""
        for batch_id, batch in self._batches.items():
            delivery = batch.deliveries.get(sink)
            if delivery is not None and delivery.sent:
                self._requeue(batch_id, sink, delivery)

    def add_sink(self, sink: str) -> None:
        """A sink joins (a reload added it): the batches added from now on go to it too; the
        ones already here do not."""
        if sink in self._queues:
            raise ValueError(f"sink {sink!r} is already in the outbox")
        self.sinks.append(sink)
        self._queues[sink] = []
        self._level[sink] = 0

    def remove_sink(self, sink: str) -> list[T]:
        """A sink leaves (a reload removed it): it is sent nothing more, and what it had not
        settled is given up for it. Returns the payloads of the batches that this releases
        (every other sink had settled them), oldest first. An unknown sink is ignored."""
        if sink not in self._queues:
            return []
        self.sinks.remove(sink)
        del self._queues[sink]
        self._closed.discard(sink)
        self._level.pop(sink, None)
        self._last_success.pop(sink, None)
        released = []
        for batch_id in sorted(self._batches):
            batch = self._batches[batch_id]
            if batch.deliveries.pop(sink, None) is not None and not batch.deliveries:
                del self._batches[batch_id]
                released.append(batch.payload)
        return released

    # -- what the caller asks ----------------------------------------------------------------

    def overdue(self, timeout_s: float) -> list[tuple[int, str]]:
        """``(batch_id, sink)`` of deliveries sent and unanswered for ``timeout_s`` or more,
        oldest first."""
        now = self.clock()
        return sorted((batch_id, sink) for batch_id, batch in self._batches.items()
                      for sink, d in batch.deliveries.items()
                      if d.sent and now - d.sent_at >= timeout_s)

    def payload(self, batch_id: int) -> T | None:
        batch = self._batches.get(batch_id)
        return None if batch is None else batch.payload

    def payloads(self) -> list[T]:
        """The payloads of the batches not released, oldest first."""
        return [self._batches[i].payload for i in sorted(self._batches)]

    def attempt(self, batch_id: int, sink: str) -> int | None:
        """The attempt number the next send of this delivery carries."""
        batch = self._batches.get(batch_id)
        delivery = None if batch is None else batch.deliveries.get(sink)
        return None if delivery is None else delivery.attempt

    def unsettled(self, sink: str) -> int:
        """How many batches ``sink`` has not settled (sent or queued)."""
        return sum(sink in batch.deliveries for batch in self._batches.values())

    def waiting(self, sink: str) -> int:
        """How many of them were sent before and wait to be sent again."""
        return sum(self._batches[i].deliveries[sink].sends > 0 for i in self._queues[sink])

    def gate_closed(self, sink: str) -> bool:
        return sink in self._closed

    def __len__(self) -> int:
        return len(self._batches)

    # -- inside ------------------------------------------------------------------------------

    def _sent(self, batch_id: int, sink: str) -> _Delivery | None:
        batch = self._batches.get(batch_id)
        delivery = None if batch is None else batch.deliveries.get(sink)
        return delivery if delivery is not None and delivery.sent else None

    def _failure_level(self, sink: str) -> int:
        """The backoff level of a failure at ``sink`` now (module docstring)."""
        last = self._last_success.get(sink)
        up = last is not None and self.clock() - last < PARTIAL_FAILURE_WINDOW_S
        level = 1 if up else self._level[sink] + 1
        self._level[sink] = level
        return level

    def level(self, sink: str) -> int:
        """The backoff level of ``sink``'s last failure (0 after a success)."""
        return self._level[sink]

    def _requeue(self, batch_id: int, sink: str, delivery: _Delivery) -> None:
        delivery.sent = False
        bisect.insort(self._queues[sink], batch_id)

    def _close(self, sink: str, delay_s: float) -> Gate:
        self._closed.add(sink)
        return Gate(sink, delay_s)
