"""A sink whose backend prepares and sends in two steps prepares the next queued batch while
this one is sent, and still sends one at a time, in order, each once (``sink.py``, "Preparing
ahead")."""

from __future__ import annotations

import threading
import time

from logcap.actors.sink import SinkActor
from logcap.dispatch.dedup import DeliveredRanges
from logcap.messages import HELD, Deliver, Entries, Outcome, SinkResult
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.runtime.directory import Directory, Handle
from logcap.sinks.base import PreparingBackend, Verdict
from tests.actor_kit import wait_until
from tests.sink_kit import ResultRecorder

SENDER = "root/dispatchers/shard-0"
SINK = "root/sinks/loki"


class TwoStepBackend:
    """Records each step (what, batch, thread, time); the send of batch 0 waits for ``gate``."""

    def __init__(self, script: list[Verdict] | None = None) -> None:
        self.script = list(script or [])
        self.steps: list[tuple[str, int, str, float]] = []
        self.gate = threading.Event()
        self._lock = threading.Lock()

    def _step(self, what: str, parts: tuple[Entries, ...]) -> None:
        with self._lock:
            self.steps.append((what, parts[0].ts_ns, threading.current_thread().name,
                               time.monotonic()))

    def prepare(self, parts: tuple[Entries, ...]) -> object:
        self._step("prepare", parts)
        return ("prepared", parts)

    def send(self, prepared: object) -> Verdict:
        assert isinstance(prepared, tuple) and prepared[0] == "prepared"
        parts = prepared[1]
        self._step("send", parts)
        if parts[0].ts_ns == 0:
            assert self.gate.wait(10)
        time.sleep(0.02)  # the request's round trip: the next batch is prepared meanwhile
        self._step("sent", parts)
        with self._lock:
            return self.script.pop(0) if self.script else Verdict(Outcome.DELIVERED)

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
        return self.send(self.prepare(parts))

    def close(self) -> None:
        pass

    def of(self, what: str) -> list[int]:
        with self._lock:
            return [batch for step, batch, _, _ in self.steps if step == what]

    def when(self, what: str, batch: int) -> float:
        with self._lock:
            return next(t for step, b, _, t in self.steps if step == what and b == batch)

    def threads(self, what: str) -> set[str]:
        with self._lock:
            return {thread for step, _, thread, _ in self.steps if step == what}


class Rig:
    def __init__(self, backend: TwoStepBackend, dedup: DeliveredRanges | None = None) -> None:
        self.backend = backend
        self.results: list[SinkResult] = []
        directory = Directory()
        self.sender_ref = ResultRecorder.start(self.results, name=SENDER)
        self.sender: Handle = directory.handle(SENDER)
        directory.bind(SENDER, self.sender_ref)
        self.sink = SinkActor.start("loki", lambda: backend, None, dedup, name=SINK)

    def send(self, batch_id: int, offset: int | None = None, attempt: int = 1) -> None:
        start = batch_id * 10 if offset is None else offset
        part = Entries("app", "/x.log", (("job", "x"),), [f"line {batch_id}"], batch_id,
                       ReadToken("app", FILE_KIND, FileStream(1, 2, "fp"), start, start + 10,
                                 "g", 0))
        self.sink.tell(Deliver(batch_id, (part,), 1, self.sender, attempt))

    def answers(self, count: int) -> list[tuple[int, str]]:
        wait_until(lambda: len(self.results) >= count, what=f"{count} answers")
        return [(r.batch_id, r.reason if r.outcome is Outcome.RETRY else r.outcome.value)
                for r in self.results[:count]]

    def stop(self) -> None:
        self.sink.stop()
        self.sender_ref.stop()


def test_the_next_queued_batch_is_prepared_while_this_one_is_sent() -> None:
    backend = TwoStepBackend()
    assert isinstance(backend, PreparingBackend)
    rig = Rig(backend)
    try:
        rig.send(0)  # its send waits at the gate: the next ones queue up behind it
        wait_until(lambda: backend.of("send") == [0], what="batch 0 being sent")
        for batch_id in (1, 2, 3):
            rig.send(batch_id)
        backend.gate.set()
        assert rig.answers(4) == [(0, "delivered"), (1, "delivered"), (2, "delivered"),
                                  (3, "delivered")]
        assert backend.of("send") == [0, 1, 2, 3]  # one at a time, in order, each once
        assert backend.of("prepare") == [0, 1, 2, 3]  # each prepared once
        # batch 0 was alone when its turn came (sent from the sink's thread, 1 came later);
        # 2 and 3 were prepared while the one before them was sent, and sent after its answer
        for batch in (2, 3):
            assert backend.when("prepare", batch) < backend.when("sent", batch - 1)
        for batch in (1, 2, 3):
            assert backend.when("sent", batch - 1) <= backend.when("send", batch)
        assert any(name.startswith("loki-send") for name in backend.threads("send"))
    finally:
        rig.stop()


def test_a_batch_alone_is_sent_from_the_sinks_own_thread() -> None:
    backend = TwoStepBackend()
    backend.gate.set()
    rig = Rig(backend)
    try:
        rig.send(5)
        assert rig.answers(1) == [(5, "delivered")]
        assert not any(name.startswith("loki-send") for name in backend.threads("send"))
    finally:
        rig.stop()


def test_a_batch_prepared_ahead_of_a_failed_one_is_held_and_prepared_again_at_its_resend(
        ) -> None:
    backend = TwoStepBackend([Verdict(Outcome.DELIVERED), Verdict(Outcome.RETRY, "server_error")])
    rig = Rig(backend)
    try:
        rig.send(0)
        wait_until(lambda: backend.of("send") == [0], what="batch 0 being sent")
        rig.send(1)
        rig.send(2)
        backend.gate.set()
        assert rig.answers(3) == [(0, "delivered"), (1, "server_error"), (2, HELD)]
        assert backend.of("send") == [0, 1]  # 2 was prepared, never sent ahead of 1
        rig.send(1, attempt=2)
        rig.send(2, attempt=2)
        assert rig.answers(5)[3:] == [(1, "delivered"), (2, "delivered")]
        assert backend.of("send") == [0, 1, 1, 2]
        assert backend.of("prepare").count(2) == 2  # the resend is prepared anew
    finally:
        rig.stop()


def test_deduplication_still_applies_to_a_batch_prepared_ahead() -> None:
    backend = TwoStepBackend()
    rig = Rig(backend, DeliveredRanges(60.0, 100))
    try:
        rig.send(0)
        wait_until(lambda: backend.of("send") == [0], what="batch 0 being sent")
        rig.send(1, offset=100)
        rig.send(2, offset=100)  # the same bytes as batch 1 (a resend after a restart)
        rig.send(3)
        backend.gate.set()
        assert rig.answers(4) == [(0, "delivered"), (1, "delivered"), (2, "delivered"),
                                  (3, "delivered")]
        assert backend.of("prepare") == [0, 1, 2, 3]  # 2 prepared while 1 was sent...
        assert backend.of("send") == [0, 1, 3]  # ...and not sent: 1 delivered its bytes
    finally:
        rig.stop()
