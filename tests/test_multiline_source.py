"""Multiline joining in the file source, without threads: the tailer reads through a
JoiningReader, so every read is whole entries, the open entry is never inside a read's range
(positions stop at its start), it is closed after the timeout or at the end of a rotated-away
file, a rewind or a restart from the committed position reads it again whole."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.messages import Entries
from logcap.sources.files.joining import JoinCounts, JoiningReader, reader_factory
from logcap.sources.files.reader import LineReader
from logcap.sources.files.tailer import SourceTailer, TailerSettings
from logcap.sources.multiline import MultilineRule
from logcap.state.positions import FilePosition

RULE = MultilineRule(re.compile(r"^seq="), max_lines=50, timeout_s=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(n: int, tail: int = 2) -> str:
    return "\n".join([f"seq={n} ERROR boom", *[f"\tat frame {n}.{k}" for k in range(tail)]])


def write(path: Path, *entries: str, partial: str = "") -> None:
    with open(path, "a") as fh:
        fh.write("".join(e + "\n" for e in entries) + partial)


class Rig:
    def __init__(self, tmp: Path, stored: tuple[FilePosition, ...] = ()) -> None:
        self.log = tmp / "app.log"
        self.log.touch()
        self.clock = Clock()
        self.counts = JoinCounts()
        settings = TailerSettings("app", (str(tmp / "*.log"),), start_at="beginning",
                                  drain_grace_s=1.0)
        self.tailer = SourceTailer(
            settings, stored, clock=self.clock, time_ns=lambda: 0,
            make_reader=reader_factory(settings.max_line_bytes, settings.encoding,
                                       lambda path: RULE, self.counts, self.clock))
        self.tailer.rescan()

    def poll(self) -> list[Entries]:
        self.tailer.check_rotation()
        return self.tailer.poll().entries

    def poll_all(self) -> list[Entries]:
        out: list[Entries] = []
        while True:
            got = self.poll()
            if not got:
                return out
            out.extend(got)

    def ack(self, entries: list[Entries]) -> list[FilePosition]:
        return self.tailer.ack(e.token for e in entries)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.tailer.close()


def lines_of(entries: list[Entries]) -> list[str]:
    return [line for e in entries for line in e.lines]


def test_a_read_holds_whole_entries_and_stops_at_the_open_ones_start(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1), entry(2, tail=1), partial="\tat half")
    [part] = rig.poll()
    assert part.lines == [entry(0), entry(1)]
    open_start = len(entry(0)) + len(entry(1)) + 2
    assert (part.token.start, part.token.end) == (0, open_start)
    [position] = rig.ack([part])
    assert position.offset == open_start

    write(rig.log, " done", entry(3))
    [part] = rig.poll()
    assert part.lines == [entry(2, tail=1) + "\n\tat half done"]
    assert part.token.start == open_start
    assert rig.counts.total == {"complete": 3}


def test_an_open_entry_is_closed_after_the_timeout_without_new_lines(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1))
    assert lines_of(rig.poll()) == [entry(0)]
    rig.clock.now += 4.9
    assert rig.poll() == []
    rig.clock.now += 0.1
    [part] = rig.poll()
    assert part.lines == [entry(1)] and part.token.end == os.path.getsize(rig.log)
    assert rig.counts.take() == {"complete": 1, "timeout": 1}


def test_the_timeout_does_not_cut_an_entry_whose_next_lines_wait_in_the_file(rig: Rig) -> None:
    write(rig.log, entry(0, tail=0))
    assert rig.poll() == []
    write(rig.log, "\tat late frame")
    rig.clock.now += 60  # e.g. the read window was full for a minute
    assert rig.poll() == []  # the late line was read first: not due any more
    rig.clock.now += 5
    assert lines_of(rig.poll()) == [entry(0, tail=0) + "\n\tat late frame"]


def test_a_rewind_reads_the_open_entry_again_from_its_first_line(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1, tail=1))
    first = rig.poll()
    assert lines_of(first) == [entry(0)]
    assert rig.tailer.rewind() == 1
    write(rig.log, "\tat more", entry(2))
    again = rig.poll_all()
    assert lines_of(again) == [entry(0), entry(1, tail=1) + "\n\tat more"]
    assert again[0].token.start == 0 and again[0].token.epoch == first[0].token.epoch + 1


def test_a_restart_from_the_committed_position_reads_an_entry_cut_by_a_crash_whole(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    write(rig.log, entry(0), entry(1, tail=0), partial="\tat fra")
    [position] = rig.ack(rig.poll())
    rig.tailer.close()  # a crash: the open entry was never sent
    write(rig.log, "me", entry(2))
    again = Rig(tmp_path, (position,))
    try:
        assert lines_of(again.poll_all()) == [entry(1, tail=0) + "\n\tat frame"]
    finally:
        again.tailer.close()


def test_a_rename_rotation_closes_the_old_files_open_entry_at_its_end(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1))
    assert lines_of(rig.poll()) == [entry(0)]
    os.rename(rig.log, rig.log.with_suffix(".log.1"))
    write(rig.log, entry(2), entry(3))
    got = rig.poll_all()
    assert lines_of(got) == [entry(2)]  # the old file's entry waits for the drain grace
    rig.clock.now += 1.0
    got = rig.poll_all()
    assert lines_of(got) == [entry(1)]
    assert rig.counts.total["end_of_stream"] == 1


def test_a_copytruncate_rotation_follows_the_open_entry_into_the_copy(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1))
    assert lines_of(rig.poll()) == [entry(0)]
    copy = rig.log.with_suffix(".log.1")
    copy.write_bytes(rig.log.read_bytes())
    os.truncate(rig.log, 0)
    write(rig.log, entry(2, tail=0), entry(3))
    got = rig.poll_all()
    rig.clock.now += 1.0
    got += rig.poll_all()
    assert sorted(lines_of(got)) == [entry(1), entry(2, tail=0)]
    assert rig.counts.total["end_of_stream"] == 1


def test_a_joining_reader_needs_line_offsets(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("a\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="track_offsets"):
            JoiningReader(LineReader(fd), RULE)
        joined = JoiningReader(LineReader(fd, track_offsets=True), RULE)
        last = joined.read_batch(final=True)
        assert last.lines == ["a"] and (last.start_offset, last.end_offset) == (0, 2)
        assert joined.offset == 2 and joined.pending_bytes == 0
    finally:
        os.close(fd)


def test_paths_without_a_rule_are_read_line_by_line(tmp_path: Path) -> None:
    make = reader_factory(1024, "utf-8", lambda path: RULE if path.endswith(".java") else None)
    path = tmp_path / "x.log"
    path.write_text("seq=1\n\tat x\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert isinstance(make(str(path), fd, 0), LineReader)
        assert isinstance(make(str(tmp_path / "x.java"), fd, 0), JoiningReader)
    finally:
        os.close(fd)


def test_entries_cut_at_a_cap_are_counted_by_cap(tmp_path: Path) -> None:
    rule = MultilineRule(re.compile(r"^seq="), max_lines=3, max_bytes=60, timeout_s=5.0)
    counts = JoinCounts()
    path = tmp_path / "x.log"
    path.write_text(entry(0, tail=4) + "\n" + "seq=1 " + "y" * 40 + "\n" + "z" * 30 + "\n"
                    + entry(2) + "\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        joined = JoiningReader(LineReader(fd, track_offsets=True), rule, counts)
        result = joined.read_batch(final=True)
    finally:
        os.close(fd)
    assert result.lines == ["seq=0 ERROR boom\n\tat frame 0.0\n\tat frame 0.1",
                            "\tat frame 0.2\n\tat frame 0.3", "seq=1 " + "y" * 40, "z" * 30,
                            entry(2)]
    assert counts.take() == {"max_lines": 1, "complete": 2, "max_bytes": 1, "end_of_stream": 1}
    assert counts.take() == {} and counts.total["complete"] == 2


def test_a_truncation_in_place_still_sends_the_entry_that_was_open(rig: Rig) -> None:
    write(rig.log, entry(0), entry(1))
    first = rig.poll()
    assert lines_of(first) == [entry(0)]
    os.truncate(rig.log, 0)  # no rotated copy anywhere: the old content is gone
    write(rig.log, entry(2, tail=0), entry(3, tail=0))
    got = rig.poll_all()
    assert lines_of(got) == [entry(1), entry(2, tail=0)]
    assert rig.counts.total["end_of_stream"] == 1
    rig.ack(first + got)
    rig.poll()
    assert len(rig.tailer.retired) == 0  # the cut generation is closed once acknowledged
