"""The timestamp journal (logcap/sources/files/timestamp_journal.py): re-reads get the
timestamps the first reads were sent with, whatever their chunking; a torn or corrupt file
is ignored past its valid prefix; the file stays bounded."""

from __future__ import annotations

import os
import re
from pathlib import Path

from logcap.metrics import SOURCE_TIMESTAMPS_REPLAYED
from logcap.sources.files.joining import reader_factory
from logcap.sources.files.source import FileSource
from logcap.sources.files.tailer import SourceTailer, TailerSettings
from logcap.sources.files.timestamp_journal import (
    HEADER,
    JournalRecord,
    TimestampJournal,
    decode_journal,
    encode_record,
    journal_path,
)
from logcap.sources.multiline import MultilineRule

FP = "1024:00112233aabbccdd"


def _first_life(journal: TimestampJournal) -> list[int]:
    """Reads [0,100) 10 lines at 1000, [100,250) 15 lines at 2000; the lines' timestamps."""
    assert journal.stamp(1, 2, FP, 0, 100, 10, 1000) is None
    assert journal.stamp(1, 2, FP, 100, 250, 15, 2000) is None
    return [*range(1000, 1010), *range(2000, 2015)]


def test_a_reread_in_other_chunks_gets_the_first_timestamps_and_fresh_ones_past_them() -> None:
    journal = TimestampJournal()
    first = _first_life(journal)
    # Re-read from 0 in chunks that do not align with the first reads, going further.
    a = journal.stamp(1, 2, FP, 0, 60, 6, 9000)
    b = journal.stamp(1, 2, FP, 60, 180, 12, 9100)
    c = journal.stamp(1, 2, FP, 180, 300, 10, 9200)
    assert a == first[:6]
    assert b == first[6:18]
    assert c == [*first[18:], *range(9200, 9203)]
    assert journal.replayed_lines == 25
    # The fresh part was recorded: a further re-read from 250 finds it.
    assert journal.stamp(1, 2, FP, 250, 300, 3, 9900) == [9200, 9201, 9202]


def test_a_mismatch_gives_fresh_timestamps_and_replaces_the_records() -> None:
    journal = TimestampJournal()
    _first_life(journal)
    # The same range with another line count: the content differs from the first read.
    assert journal.stamp(1, 2, FP, 0, 100, 9, 5000) is None
    assert journal.mismatches == 1
    assert journal.records((1, 2)) == [JournalRecord(1, 2, FP, 0, 100, 9, 5000)]
    # A read ending on a record's end must have consumed exactly its lines.
    journal = TimestampJournal()
    _first_life(journal)
    assert journal.stamp(1, 2, FP, 0, 250, 24, 5000) is None
    # Joined entries: each record's first entry must start at its start.
    journal = TimestampJournal()
    _first_life(journal)
    starts = [i * 10 for i in range(10)] + [105 + i * 10 for i in range(15)]
    assert journal.stamp(1, 2, FP, 0, 250, 25, 5000, line_starts=starts) is None
    journal = TimestampJournal()
    first = _first_life(journal)
    starts = [i * 10 for i in range(10)] + [100 + i * 10 for i in range(15)]
    assert journal.stamp(1, 2, FP, 0, 250, 25, 5000, line_starts=starts) == first


def test_another_fingerprint_is_used_only_when_the_file_still_starts_with_its_bytes() -> None:
    journal = TimestampJournal()
    first = _first_life(journal)
    other = "2048:ffffffffffffffff"
    assert journal.stamp(1, 2, other, 0, 100, 10, 7000) is None
    journal = TimestampJournal()
    first = _first_life(journal)
    assert journal.stamp(1, 2, other, 0, 100, 10, 7000, same_file=lambda fp: fp == FP) \
        == first[:10]


def test_commits_drop_records_one_commit_behind_and_forget_drops_the_stream() -> None:
    journal = TimestampJournal()
    _first_life(journal)
    journal.commit((1, 2), 100)
    assert len(journal.records((1, 2))) == 2  # one commit of slack
    journal.commit((1, 2), 250)
    assert [r.start for r in journal.records((1, 2))] == [100]
    journal.commit((1, 2), 250, durable=True)
    assert journal.records((1, 2)) == []
    _first_life(journal)
    journal.forget((1, 2))
    assert journal.record_count == 0


def test_the_file_survives_a_reload_and_a_torn_or_corrupt_tail_is_ignored(tmp_path: Path) -> None:
    path = str(tmp_path / "timestamps-app.journal")
    journal = TimestampJournal(path)
    assert journal.load() == 0
    first = _first_life(journal)
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b"1 2 " + FP.encode() + b" 250 300 5 30")  # torn: no end of line
    again = TimestampJournal(path)
    assert again.load() == 2
    problems = again.take_problems()
    assert len(problems) == 1 and "torn last record ignored" in problems[0]
    assert again.stamp(1, 2, FP, 0, 250, 25, 9000) == first
    again.close()
    # The load rewrote the file without the torn tail; now damage a record in the middle.
    raw = Path(path).read_bytes()
    assert raw.startswith(HEADER) and raw.endswith(b"\n")
    lines = raw.split(b"\n")
    lines[1] = lines[1].replace(b" 100 ", b" 101 ")
    Path(path).write_bytes(b"\n".join(lines))
    third = TimestampJournal(path)
    assert third.load() == 0
    assert "corrupt record at byte" in third.take_problems()[0]
    third.close()
    Path(path).write_bytes(b"garbage\n")
    fourth = TimestampJournal(path)
    assert fourth.load() == 0
    assert "unknown header" in fourth.take_problems()[0]


def test_decode_keeps_the_valid_prefix() -> None:
    recs = [JournalRecord(1, 2, FP, i * 10, i * 10 + 10, 1, i) for i in range(3)]
    raw = HEADER + b"".join(encode_record(r) for r in recs)
    assert decode_journal(raw).records == recs
    assert decode_journal(raw[:-3]).records == recs[:2]


def test_the_file_is_rewritten_when_it_grows_and_the_records_are_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = TimestampJournal(path, max_records=50, rewrite_min_bytes=4096)
    journal.load()
    for i in range(2000):
        journal.stamp(1, 2, FP, i * 10, i * 10 + 10, 1, i)
        journal.commit((1, 2), i * 10)
    assert os.path.getsize(path) <= 4096 + 200
    assert journal.record_count <= 2
    for i in range(200):  # a stream never committed: bounded by max_records
        journal.stamp(3, 4, FP, i * 10, i * 10 + 10, 1, i)
    assert journal.record_count == 50
    journal.close()


def test_a_tailer_rereading_after_a_restart_sends_the_first_timestamps(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_text("".join(f"line {i}\n" for i in range(300)))
    settings = TailerSettings(source="app", include=(str(log_file),), start_at="beginning",
                              read_bytes=700)
    path = str(tmp_path / "timestamps-app.journal")
    clock = iter(range(10**6, 10**12, 10**6))

    def read_all(tailer: SourceTailer) -> list[tuple[str, int]]:
        tailer.rescan()
        out = []
        while True:
            result = tailer.poll()
            out.extend((e.lines[i], e.timestamp(i)) for e in result.entries
                       for i in range(len(e.lines)))
            if not result.more:
                return out

    journal = TimestampJournal(path)
    journal.load()
    first = read_all(SourceTailer(settings, time_ns=lambda: next(clock), journal=journal))
    journal.close()
    assert len(first) == 300
    again = TimestampJournal(path)
    again.load()
    settings2 = TailerSettings(source="app", include=(str(log_file),), start_at="beginning",
                               read_bytes=1100)
    second = read_all(SourceTailer(settings2, time_ns=lambda: next(clock), journal=again))
    assert second == first


def test_joined_multiline_entries_read_again_get_their_first_timestamps(tmp_path: Path) -> None:
    log_file = tmp_path / "app.java"
    log_file.write_text("".join(f"seq={i} boom\n  at a.b(C.java:{i})\n  at d.e(F.java:1)\n"
                                for i in range(200)) + "seq=200 open\n")
    rule = MultilineRule(re.compile(r"^seq="), max_lines=50, timeout_s=3600.0)
    path = str(tmp_path / "timestamps-app.journal")
    clock = iter(range(10**6, 10**12, 10**6))

    def read_all(read_bytes: int) -> list[tuple[str, int]]:
        settings = TailerSettings(source="app", include=(str(log_file),), start_at="beginning",
                                  read_bytes=read_bytes)
        journal = TimestampJournal(path)
        journal.load()
        tailer = SourceTailer(settings, time_ns=lambda: next(clock), journal=journal,
                              make_reader=reader_factory(1024, "utf-8", lambda p: rule))
        tailer.rescan()
        out = []
        while True:
            result = tailer.poll()
            out.extend((e.lines[i], e.timestamp(i)) for e in result.entries
                       for i in range(len(e.lines)))
            if not result.more:
                tailer.close()
                journal.close()
                return out

    first = read_all(1000)
    assert len(first) == 200 and first[0][0].count("\n") == 2  # joined; the open one held
    assert read_all(2900) == first


def test_a_read_below_the_last_commit_is_new_content_not_a_reread() -> None:
    journal = TimestampJournal()
    _first_life(journal)
    journal.commit((1, 2), 100)  # the record at 0 stays (one commit of slack)
    # The file was cut in place and written again with the same first bytes: a read at 0.
    assert journal.stamp(1, 2, FP, 0, 100, 10, 5000) is None
    assert journal.records((1, 2)) == [JournalRecord(1, 2, FP, 0, 100, 10, 5000)]


def test_a_forgotten_stream_stays_forgotten_after_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = TimestampJournal(path)
    journal.load()
    _first_life(journal)
    journal.stamp(3, 4, FP, 0, 10, 1, 77)
    journal.forget((1, 2))  # drained after a rotation; its inode may be reused
    journal.close()
    again = TimestampJournal(path)
    assert again.load() == 4
    assert again.records((1, 2)) == [] and len(again.records((3, 4))) == 1
    assert again.stamp(1, 2, FP, 0, 100, 10, 5000) is None


def test_a_file_source_restarted_on_its_journal_sends_the_first_timestamps_and_counts_them(
        tmp_path: Path) -> None:
    (tmp_path / "app.log").write_text("".join(f"line {i}\n" for i in range(100)))
    settings = TailerSettings(source="restarted", include=(str(tmp_path / "*.log"),),
                              start_at="beginning")
    path = journal_path(str(tmp_path), "restarted")

    def one_life() -> list[tuple[str, int]]:
        source = FileSource(settings, journal_path=path)
        source.start([], {}, lambda: None)  # no position committed: a crash before any ack
        try:
            entries = source.read().entries
        finally:
            source.close()
        return [(e.lines[i], e.timestamp(i)) for e in entries for i in range(len(e.lines))]

    counter = SOURCE_TIMESTAMPS_REPLAYED.labels("restarted")
    before = counter._value.get()
    first = one_life()
    assert len(first) == 100 and counter._value.get() == before
    assert one_life() == first
    assert counter._value.get() == before + 100
