"""Per-line fields through the running agent with the disk buffer on: a part whose lines carry
their own timestamps, labels and structured metadata is told to a shard (no processing stage
exists yet to make one from a file), made safe in the buffer while Loki is down, and after a
restart of the whole agent it reaches the receiver from the buffer's record, each line in its
own stream with its own time and metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logcap.agent import Agent
from logcap.config import load_config
from logcap.messages import Acked, Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.runtime.actor import LogcapActor
from tests.actor_kit import wait_until
from tests.harness import make_config
from tests.loki_receiver import DecodedEntry, LokiReceiver

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
ACKS = "test/acks"


class AckRecorder(LogcapActor):
    """Stands for a source: keeps the tokens it is told are settled."""

    def __init__(self, acked: list[ReadToken], **kw: Any) -> None:
        super().__init__(**kw)
        self.acked = acked

    def handle(self, message: Any) -> Any:
        if isinstance(message, Acked):
            self.acked.extend(message.tokens)
            return None
        return super().handle(message)


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def test_per_line_fields_survive_the_disk_buffer_and_a_restart_into_loki(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    config = load_config(make_config(
        tmp_path, [str(tmp_path / "none" / "*.log")],
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer"),
                     "fsync_interval": "50ms"}), {})
    receiver.fail_unavailable()
    acked: list[ReadToken] = []
    token = ReadToken("app", FILE_KIND, FileStream(1, 2, "fp"), 0, 30, "g1", 0)
    agent = Agent(config)
    agent.start()
    try:
        agent.directory.bind(ACKS, AckRecorder.start(acked, name=ACKS))
        part = Entries(
            "app", "/var/log/app.log", (("job", "app"),), ["seq=0 a", "seq=1 b", "seq=2 c"],
            T0, token, 21, ack_to=agent.directory.handle(ACKS),
            timestamps=[T0 + 300, T0 + 100, T0 + 200],
            line_labels=[(("level", "info"),), (("level", "error"),), ()],
            metadata=[(("call_id", "x1"),), (), (("call_id", "x3"), ("tag", "t"))])
        agent.directory.handle(agent.wiring.names("dispatchers")[0]).tell(part)
        wait_until(lambda: acked == [token], timeout=30, what="the part safe in the buffer")
    finally:
        agent.stop(10)
        ref = agent.directory.lookup(ACKS)
        if ref is not None:
            ref.stop()
    assert receiver.line_count == 0

    receiver.clear_faults()
    agent = Agent(config)
    agent.start()
    try:
        wait_until(lambda: receiver.line_count >= 3, timeout=30, what="the buffered lines")
    finally:
        agent.stop(10)
    assert receiver.stream_entries() == {
        '{job="app", level="info"}': [DecodedEntry(T0 + 300, "seq=0 a", (("call_id", "x1"),))],
        '{job="app", level="error"}': [DecodedEntry(T0 + 100, "seq=1 b", ())],
        '{job="app"}': [DecodedEntry(T0 + 200, "seq=2 c", (("call_id", "x3"), ("tag", "t")))],
    }
