"""The shard has no retry budget: a batch failing transiently is retried until it is delivered,
with one warning at its WARN_AFTER_ATTEMPTS-th failed attempt, and its read is acknowledged
once delivered."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from logcap.actors.shard import WARN_AFTER_ATTEMPTS, DispatcherShard, ShardSettings
from logcap.messages import Deliver, Outcome, SinkResult
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.timers import ManualClock, ManualScheduler
from tests.actor_kit import wait_until
from tests.pipeline_kit import entries
from tests.test_pipeline_shard import RecordingSource

FAILURES = WARN_AFTER_ATTEMPTS + 5


class FlakySink(LogcapActor):
    """Answers ``retry`` to the first ``failures`` Delivers, then ``delivered``."""

    def __init__(self, failures: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.failures = failures
        self.attempts = 0
        self.delivered: list[Deliver] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self.attempts += 1
            if self.attempts <= self.failures:
                message.reply_to.tell(SinkResult(message.batch_id, "flaky", Outcome.RETRY,
                                                 "server_error"))
            else:
                self.delivered.append(message)
                message.reply_to.tell(SinkResult(message.batch_id, "flaky", Outcome.DELIVERED))
            return None
        if message == "state":
            return self.attempts, len(self.delivered)
        return super().handle(message)


def test_a_failing_batch_is_retried_until_delivered_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    directory = Directory()
    clock = ManualClock()
    scheduler = ManualScheduler(clock)
    try:
        directory.bind("sink", FlakySink.start(FAILURES, name="sink", directory=directory))
        directory.bind("source", RecordingSource.start(name="source", directory=directory))
        shard = DispatcherShard.start(ShardSettings(1, 60, 0.1, 1.0),
                                      {"flaky": directory.handle("sink")}, scheduler,
                                      clock=clock.monotonic, name="shard",
                                      directory=directory)
        directory.bind("shard", shard)
        sink, source = directory.handle("sink"), directory.handle("source")
        read = entries(["one line"], ack_to=source)
        with caplog.at_level(logging.WARNING, logger="logcap.actors.shard"):
            shard.tell(read)

            def delivered() -> bool:
                scheduler.advance(1.0)  # past any backoff (capped at retry_max_delay = 1s)
                return sink.ask("state", 5) == (FAILURES + 1, 1)

            wait_until(delivered, what="the batch delivered after its failures")
            wait_until(lambda: source.ask("acked", 5) == [read.token], what="the read acked")
        warnings = [r for r in caplog.records if "still retrying" in r.getMessage()]
        assert len(warnings) == 1
        assert f"failed {WARN_AFTER_ATTEMPTS} times" in warnings[0].getMessage()
    finally:
        for name in ("shard", "sink", "source"):
            try:
                directory.handle(name).stop()
            except Exception:
                pass
