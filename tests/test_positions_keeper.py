"""The PositionsKeeper actor: when it writes container positions."""

from __future__ import annotations

from pathlib import Path

from logcap.actors.positions_keeper import PositionsKeeper
from logcap.config.state import PositionsConfig
from logcap.runtime.timers import ManualScheduler
from logcap.sources.containers.cursor import ContainerCursor
from logcap.sources.containers.cursor_format import encode_cursor
from logcap.state.positions import ContainerPosition, PositionsStore
from logcap.state.positions_messages import CommitContainers, RecordContainers

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
