"""Bounded two-lane mailboxes for pykka actors.

Every logcap actor's inbox has two lanes:

* the **data lane** carries :class:`DataMessage` instances (batches of log lines). It is
  bounded: putting a data message into a full lane raises :class:`MailboxFull` at once, in the
  sender's thread. The sender never blocks; it pauses its own input and retries on a timer.
* the **control lane** carries everything else: pykka's stop, acknowledgements, supervisor and
  admin messages, timer ticks. It is unbounded, so ``stop`` always gets through and a full
  pipeline never deadlocks.

``get`` serves the control lane first, so control messages overtake queued data.

The inbox also counts what it saw (messages taken, full events, high-water mark), which the
admin API reads without asking the actor.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from pykka._envelope import Envelope

__all__ = [
    "DEFAULT_MAILBOX_CAPACITY",
    "ActorUnavailable",
    "BoundedInbox",
    "DataMessage",
    "DeliveryRefused",
    "MailboxFull",
]

DEFAULT_MAILBOX_CAPACITY = 64
"""Data-lane capacity in messages (each message is a batch of lines)."""


class DataMessage:
    """Marker base class: instances travel in the bounded data lane."""

    __slots__ = ()


class DeliveryRefused(Exception):
    """A message could not be queued; the sender keeps it and retries later."""


class MailboxFull(DeliveryRefused):
    """The receiver's data lane is at capacity."""


class ActorUnavailable(DeliveryRefused):
    """No live actor answers to this name right now (e.g. it is being restarted)."""


class BoundedInbox:
    """A pykka ``ActorInbox`` with a bounded data lane and an unbounded control lane.

    Thread-safe. ``put`` raises :class:`MailboxFull` for a data message when the data lane
    holds ``capacity`` messages; it never blocks.
    """

    __slots__ = (
        "_cond",
        "_control",
        "_data",
        "_getters",
        "capacity",
        "full_events",
        "high_water",
        "name",
        "taken",
    )

    def __init__(self, capacity: int = DEFAULT_MAILBOX_CAPACITY, name: str = "") -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.name = name
        self._data: deque[Envelope[Any]] = deque()
        self._control: deque[Envelope[Any]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._getters = 0  # threads waiting in get(): a put wakes one only if there is one
        self.taken = 0
        self.full_events = 0
        self.high_water = 0

    def put(self, envelope: Envelope[Any], /) -> None:
        """Queue ``envelope``; raise :class:`MailboxFull` if it is data and the lane is full."""
        with self._cond:
            if isinstance(envelope.message, DataMessage):
                depth = len(self._data)
                if depth >= self.capacity:
                    self.full_events += 1
                    raise MailboxFull(f"mailbox {self.name or '?'} full ({self.capacity})")
                self._data.append(envelope)
                if depth + 1 > self.high_water:
                    self.high_water = depth + 1
            else:
                self._control.append(envelope)
            if self._getters:  # a busy receiver takes it without being woken
                self._cond.notify()

    def get(self) -> Envelope[Any]:
        """Block until a message is queued; control messages come first."""
        with self._cond:
            while not self._control and not self._data:
                self._getters += 1
                try:
                    self._cond.wait()
                finally:
                    self._getters -= 1
            self.taken += 1
            if self._control:
                return self._control.popleft()
            return self._data.popleft()

    def empty(self) -> bool:
        with self._cond:
            return not self._control and not self._data

    def peek_data(self) -> Any:
        """The data message :meth:`get` gives next among the data (None when there is none),
        left in place. Meant for the actor itself, the lane's only taker: what it sees here
        is what it takes, in this order (control messages may come before it)."""
        with self._cond:
            return self._data[0].message if self._data else None

    @property
    def data_depth(self) -> int:
        """Data messages waiting (a racy snapshot, fine for metrics)."""
        return len(self._data)

    @property
    def control_depth(self) -> int:
        """Control messages waiting (a racy snapshot, fine for metrics)."""
        return len(self._control)

    def has_room(self) -> bool:
        """True if a data message would be accepted now (racy; ``put`` is the real test)."""
        return len(self._data) < self.capacity
