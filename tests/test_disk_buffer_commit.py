"""The disk buffer's group commit: by the ``fsync_interval`` timer, or early once
:data:`~logcap.actors.disk_buffer.EARLY_SYNC_BYTES` wait for it (a burst must not stall its
sources on the interval)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.actors.disk_buffer import EARLY_SYNC_BYTES, BufferStats, DiskBuffer
from logcap.config.state import DiskBufferConfig
from logcap.messages import Deliver, Outcome, SinkResult
from logcap.runtime.directory import Directory
from logcap.runtime.timers import ManualClock, ManualScheduler
from logcap.state.buffer.segments import SegmentStore
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


def _start(directory: Directory, tmp_path: Path, scheduler: ManualScheduler
           ) -> list[SinkResult]:
    """A buffer between a stand-in shard and sink; the list of the results the shard gets."""
    results: list[SinkResult] = []
    directory.bind("shard", ResultRecorder.start(results, name="shard", directory=directory))
    directory.bind("loki", SilentSink.start(name="loki", directory=directory))
    settings = DiskBufferConfig(enabled=True, directory=str(tmp_path),
                                fsync_interval=FSYNC_INTERVAL_S)
    store = SegmentStore(tmp_path, ["loki"], max_file_size=256 * 2**20,
                         max_total_size=1024 * 2**20)
    buffer = DiskBuffer.start(settings, store, {"loki": directory.handle("loki")}, scheduler,
                              0.1, 1.0, name="buffer", directory=directory)
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
