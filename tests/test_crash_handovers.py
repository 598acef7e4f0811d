"""What keeps actor crashes from making a source read again what is already on its way to the
disk buffer (the causes of kept duplicates in docs/ARCHITECTURE.md, "Chaos harness"):

- a restarted shard ignores the answers to its predecessor's batches (unique batch ids);
- a shard answers ``HeldFrom``: the lines of a source it holds unsettled, closing an open
  batch that holds some;
- a file source that starts (or rewinds) past what the buffer holds commits that position.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logcap.actors.disk_buffer import ResumeRanges
from logcap.actors.shard import DispatcherShard, HeldFrom, ShardSettings
from logcap.messages import Deliver, Outcome, SinkResult
from logcap.origin import FileStream
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.mailbox import DataMessage
from logcap.runtime.timers import ManualClock, ManualScheduler
from logcap.sources.files.generation import TailerSettings
from logcap.sources.files.source import FileSource
from logcap.state.file_identity import identity_of
from logcap.state.positions import FilePosition
from logcap.state.positions_messages import CommitFiles
from tests.actor_kit import stop_bound, wait_until
from tests.pipeline_kit import entries
from tests.test_pipeline_shard import RecordingSource


class SilentSink(LogcapActor):
    """Keeps every Deliver and answers none (the test answers in its place)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.delivers: list[Deliver] = []

    def handle(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self.delivers.append(message)
            return None
        if message == "delivers":
            return list(self.delivers)
        return super().handle(message)


@pytest.fixture
def directory() -> Iterator[Directory]:
    names = Directory()
    yield names
    stop_bound(names, ("sink", "shard", "source"))


def _start_shard(directory: Directory, scheduler: ManualScheduler,
                 batch_size: int = 1) -> None:
    settings = ShardSettings(batch_size, 60, 0.1, 1.0)
    shard = DispatcherShard.start(settings, {"buffer": directory.handle("sink")}, scheduler,
                                  name="shard", directory=directory)
    directory.bind("shard", shard)


def test_a_restarted_shard_ignores_the_answer_to_its_predecessors_batch(
        directory: Directory) -> None:
    scheduler = ManualScheduler(ManualClock())
    directory.bind("sink", SilentSink.start(name="sink", directory=directory))
    directory.bind("source", RecordingSource.start(name="source", directory=directory))
    sink, source = directory.handle("sink"), directory.handle("source")
    _start_shard(directory, scheduler)
    directory.handle("shard").tell(entries(["before the crash"], ack_to=source))
    wait_until(lambda: len(sink.ask("delivers", 5)) == 1, what="the first batch sent")
    predecessor = directory.lookup("shard")
    assert predecessor is not None
    predecessor.stop()  # its batch is answered only after it is gone
    _start_shard(directory, scheduler)
    read = entries(["after the restart"], ack_to=source)
    directory.handle("shard").tell(read)
    wait_until(lambda: len(sink.ask("delivers", 5)) == 2, what="the new shard's batch sent")
    old, new = sink.ask("delivers", 5)
    assert old.batch_id != new.batch_id
    directory.handle("shard").tell(SinkResult(old.batch_id, "buffer", Outcome.DELIVERED))
    assert directory.handle("shard").ask(HeldFrom("app"), 5) == 1  # still not settled
    assert source.ask("acked", 5) == []
    directory.handle("shard").tell(SinkResult(new.batch_id, "buffer", Outcome.DELIVERED))
    wait_until(lambda: source.ask("acked", 5) == [read.token], what="its own answer acks it")


def test_held_from_counts_a_sources_unsettled_lines_and_sends_its_open_batch(
        directory: Directory) -> None:
    scheduler = ManualScheduler(ManualClock())
    directory.bind("sink", SilentSink.start(name="sink", directory=directory))
    sink = directory.handle("sink")
    _start_shard(directory, scheduler, batch_size=100)  # a batch stays open
    shard = directory.handle("shard")
    shard.tell(entries(["a", "b"], source="app"))
    shard.tell(entries(["c"], source="other"))
    assert isinstance(HeldFrom("app"), DataMessage)  # queued behind the entries above
    assert shard.ask(HeldFrom("app"), 5) == 2
    wait_until(lambda: len(sink.ask("delivers", 5)) == 1, what="the open batch sent")
    assert shard.ask(HeldFrom("nobody"), 5) == 0
    [batch] = sink.ask("delivers", 5)
    shard.tell(SinkResult(batch.batch_id, "buffer", Outcome.DELIVERED))
    wait_until(lambda: shard.ask(HeldFrom("app"), 5) == 0, what="settled")


def test_resume_ranges_queue_behind_the_batches_sent_before_them() -> None:
    assert isinstance(ResumeRanges("app"), DataMessage)


def _file_source(tmp_path: Path) -> tuple[FileSource, Path]:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {n:04d}\n" for n in range(100)))  # 10 bytes a line
    settings = TailerSettings("app", (str(tmp_path / "*.log"),), start_at="beginning",
                              batch_lines=10)
    return FileSource(settings), log


def test_a_start_that_resumes_past_the_buffer_commits_that_position(tmp_path: Path) -> None:
    source, log = _file_source(tmp_path)
    ident = identity_of(str(log))
    stored = FilePosition.of(str(log), ident, 0, "", 1000)
    buffered = {FileStream(ident.dev, ident.ino, ident.fingerprint): [(0, 300), (300, 500)]}
    try:
        source.start([stored], buffered, lambda: None)
        [update] = source.take_updates()
        assert isinstance(update, CommitFiles)
        assert [p.offset for p in update.positions] == [500]
        assert source.take_updates() == []  # given once
        first = source.read().entries[0]
        assert first.lines[0] == "line 0050" and first.token.start == 500
    finally:
        source.close()


def test_a_start_without_buffered_ranges_commits_nothing(tmp_path: Path) -> None:
    source, log = _file_source(tmp_path)
    stored = FilePosition.of(str(log), identity_of(str(log)), 200, "", 1000)
    try:
        source.start([stored], {}, lambda: None)
        assert source.take_updates() == []
    finally:
        source.close()


def test_a_rewind_that_resumes_past_the_buffer_commits_that_position(tmp_path: Path) -> None:
    source, log = _file_source(tmp_path)
    ident = identity_of(str(log))
    try:
        source.start([], {}, lambda: None)
        assert source.take_updates() == []
        reads = source.read().entries
        assert reads and reads[0].token.start == 0
        stored_part = {FileStream(ident.dev, ident.ino, ident.fingerprint): [(0, 400)]}
        assert source.rewind(lambda stream: True, stored_part) == len(reads)
        [update] = source.take_updates()
        assert isinstance(update, CommitFiles)
        assert [p.offset for p in update.positions] == [400]
        assert source.read().entries[0].token.start == 400
    finally:
        source.close()
