"""The two-lane mailbox: data is bounded and fails fast, control always gets through first."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
from pykka._envelope import Envelope

from logcap.runtime.actor import LogcapActor
from logcap.runtime.mailbox import BoundedInbox, DataMessage, MailboxFull
from tests.actor_kit import Batch, wait_until


@dataclass(frozen=True, slots=True)
class Note:
    n: int


def test_a_full_data_lane_refuses_at_once_and_counts_the_event() -> None:
    inbox = BoundedInbox(2, name="t")
    inbox.put(Envelope(Batch((1,))))
    inbox.put(Envelope(Batch((2,))))
    with pytest.raises(MailboxFull):
        inbox.put(Envelope(Batch((3,))))
    assert inbox.full_events == 1 and inbox.data_depth == 2 and inbox.high_water == 2


def test_control_messages_are_accepted_when_data_is_full_and_served_first() -> None:
    inbox = BoundedInbox(1)
    inbox.put(Envelope(Batch((1,))))
    for n in range(1000):
        inbox.put(Envelope(Note(n)))
    got = [inbox.get().message for _ in range(1001)]
    assert got[:1000] == [Note(n) for n in range(1000)]
    assert got[1000] == Batch((1,))
    assert inbox.empty() and inbox.taken == 1001


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BoundedInbox(0)


class Slow(LogcapActor):
    def __init__(self, gate: threading.Event, seen: list[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = gate
        self.seen = seen

    def handle(self, message: Any) -> Any:
        if isinstance(message, DataMessage):
            self.gate.wait(30)
        self.seen.append(message)


def test_stopping_an_actor_with_a_full_mailbox_is_immediate() -> None:
    gate = threading.Event()
    seen: list[Any] = []
    ref = Slow.start(gate, seen, mailbox_capacity=3)
    ref.tell(Batch((0,)))  # taken at once, blocks the actor on the gate
    wait_until(lambda: ref.actor_inbox.data_depth == 0)
    for i in range(3):
        ref.tell(Batch((i + 1,)))
    with pytest.raises(MailboxFull):
        ref.tell(Batch((9,)))
    future = ref.stop(block=False)
    gate.set()
    assert future.get(timeout=5) is True
    assert Batch((0,)) in seen and Batch((1,)) not in seen  # stop overtook the queued data


def test_a_put_wakes_every_waiting_getter_in_turn_and_none_is_left_waiting() -> None:
    """A put notifies only while a getter waits (``_getters``): several threads blocked in
    ``get`` must each still be woken by one put, and puts with nobody waiting are kept."""
    inbox = BoundedInbox(8)
    got: list[Any] = []
    lock = threading.Lock()

    def take() -> None:
        message = inbox.get().message
        with lock:
            got.append(message)

    threads = [threading.Thread(target=take, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: inbox._getters == 4)
    for n in range(4):
        inbox.put(Envelope(Note(n)))
    for thread in threads:
        thread.join(5)
    assert sorted(m.n for m in got) == [0, 1, 2, 3]
    assert inbox._getters == 0
    inbox.put(Envelope(Note(9)))  # nobody waits: queued, taken by the next get at once
    assert inbox.get().message == Note(9)
