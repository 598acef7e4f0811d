"""SourceTailer without threads: files known by identity across renames, arrivals from the
watcher, closed idle files, the descriptor cap (issue 9)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.sources.files.generation import ClosedFile, TailerSettings, open_log
from logcap.sources.files.tailer import CAP_PROBLEM, SourceTailer
from logcap.sources.files.watcher import Arrival
from logcap.state.file_identity import hash_prefix, identity_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(tmp: Path, clock: Clock, include: str = "*.log", **kw: object) -> SourceTailer:
    settings = TailerSettings(source="t", include=(str(tmp / include),), start_at="beginning",
                              drain_grace_s=1.0, **kw)  # type: ignore[arg-type]
    return SourceTailer(settings, clock=clock)


def started(tmp: Path, clock: Clock, made: list[SourceTailer], lines: list[str],
            include: str = "*.log", **kw: object) -> tuple[Path, SourceTailer]:
    """``app.log`` holding ``lines``, and a tailer that found it."""
    log = tmp / "app.log"
    write(log, *lines)
    tailer = make(tmp, clock, include, **kw)
    made.append(tailer)
    tailer.rescan()
    return log, tailer


def pump(tailer: SourceTailer, clock: Clock, rounds: int = 6) -> list[str]:
    """Read and acknowledge everything there is; retired files drain past rotate_wait."""
    lines: list[str] = []
    for _ in range(rounds):
        tailer.check_rotation()
        result = tailer.poll()
        for entries in result.entries:
            lines.extend(entries.lines)
            tailer.ack([entries.token])
        clock.now += 0.6
    tailer.poll()
    return lines


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))


@pytest.fixture
def tailers() -> Iterator[list[SourceTailer]]:
    made: list[SourceTailer] = []
    yield made
    for tailer in made:
        tailer.close()


def test_a_renamed_file_the_globs_still_match_is_not_read_again(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1", "a2"], "*.log*")
    assert pump(tailer, clock) == ["a1", "a2"]
    log.rename(tmp_path / "app.log.1")
    write(log, "b1")
    tailer.rescan()
    assert sorted(pump(tailer, clock, rounds=8)) == ["b1"]
    tailer.rescan()  # the drained app.log.1 is known by identity, unchanged: not opened
    assert pump(tailer, clock) == []
    assert tailer.open_count() == 1


def test_a_generation_rotated_before_the_tailer_looked_is_read_in_full_from_its_arrival(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1"])
    assert pump(tailer, clock) == ["a1"]
    # app.log renamed; B created, opened by the watcher, written and renamed; C created.
    log.rename(tmp_path / "app.log.1")
    write(log, "b1", "b2")
    fd = open_log(str(log))
    log.rename(tmp_path / "app.log.1")
    write(log, "c1")
    tailer.adopt([Arrival(str(log), str(tmp_path / "app.log.1"), fd)])
    assert sorted(pump(tailer, clock, rounds=8)) == ["b1", "b2", "c1"]


def test_the_arrival_of_a_file_already_followed_is_closed_and_nothing_is_read_twice(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1"])
    fd = open_log(str(log))
    tailer.adopt([Arrival(str(log), str(log), fd)])
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the tailer
    assert pump(tailer, clock) == ["a1"]
    assert tailer.open_count() == 1


def test_an_idle_file_is_closed_after_close_inactive_and_reopened_at_its_offset(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1"], close_inactive_s=60.0)
    assert pump(tailer, clock) == ["a1"]
    tailer.close_idle()
    assert tailer.open_count() == 1  # not idle long enough
    clock.now += 61
    tailer.close_idle()
    assert tailer.open_count() == 0 and str(log) in tailer.dormant
    assert tailer.take_closes() == {"inactive": 1}
    tailer.sweep_dormant()
    assert tailer.open_count() == 0  # unchanged: stays closed
    write(log, "a2")
    tailer.sweep_dormant()
    assert tailer.open_count() == 1
    assert pump(tailer, clock) == ["a2"]


def test_a_closed_file_truncated_and_rewritten_while_closed_is_read_from_zero(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["old line one", "old line two"],
                          close_inactive_s=1.0)
    pump(tailer, clock)
    clock.now += 5
    tailer.close_idle()
    log.write_text("new content, longer than the old two lines were\n")  # same inode
    tailer.sweep_dormant()
    assert pump(tailer, clock) == ["new content, longer than the old two lines were"]


def test_a_closed_file_renamed_and_grown_while_closed_has_its_tail_read(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1"], close_inactive_s=1.0)
    pump(tailer, clock)
    clock.now += 5
    tailer.close_idle()
    write(log, "a2")
    log.rename(tmp_path / "app.log.1")
    write(log, "b1")
    tailer.sweep_dormant()
    assert sorted(pump(tailer, clock, rounds=8)) == ["a2", "b1"]


def read_under_a_cap(tmp_path: Path, clock: Clock, tailers: list[SourceTailer], files: int,
                     cap: int) -> tuple[SourceTailer, list[Path], list[str]]:
    """``files`` files of one line each, read by a tailer opening at most ``cap``: the
    tailer, the files and the lines read (all of them, the cap held at every step)."""
    paths = [tmp_path / f"f{i}.log" for i in range(files)]
    for i, path in enumerate(paths):
        write(path, f"{i}-a")
    tailer = make(tmp_path, clock, max_open_files=cap)
    tailers.append(tailer)
    tailer.rescan()
    assert tailer.open_count() <= cap
    lines = pump(tailer, clock)
    for _ in range(files // 2):
        tailer.sweep_dormant()
        assert tailer.open_count() <= cap
        lines += pump(tailer, clock, rounds=1)
    assert sorted(lines) == sorted(f"{i}-a" for i in range(files))
    return tailer, paths, lines


def test_max_open_files_closes_the_least_recently_active_and_every_line_is_read(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    tailer, paths, lines = read_under_a_cap(tmp_path, clock, tailers, 10, 4)
    for i, path in enumerate(paths):
        write(path, f"{i}-b")
    for _ in range(6):
        tailer.sweep_dormant()
        assert tailer.open_count() <= 4
        lines += pump(tailer, clock, rounds=1)
    assert sorted(lines) == sorted([f"{i}-a" for i in range(10)] + [f"{i}-b" for i in range(10)])
    assert tailer.take_closes()["max_open_files"] >= 6
    assert CAP_PROBLEM not in tailer.errors


def test_closed_files_seen_changed_but_left_closed_by_the_cap_are_looked_at_again(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    # A sweep given only the paths with events (a wake-up) must not forget the changed
    # closed files it had no room to open: their events are past, the next one may not come.
    tailer, paths, lines = read_under_a_cap(tmp_path, clock, tailers, 8, 4)
    for i, path in enumerate(paths):
        write(path, f"{i}-b")
    touched = {str(p) for p in paths}
    tailer.sweep_dormant(touched)  # the wake-up after the writes: room for some only
    assert tailer.reopen_waiting
    lines += pump(tailer, clock, rounds=1)
    for _ in range(4):  # later wake-ups name no path (no new event)
        tailer.sweep_dormant(set())
        lines += pump(tailer, clock, rounds=1)
    assert sorted(lines) == sorted([f"{i}-a" for i in range(8)] + [f"{i}-b" for i in range(8)])
    assert not tailer.reopen_waiting


def test_the_cap_is_a_problem_while_no_file_can_be_closed(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    for i in range(3):
        write(tmp_path / f"f{i}.log", "x")
    tailer = make(tmp_path, clock, max_open_files=1)
    tailers.append(tailer)
    problems = tailer.rescan()  # all have unread data: none can be closed
    assert CAP_PROBLEM in tailer.errors
    assert any(p.startswith(CAP_PROBLEM) for p in problems)
    assert tailer.open_count() == 1 and len(tailer.waiting) == 2


def test_a_closed_file_is_the_same_file_only_with_the_same_bytes_before_its_offset(
        tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "header", "line 1")
    fd = open_log(str(log))
    try:
        st = os.fstat(fd)
        closed = ClosedFile(str(log), identity_of(fd), st.st_size, st.st_size, st.st_mtime_ns,
                            hash_prefix(fd, st.st_size))
        assert closed.same_content(fd, st.st_size)
        write(log, "line 2")
        assert closed.same_content(fd, os.fstat(fd).st_size)  # grown: the same file
        with open(log, "r+") as fh:  # same first bytes, other bytes before the offset
            fh.seek(len("header\n"))
            fh.write("LINE 1")
        assert not closed.same_content(fd, os.fstat(fd).st_size)
        assert not closed.same_content(fd, closed.offset - 1)  # shorter than the offset
    finally:
        os.close(fd)


def test_a_new_file_arriving_where_a_closed_file_was_rotated_away_becomes_the_paths_file(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log, tailer = started(tmp_path, clock, tailers, ["a1"], close_inactive_s=1.0)
    pump(tailer, clock)
    clock.now += 5
    tailer.close_idle()
    write(log, "a2")
    log.rename(tmp_path / "app.log.1")
    write(log, "b1")
    tailer.adopt([Arrival(str(log), str(log), open_log(str(log)))])
    assert set(tailer.current) == {str(log)} and not tailer.dormant
    assert sorted(pump(tailer, clock, rounds=8)) == ["a2", "b1"]
    write(log, "b2")
    assert pump(tailer, clock) == ["b2"]


def test_most_lagging_lists_the_files_furthest_behind_first(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    for n in range(8):
        write(tmp_path / f"f{n}.log", *(["x" * 9] * n))  # n lines of 10 bytes, none read yet
    tailer = make(tmp_path, clock)
    tailers.append(tailer)
    tailer.rescan()
    tailer.check_rotation()
    top = tailer.most_lagging(3)
    assert top == [{"path": str(tmp_path / f"f{n}.log"), "lag_bytes": 10 * n} for n in (7, 6, 5)]
    pump(tailer, clock)
    assert [row["lag_bytes"] for row in tailer.most_lagging(3)] == [0, 0, 0]


def test_a_rewind_resumes_past_what_the_disk_buffer_holds_and_reads_the_rest_again(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    # chaos harness: a restarted shard made its sources re-read reads the buffer had stored
    # (their acks died with the shard); they got new timestamps and Loki kept both copies
    log, tailer = started(tmp_path, clock, tailers, [f"line {i}" for i in range(10)])
    first = tailer.poll().entries
    assert [line for e in first for line in e.lines] == [f"line {i}" for i in range(10)]
    token = first[0].token
    write(log, *[f"line {i}" for i in range(10, 20)])
    tailer.check_rotation()
    second = tailer.poll().entries
    assert second and second[0].token.start == token.end
    # the first read is in the buffer, the second is not (lost with the shard): no acks
    buffered = {token.stream: [(token.start, token.end)]}
    assert tailer.rewind(None, buffered) == 2
    again = [line for e in tailer.poll().entries for line in e.lines]
    assert again == [f"line {i}" for i in range(10, 20)]


def test_a_rewind_without_the_buffers_ranges_reads_every_unacknowledged_line_again(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    _, tailer = started(tmp_path, clock, tailers, [f"line {i}" for i in range(5)])
    assert tailer.poll().entries
    assert tailer.rewind() == 1
    assert [line for e in tailer.poll().entries for line in e.lines] == \
        [f"line {i}" for i in range(5)]
