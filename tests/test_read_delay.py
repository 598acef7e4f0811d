"""``read_delay``: the watcher wakes the file source that long after the first event, with many
writes in between making one wake-up; each read's entries say when their first event was seen
and when the source reads again at the earliest, for the shard's batch deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from logcap.config import load_config
from logcap.sources.files.source import FileSource, file_source_settings
from logcap.sources.files.tailer import TailerSettings
from logcap.sources.files.watcher import DEFAULT_READ_DELAY_S, DirWatcher
from tests.actor_kit import wait_until
from tests.harness import make_config

DELAY_S = 0.3


def test_many_writes_within_the_delay_make_one_wake_up_told_a_delay_after_the_first(
        tmp_path: Path) -> None:
    calls: list[float] = []
    told = threading.Event()

    def on_change() -> None:
        calls.append(time.monotonic())
        told.set()

    watcher = DirWatcher(on_change, delay_s=DELAY_S)
    try:
        watcher.watch([str(tmp_path)])
        assert watcher.take_touched() is None  # nothing known before the first take
        log = tmp_path / "app.log"
        before = time.monotonic()
        with log.open("a") as f:
            for i in range(20):
                f.write(f"line {i}\n")
                f.flush()
        wrote = time.monotonic()
        assert told.wait(5)
        seen = watcher.take_seen()
        assert seen is not None and before <= seen < wrote + DELAY_S  # the thread saw it then
        assert calls[0] - seen >= DELAY_S - 0.002  # poll's millisecond rounding
        assert watcher.take_touched() == {str(log)}
        assert watcher.take_seen() is None  # taken
        told.clear()
        with log.open("a") as f:
            f.write("again\n")
        assert told.wait(5)
        assert len(calls) == 2
    finally:
        watcher.close()


def test_with_no_delay_a_write_is_told_at_once(tmp_path: Path) -> None:
    told = threading.Event()
    watcher = DirWatcher(told.set, delay_s=0)
    try:
        watcher.watch([str(tmp_path)])
        (tmp_path / "app.log").write_text("x\n")
        assert told.wait(5)
        seen = watcher.take_seen()
        assert seen is not None and time.monotonic() - seen < DELAY_S
    finally:
        watcher.close()


def test_a_read_after_a_wake_carries_the_seen_time_and_the_next_read_hint(
        tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    woke = threading.Event()
    source = FileSource(TailerSettings("app", (str(tmp_path / "*.log"),), start_at="beginning",
                                       read_delay_s=DELAY_S))
    source.start([], {}, woke.set)
    try:
        assert source.read().entries == []
        assert source.watcher is not None and source.watcher.delay_s == DELAY_S
        wrote = time.monotonic()
        with log.open("a") as f:
            f.write("one\ntwo\n")
        assert woke.wait(5)
        source.on_wake()
        read_at = time.monotonic()
        reading = source.read()
        assert [line for e in reading.entries for line in e.lines] == ["one", "two"]
        (entries,) = reading.entries
        assert entries.seen is not None and wrote <= entries.seen <= wrote + DELAY_S
        assert entries.next_read_at is not None
        assert entries.next_read_at >= read_at + DELAY_S
        assert not reading.read_after_ack  # nothing held back by the window
        wait_until(lambda: source.tailer.open_count() == 1)
        with log.open("a") as f:
            f.write("three\n")
        source.on_tick()  # a read that finds lines without an event of its own
        later = source.read()
        assert all(e.seen is None or e.seen >= wrote for e in later.entries)
    finally:
        source.close()


@pytest.mark.parametrize(("given", "expected"), [(None, DEFAULT_READ_DELAY_S), ("0s", 0.0),
                                                 ("150ms", 0.15)])
def test_read_delay_is_a_key_of_a_file_source(tmp_path: Path, given: str | None,
                                              expected: float) -> None:
    source = {"name": "app", "include": [str(tmp_path / "*.log")]}
    if given is not None:
        source["read_delay"] = given
    config = load_config(make_config(tmp_path, [], sources={"files": [source]}))
    (files,) = config.sources.files
    assert files.read_delay == expected
    assert file_source_settings(files, config).read_delay_s == expected
