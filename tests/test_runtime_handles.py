"""Handle.tell_incarnation and the TimerThread's handling of cancelled and later timers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from logcap.messages import Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.mailbox import ActorUnavailable
from logcap.runtime.timers import TimerThread


class Keep(LogcapActor):
    def __init__(self, seen: list[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.seen = seen

    def handle(self, message: Any) -> Any:
        self.seen.append(message)


def test_tell_incarnation_sends_only_to_the_actor_it_names() -> None:
    directory = Directory()
    handle = directory.handle("a")
    assert handle.tell_incarnation(None, "x") is False  # nothing bound
    seen: list[Any] = []
    first = Keep.start(seen)
    directory.bind("a", first)
    urn = first.actor_urn
    assert handle.tell_incarnation(None, "x") is False  # bound to one it does not name
    assert handle.tell_incarnation(urn, "one") is True
    second = Keep.start(seen)
    directory.bind("a", second)  # a restart: the old urn no longer gets anything
    assert handle.tell_incarnation(urn, "two") is False
    second.ask("sync", timeout=5)
    first.ask("sync", timeout=5)
    assert "one" in seen and "two" not in seen
    first.stop()
    second.stop()
    with pytest.raises(ActorUnavailable):  # bound, named, but stopped
        handle.tell_incarnation(second.actor_urn, "three")


def test_entries_addressed_is_replace_with_ack_to() -> None:
    import dataclasses

    token = ReadToken("app", FILE_KIND, FileStream(1, 2, "3:00112233aabbccdd"), 0, 9, "g", 4)
    entries = Entries("app", "/x.log", (("job", "x"),), ["a", "b"], 7, token, 9,
                      timestamps=[1, 2], line_labels=[(("k", "v"),), ()],
                      metadata=[(), (("m", "n"),)])
    handle = Directory().handle("root/sources/app")
    addressed = entries.addressed(handle)
    expected = dataclasses.replace(entries, ack_to=handle)
    assert all(getattr(addressed, f.name) is getattr(expected, f.name)
               for f in dataclasses.fields(Entries))


class _Sink:
    def __init__(self) -> None:
        self.got: list[tuple[float, Any]] = []
        self.event = threading.Event()

    def tell(self, message: Any) -> None:
        self.got.append((time.monotonic(), message))
        self.event.set()


def test_timer_thread_keeps_order_with_later_timers_and_skips_cancelled_ones() -> None:
    timers = TimerThread()
    try:
        sink = _Sink()
        t0 = time.monotonic()
        timers.call_later(0.2, sink, "late")     # the head
        timers.call_later(0.4, sink, "later")    # not the head: no wake-up needed
        cancelled = timers.call_later(0.05, sink, "cancelled")  # the new head
        timers.call_later(0.1, sink, "soon")
        cancelled.cancel()
        deadline = time.monotonic() + 5
        while len(sink.got) < 3 and time.monotonic() < deadline:
            sink.event.wait(0.05)
            sink.event.clear()
        assert [m for _, m in sink.got] == ["soon", "late", "later"]
        soon, late, later = (at - t0 for at, _ in sink.got)
        assert soon >= 0.1 and late >= 0.2 and later >= 0.4
        assert timers.pending() == 0
    finally:
        timers.stop()
