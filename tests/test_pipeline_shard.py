"""The shard runs the routed pipeline on each Entries before batching: the sink gets processed
entries, every read is acknowledged (a fully dropped one too), the metrics count exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from logcap.actors.shard import DispatcherShard, Flush, ShardSettings
from logcap.config.errors import IssueCollector
from logcap.messages import Acked, Deliver, Outcome, SinkResult
from logcap.metrics import PIPELINE_DROPS, PIPELINE_LINES
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.routing import Routing
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.timers import ManualScheduler
from tests.actor_kit import stop_bound, wait_until
from tests.pipeline_kit import entries


class RecordingSink(LogcapActor):
    """Takes every Deliver, records it, answers delivered."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.got: list[Deliver] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self.got.append(message)
            message.reply_to.tell(SinkResult(message.batch_id, "rec", Outcome.DELIVERED))
            return None
        if message == "got":
            return list(self.got)
        return super().handle(message)


class RecordingSource(LogcapActor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.acked: list[Any] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, Acked):
            self.acked.extend(message.tokens)
            return None
        if message == "acked":
            return list(self.acked)
        return super().handle(message)


@pytest.fixture
def directory() -> Iterator[Directory]:
    d = Directory()
    yield d
    stop_bound(d, ("sink", "shard", "source"))


def routing() -> Routing:
    issues = IssueCollector()
    specs = decode_pipelines(yaml.safe_load(r"""
pipelines:
  quiet:
    stages:
      - regex: {expression: '^(?P<level>[A-Z]+) '}
      - drop: {source: level, value: DEBUG}
      - labels: {level: }
"""), "test", issues)
    assert not issues.items
    return Routing(specs, {"app": "quiet"}, ())


def test_the_shard_processes_entries_and_acks_every_read(directory: Directory) -> None:
    directory.bind("sink", RecordingSink.start(name="sink", directory=directory))
    directory.bind("source", RecordingSource.start(name="source", directory=directory))
    shard = DispatcherShard.start(ShardSettings(1, 60, 0.1, 1),
                                  {"rec": directory.handle("sink")}, ManualScheduler(),
                                  router=routing().router(), name="shard",
                                  directory=directory)
    directory.bind("shard", shard)
    drops_before = PIPELINE_DROPS.labels("quiet", "1:drop", "value")._value.get()
    lines_before = PIPELINE_LINES.labels("quiet")._value.get()
    ack_to = directory.handle("source")
    mixed = entries(["INFO a", "DEBUG b", "WARN c"], ack_to=ack_to)
    silent = entries(["DEBUG x", "DEBUG y"], ack_to=ack_to)
    shard.tell(mixed)
    shard.tell(silent)
    sink = directory.handle("sink")

    def delivered_both() -> bool:
        # the empty read waits in the open batch until its timeout (or a flush); the flush is
        # a control message, served before queued data, so it is asked again until then
        shard.ask(Flush(), timeout=5)
        return len(sink.ask("got", 5)) == 2

    wait_until(delivered_both, what="two batches")
    first, second = (d.parts[0] for d in sink.ask("got", 5))
    assert first.lines == ["INFO a", "WARN c"]
    assert first.line_labels == [(("level", "INFO"),), (("level", "WARN"),)]
    assert first.token == mixed.token
    assert second.lines == [] and second.token == silent.token
    source = directory.handle("source")
    wait_until(lambda: len(source.ask("acked", 5)) == 2, what="both reads acked")
    assert PIPELINE_DROPS.labels("quiet", "1:drop", "value")._value.get() - drops_before == 3
    assert PIPELINE_LINES.labels("quiet")._value.get() - lines_before == 5
