"""Clocks and timers: how actors schedule messages to themselves without sleeping.

An actor never sleeps in its own thread. To act later it asks a :class:`Scheduler` to ``tell``
a message to a target after a delay. :class:`TimerThread` is the real scheduler (one daemon
thread for the whole process, a heap of deadlines); :class:`ManualScheduler` is the test double,
driven by :meth:`ManualScheduler.advance` with an injected clock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pykka import ActorDeadError

from logcap.runtime.mailbox import DeliveryRefused

__all__ = [
    "Clock",
    "ManualClock",
    "ManualScheduler",
    "MonotonicClock",
    "Scheduler",
    "Target",
    "TimerHandle",
    "TimerThread",
]

log = logging.getLogger(__name__)


class Clock(Protocol):
    """A monotonic clock, in seconds."""

    def monotonic(self) -> float: ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (test double)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Target(Protocol):
    """Anything with ``tell``: an ``ActorRef`` or a stable handle."""

    def tell(self, message: Any) -> None: ...


class TimerHandle:
    """A scheduled message; :meth:`cancel` prevents it from being sent."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler(Protocol):
    """Sends ``message`` to ``target`` after ``delay`` seconds."""

    def call_later(self, delay: float, target: Target, message: Any) -> TimerHandle: ...


def _deliver(target: Target, message: Any) -> None:
    try:
        target.tell(message)
    except (ActorDeadError, DeliveryRefused):
        # The target is gone or restarting: its successor schedules its own timers.
        log.debug("timer message %r to a stopped target dropped", message)


_Entry = tuple[float, int, TimerHandle, Target, Any]


class TimerThread:
    """One daemon thread that sends scheduled messages at their deadlines."""

    def __init__(self, clock: Clock | None = None, name: str = "logcap-timers") -> None:
        self._clock = clock or MonotonicClock()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, target: Target, message: Any) -> TimerHandle:
        handle = TimerHandle()
        deadline = self._clock.monotonic() + max(0.0, delay)
        entry = (deadline, next(self._seq), handle, target, message)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # else the thread's wait ends before it is due anyway
                self._cond.notify()
        return handle

    def stop(self) -> None:
        """Stop the thread; pending timers are discarded."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def pending(self) -> int:
        with self._cond:
            return sum(1 for e in self._heap if not e[2].cancelled)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    if self._heap[0][2].cancelled:
                        # dropped now, not at its deadline: a cancelled timer (a shard's
                        # flush timer, cancelled when its batch fills) costs no wake-up
                        heapq.heappop(self._heap)
                        continue
                    wait = self._heap[0][0] - self._clock.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, handle, target, message = heapq.heappop(self._heap)
            if not handle.cancelled:
                _deliver(target, message)


class ManualScheduler:
    """A scheduler driven by hand: messages are sent when :meth:`advance` passes them."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def call_later(self, delay: float, target: Target, message: Any) -> TimerHandle:
        handle = TimerHandle()
        with self._lock:
            deadline = self.clock.monotonic() + max(0.0, delay)
            heapq.heappush(self._heap, (deadline, next(self._seq), handle, target, message))
        return handle

    def delays(self, predicate: Callable[[Any], bool] | None = None) -> list[float]:
        """Remaining delays of the pending (uncancelled) timers, soonest first."""
        now = self.clock.monotonic()
        with self._lock:
            return [
                e[0] - now
                for e in sorted(self._heap)
                if not e[2].cancelled and (predicate is None or predicate(e[4]))
            ]

    def advance(self, seconds: float) -> int:
        """Move the clock forward and send every message now due; return how many were sent."""
        self.clock.advance(seconds)
        sent = 0
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > self.clock.monotonic():
                    return sent
                _, _, handle, target, message = heapq.heappop(self._heap)
            if not handle.cancelled:
                _deliver(target, message)
                sent += 1
