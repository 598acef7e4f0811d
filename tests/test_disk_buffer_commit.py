"""The disk buffer's group commit: by the ``fsync_interval`` timer, or early once
:data:`~logcap.actors.disk_buffer.EARLY_SYNC_BYTES` wait for it (a burst must not stall its
sources on the interval); the sinks' cursors written by a commit at most every
:data:`~logcap.state.buffer.cursor_pacing.CURSORS_PERSIST_INTERVAL_S`, and within that long after an
acknowledgement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.actors.disk_buffer import EARLY_SYNC_BYTES, BufferStats, DiskBuffer
from logcap.config.state import DiskBufferConfig
from logcap.messages import Deliver, Outcome, SinkResult
from logcap.runtime.directory import Directory
from logcap.runtime.timers import ManualClock, ManualScheduler
from logcap.state.buffer.cursor_pacing import CURSORS_PERSIST_INTERVAL_S, CursorPacing
from logcap.state.buffer.cursors import parse_cursors
from logcap.state.buffer.segments import CURSORS_FILE, SegmentStore
from tests.actor_kit import stop_bound, wait_until
from tests.pipeline_kit import entries
from tests.sink_kit import ResultRecorder
from tests.test_crash_handovers import SilentSink

FSYNC_INTERVAL_S = 60.0


@pytest.fixture
def directory() -> Iterator[Directory]:
    names = Directory()
    yield names
    stop_bound(names, ("buffer", "shard", "loki"))


def _start(directory: Directory, tmp_path: Path, scheduler: ManualScheduler,
           fsync_interval: float = FSYNC_INTERVAL_S) -> list[SinkResult]:
    """A buffer between a stand-in shard and sink (on the scheduler's clock); the list of the
    results the shard gets."""
    results: list[SinkResult] = []
    directory.bind("shard", ResultRecorder.start(results, name="shard", directory=directory))
    directory.bind("loki", SilentSink.start(name="loki", directory=directory))
    settings = DiskBufferConfig(enabled=True, directory=str(tmp_path),
                                fsync_interval=fsync_interval)
    store = SegmentStore(tmp_path, ["loki"], max_file_size=256 * 2**20,
                         max_total_size=1024 * 2**20)
    buffer = DiskBuffer.start(settings, store, {"loki": directory.handle("loki")}, scheduler,
                              0.1, 1.0, clock=scheduler.clock.monotonic, name="buffer",
                              directory=directory)
    directory.bind("buffer", buffer)
    return results


def _fed(directory: Directory) -> int:
    """Batches the buffer has sent the sink."""
    return len(directory.handle("loki").ask("delivers", 5))


def _deliver(directory: Directory, batch_id: int, lines: list[str]) -> None:
    directory.handle("buffer").tell(Deliver(batch_id, (entries(lines),), len(lines),
                                            directory.handle("shard")))


def test_a_small_append_is_answered_by_the_timer_a_large_one_at_once(
        directory: Directory, tmp_path: Path) -> None:
    scheduler = ManualScheduler(ManualClock())
    results = _start(directory, tmp_path, scheduler)
    _deliver(directory, 1, ["small"])
    wait_until(lambda: _fed(directory) == 1, what="the batch fed to the sink before it is durable")
    assert results == []  # not durable yet: the shard waits for the interval
    assert scheduler.delays() and max(scheduler.delays()) == FSYNC_INTERVAL_S

    line = "x" * 1000
    big = [line] * (EARLY_SYNC_BYTES // len(line) + 1)
    _deliver(directory, 2, big)
    wait_until(lambda: len(results) == 2, what="both answered by the early commit")
    assert [(r.batch_id, r.outcome) for r in results] == [
        (1, Outcome.DELIVERED), (2, Outcome.DELIVERED)]
    stats = directory.handle("buffer").ask(BufferStats(), 5)
    assert stats["durable_seq"] == 2 and stats["last_seq"] == 2


def test_appends_under_the_threshold_still_wait_for_the_interval(
        directory: Directory, tmp_path: Path) -> None:
    scheduler = ManualScheduler(ManualClock())
    results = _start(directory, tmp_path, scheduler)
    line = "y" * 1000
    below = [line] * (EARLY_SYNC_BYTES // len(line) // 4)
    for batch_id in (1, 2, 3):  # three quarters of the threshold in all
        _deliver(directory, batch_id, below)
    wait_until(lambda: _fed(directory) == 3, what="all three appended (and fed)")
    assert results == []
    scheduler.advance(FSYNC_INTERVAL_S)
    wait_until(lambda: len(results) == 3, what="the timer's commit answers all")
    assert all(r.outcome is Outcome.DELIVERED for r in results)


def _acked_on_disk(tmp_path: Path) -> int:
    """The sink's cursor as ``cursors.json`` holds it (0: not written yet)."""
    path = tmp_path / CURSORS_FILE
    return parse_cursors(path.read_bytes())[1].get("loki", 0) if path.exists() else 0


def _commit_and_ack(directory: Directory, scheduler: ManualScheduler, results: list[SinkResult],
                    seq: int, interval: float) -> None:
    """Batch ``seq`` appended, committed by the interval's timer, then acknowledged by the sink."""
    _deliver(directory, seq, [f"line {seq}"])
    wait_until(lambda: _fed(directory) == seq, what="appended and fed")
    scheduler.advance(interval)
    wait_until(lambda: len(results) == seq, what="the commit answered it")
    buffer = directory.handle("buffer")
    buffer.tell(SinkResult(seq, "loki", Outcome.DELIVERED))
    wait_until(lambda: buffer.ask(BufferStats(), 5)["sinks"]["loki"]["acked_seq"] == seq,
               what="the ack taken")


def test_cursors_are_written_by_a_commit_at_most_once_an_interval_and_soon_after_an_ack(
        directory: Directory, tmp_path: Path) -> None:
    interval = 0.2
    scheduler = ManualScheduler(ManualClock())
    results = _start(directory, tmp_path, scheduler, fsync_interval=interval)
    for seq in (1, 2, 3):
        _commit_and_ack(directory, scheduler, results, seq, interval)
        if seq == 1:  # never written before: due at once
            scheduler.advance(0)
            wait_until(lambda: _acked_on_disk(tmp_path) == 1, what="the first cursors written")
    # the commits of 2 and 3 came within the interval of that write: not written by them
    assert _acked_on_disk(tmp_path) == 1
    due = CURSORS_PERSIST_INTERVAL_S - 2 * interval
    assert scheduler.delays(_cursors_due) == [pytest.approx(due)]
    scheduler.advance(due)
    wait_until(lambda: _acked_on_disk(tmp_path) == 3, what="the cursors written when due")
    assert scheduler.delays(_cursors_due) == []  # nothing acknowledged since: no timer left


def _cursors_due(message: object) -> bool:
    return type(message).__name__ == "_CursorsDue"


def test_cursor_pacing_is_due_after_a_change_once_an_interval_and_when_the_clock_goes_back(
        ) -> None:
    pacing = CursorPacing(1.0)
    assert not pacing.due(100.0)  # nothing changed
    pacing.change()
    assert pacing.due(100.0) and pacing.wait(100.0) == 0.0  # never written: at once
    pacing.written(100.0)
    assert not pacing.due(100.5)  # nothing changed since
    pacing.change()
    assert not pacing.due(100.5) and pacing.wait(100.5) == pytest.approx(0.5)
    assert pacing.due(101.0)
    assert pacing.due(99.0) and pacing.wait(99.0) == 1.0  # set back: due, waits at most 1 s
