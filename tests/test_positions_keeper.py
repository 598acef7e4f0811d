"""The PositionsKeeper actor: when it writes container positions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from logcap.actors.positions_keeper import PositionsKeeper
from logcap.config.state import PositionsConfig
from logcap.runtime.timers import ManualScheduler
from logcap.sources.containers.cursor import ContainerCursor
from logcap.sources.containers.cursor_format import encode_cursor
from logcap.state.positions import ContainerPosition, PositionsStore
from logcap.state.positions_messages import (
    CommitContainers,
    GetContainerPositions,
    RecordContainers,
)

ASK_S = 10.0
CID = "cd" * 32


def position(cursor: ContainerCursor, cid: str = CID) -> ContainerPosition:
    return ContainerPosition(cid, "web", cursor.resume_ns(), encode_cursor(cursor), 0.0)


def stored(directory: Path) -> dict[str, int]:
    store = PositionsStore(str(directory))
    store.load()
    return {p.id: p.cursor_ns for p in store.containers()}


def test_recorded_containers_are_written_before_the_answer_and_commits_go_to_the_log(
    tmp_path: Path,
) -> None:
    settings = PositionsConfig(directory=str(tmp_path), flush_interval=3600.0)
    keeper = PositionsKeeper.start(settings, ManualScheduler(), name="positions")
    try:
        other = "ef" * 32
        assert keeper.ask(CommitContainers((position(ContainerCursor(5), other),)),
                          timeout=ASK_S) is None
        # a commit is appended to the positions log at once (no snapshot before the flush
        # interval): a load replays it
        assert stored(tmp_path) == {other: 5}
        assert not (tmp_path / "container_positions.json").exists()
        answer = keeper.ask(RecordContainers((position(ContainerCursor(7)),)), timeout=ASK_S)
        assert answer is True
        assert stored(tmp_path) == {CID: 7, other: 5}  # written before the answer
        # forward only: a record behind the stored cursor keeps the stored one
        keeper.ask(CommitContainers((position(ContainerCursor(9)),)), timeout=ASK_S)
        assert keeper.ask(RecordContainers((position(ContainerCursor(1)),)), timeout=ASK_S)
        assert stored(tmp_path)[CID] == 9
    finally:
        keeper.stop()


def test_the_flush_timer_runs_only_while_changes_wait_for_the_snapshot(tmp_path: Path) -> None:
    """An idle keeper schedules no wake-ups; a commit arms one flush check, which writes the
    snapshot and leaves nothing scheduled."""
    scheduler = ManualScheduler()
    # the store's clock is the real one: the interval is short and really waited for
    settings = PositionsConfig(directory=str(tmp_path), flush_interval=0.05)
    keeper = PositionsKeeper.start(settings, scheduler, name="positions")
    try:

        def flush_checks() -> list[float]:
            return scheduler.delays(lambda m: type(m).__name__ == "_FlushTick")

        keeper.ask(GetContainerPositions(), timeout=ASK_S)
        assert flush_checks() == []
        keeper.ask(CommitContainers((position(ContainerCursor(5)),)), timeout=ASK_S)
        keeper.ask(CommitContainers((position(ContainerCursor(6)),)), timeout=ASK_S)
        assert flush_checks() == [pytest.approx(0.05)]  # one check for both commits
        assert not (tmp_path / "container_positions.json").exists()
        time.sleep(0.1)
        scheduler.advance(0.05)
        keeper.ask(GetContainerPositions(), timeout=ASK_S)
        assert (tmp_path / "container_positions.json").exists()
        assert flush_checks() == []
        scheduler.advance(60.0)
        assert flush_checks() == []
    finally:
        keeper.stop()
