"""A sink keeps a sender's batches in order through a failure: the batches queued behind a
failed one are held (answered retry, not tried) until the failed one is resent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from logcap.actors.sink import SinkActor
from logcap.messages import HELD, Deliver, Entries, Outcome, ReleaseHold, SinkResult
from logcap.metrics import REGISTRY
from logcap.origin import FILE_KIND, ReadToken
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.health import CheckHealth
from logcap.sinks.base import Verdict
from tests.actor_kit import wait_until
from tests.sink_kit import ResultRecorder, ScriptedBackend

SENDER = "root/state/buffer"
SINK = "root/sinks/loki"


class Rig:
    def __init__(self, script: list[Verdict], sink_name: str = "loki") -> None:
        self.backend = ScriptedBackend(script)
        self.results: list[SinkResult] = []
        directory = Directory()
        self.sender_ref = ResultRecorder.start(self.results, name=SENDER)
        self.sender: Handle = directory.handle(SENDER)
        directory.bind(SENDER, self.sender_ref)
        self.sink = SinkActor.start(sink_name, lambda: self.backend, name=SINK)

    def send(self, batch_id: int, attempt: int = 1, ordered: bool = True) -> None:
        part = Entries("app", "/x.log", (("job", "x"),), [f"line {batch_id}"], batch_id,
                       ReadToken("app", FILE_KIND, None, batch_id, batch_id + 1, "k", 0))
        self.sink.tell(Deliver(batch_id, (part,), 1, self.sender, attempt, ordered))

    def answers(self, count: int) -> list[tuple[int, str]]:
        wait_until(lambda: len(self.results) >= count, what=f"{count} answers")
        return [(r.batch_id, r.reason if r.outcome is Outcome.RETRY else r.outcome.value)
                for r in self.results[:count]]

    def tried(self) -> list[int]:
        return [parts[0].ts_ns for parts in self.backend.batches]

    def stop(self) -> None:
        self.sink.stop()
        self.sender_ref.stop()


@pytest.fixture
def failing_once() -> Iterator[Rig]:
    rig = Rig([Verdict(Outcome.RETRY, "server_error")])
    yield rig
    rig.stop()


def test_batches_behind_a_failed_one_are_held_until_it_is_resent(failing_once: Rig) -> None:
    rig = failing_once
    for batch_id in (1, 2, 3):
        rig.send(batch_id)  # queued together; the backend recovers right after batch 1
    assert rig.answers(3) == [(1, "server_error"), (2, HELD), (3, HELD)]
    assert rig.tried() == [1]  # 2 and 3 were not delivered ahead of 1
    for batch_id in (1, 2, 3):
        rig.send(batch_id, attempt=2)  # the sender resends oldest first
    assert rig.answers(6)[3:] == [(1, "delivered"), (2, "delivered"), (3, "delivered")]
    assert rig.tried() == [1, 1, 2, 3]


def test_a_release_lets_the_later_batches_through(failing_once: Rig) -> None:
    rig = failing_once
    rig.send(1)
    assert rig.answers(1) == [(1, "server_error")]
    rig.sink.tell(ReleaseHold(SENDER))  # batch 1 went to the DLQ: nothing waits behind it
    rig.send(2)
    assert rig.answers(2)[1] == (2, "delivered")


def test_unordered_batches_neither_set_nor_wait_for_a_hold(failing_once: Rig) -> None:
    rig = failing_once
    rig.send(1, ordered=False)
    rig.send(2, ordered=False)
    assert rig.answers(2) == [(1, "server_error"), (2, "delivered")]


def test_a_restarted_sender_numbering_from_one_is_not_held() -> None:
    rig = Rig([Verdict(Outcome.RETRY, "server_error")])
    try:
        rig.send(40)
        assert rig.answers(1) == [(40, "server_error")]
        rig.send(1)  # a new incarnation of the sender starts its ids again
        assert rig.answers(2)[1] == (1, "delivered")
    finally:
        rig.stop()


def test_a_run_of_failures_is_logged_once_then_summarised_then_its_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    """Also the sink's health: degraded once the run lasts ``degraded_after_s`` (0 here), ok
    after the next success; held answers are not failed requests."""
    caplog.set_level(logging.INFO, logger="logcap.actors.sink")
    script = [Verdict(Outcome.RETRY, "connection", None, "connection refused: ...")] * 3
    rig = Rig([])
    rig.backend.script = list(script)
    rig.sink.stop()
    rig.sink = SinkActor.start("loki", lambda: rig.backend, None, None, "http://loki/push",
                               0.0, 0.0, name=SINK)  # a summary at every later failure
    try:
        for batch_id in (1, 1, 1):
            rig.send(batch_id)
        rig.answers(3)
        health = rig.sink.ask(CheckHealth(), timeout=5)
        assert health.state == "degraded" and "http://loki/push" in health.reason
        assert "connection refused" in health.reason
        rig.send(1)
        rig.answers(4)
        assert rig.sink.ask(CheckHealth(), timeout=5).state == "ok"
    finally:
        rig.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "request to http://loki/push failed" in m] == [
        "loki: request to http://loki/push failed: connection refused: ...; retrying (lines "
        "wait, nothing is lost)"]
    assert sum("still failing" in m for m in messages) == 2
    assert any("succeed again" in m and "3 failed (connection=3)" in m for m in messages)


def test_each_request_is_counted_once_by_outcome_and_reason() -> None:
    """The sink's metric series are looked up once and reused: each request still counts
    in the series of its own reason and outcome, and a restarted sink counts on in them."""
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"sink": "metric-sink", **labels}) or 0.0

    series = [("logcap_sink_requests_total", {"reason": "server_error"}, 1),
              ("logcap_sink_requests_total", {"reason": "ok"}, 2),
              ("logcap_sink_lines_total", {"outcome": "failed"}, 1),
              ("logcap_sink_lines_total", {"outcome": "sent"}, 2),
              ("logcap_sink_request_duration_seconds_count", {}, 3),
              ("logcap_sink_batch_lines_count", {}, 3),
              ("logcap_sink_batch_lines_sum", {}, 3)]
    before = [value(name, **labels) for name, labels, _ in series]
    for run in (1, 2):  # the second run is a new sink of the same name
        rig = Rig([Verdict(Outcome.RETRY, "server_error")], sink_name="metric-sink")
        try:
            for batch_id in (1, 1, 2):
                rig.send(batch_id, ordered=False)
            assert rig.answers(3) == [(1, "server_error"), (1, "delivered"), (2, "delivered")]
        finally:
            rig.stop()
        assert [value(name, **labels) - was for (name, labels, _), was in zip(
            series, before, strict=True)] == [run * per_run for _, _, per_run in series]
