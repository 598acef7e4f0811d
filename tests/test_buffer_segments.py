"""The disk buffer's segment store: append, per-sink read and ack, rotation, release, recovery."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from logcap.messages import Entries
from logcap.origin import FILE_KIND, ReadToken
from logcap.runtime.directory import Directory, Handle
from logcap.state.buffer import BufferDirectoryError, BufferFull, SegmentStore, verify_directory
from logcap.state.buffer import recovery as recovery_module
from logcap.state.buffer import segments as segments_module
from logcap.state.buffer.record import HEADER_BYTES, scan_segment

SINKS = ["loki", "file"]


def make_batch(n: int, *, lines: int = 5, source: str = "src", width: int = 30) -> list[Entries]:
    rng = random.Random(n)
    text = ["".join(rng.choices("abcdefghij ", k=width)) for _ in range(lines)]
    return [Entries(source, f"/var/log/{source}.log", (("job", source),), text, 1_000 * n,
                    ReadToken(source, FILE_KIND, None, n, n + 1, "1:1", 0), lines * width)]


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., SegmentStore]]:
    opened: list[SegmentStore] = []

    def factory(directory: Path | None = None, **options: Any) -> SegmentStore:
        settings: dict[str, Any] = {"max_file_size": 2048, "max_total_size": 64 * 1024,
                                    "retention_period_s": 3600.0, "clock": clock}
        settings.update(options)
        sinks = settings.pop("sinks", SINKS)
        store = SegmentStore(directory or tmp_path, sinks, **settings)
        store.last_report = store.open()  # type: ignore[attr-defined]
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store._release_files()


def seqs(pairs: list[tuple[int, list[Entries]]]) -> list[int]:
    return [seq for seq, _ in pairs]


def crash(store: SegmentStore) -> None:
    """What kill -9 leaves: the files as written, no sync, no cursor write."""
    store._release_files()


# --- append, read, ack -------------------------------------------------------------------------


def test_appends_get_consecutive_seqs_and_read_back_equal(make_store: Callable) -> None:
    store = make_store()
    assert [store.append(make_batch(n)) for n in range(1, 6)] == [1, 2, 3, 4, 5]
    got = store.read("loki", 10)
    assert got == [(n, make_batch(n)) for n in range(1, 6)]
    assert store.read("loki", 10) == []
    assert seqs(store.read("file", 2)) == [1, 2]
    assert seqs(store.read("file", 10)) == [3, 4, 5]


# --- the batches appended last, read from memory (recent.py) ----------------------------------

ADDRESS = Handle(Directory(), "root/sources/app")
"""A source's address, as the shards' entries carry it (not stored: cleared in memory too)."""


def test_the_store_sends_from_memory_what_a_restart_reads_from_the_files(
        make_store: Callable[..., SegmentStore], tmp_path: Path) -> None:
    store = make_store()
    for n in range(1, 8):
        store.append([replace(e, ack_to=ADDRESS) for e in make_batch(n)])
    store.sync()
    from_memory = store.read("loki", 100)
    assert from_memory == [(n, make_batch(n)) for n in range(1, 8)]
    store.close()
    reopened = make_store()
    assert reopened.read("loki", 100) == from_memory  # from the files: the same entries


def test_what_every_sink_has_read_leaves_memory_and_a_rewind_reads_the_files(
        make_store: Callable[..., SegmentStore]) -> None:
    store = make_store()
    for n in range(1, 4):
        store.append(make_batch(n))
    assert seqs(store.read("loki", 100)) == [1, 2, 3]
    assert len(store._recent) == 3  # the file sink has not read them yet
    assert seqs(store.read("file", 100)) == [1, 2, 3]
    assert len(store._recent) == 0
    assert store._files._readers == {}  # no file open for reading while all read memory
    store.rewind("loki")
    assert store.read("loki", 100) == [(n, make_batch(n)) for n in range(1, 4)]
    assert store._files._readers == {}  # read from the file, closed once every sink caught up


def test_a_record_damaged_on_disk_after_its_append_is_still_sent_whole_and_found_at_the_next_start(
        make_store: Callable[..., SegmentStore], tmp_path: Path) -> None:
    store = make_store(max_file_size=64 * 1024)
    store.append(make_batch(1))
    store.sync()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0x01
    segment.write_bytes(bytes(data))
    assert store.read("loki", 10) == [(1, make_batch(1))]  # the copy in memory is intact
    store.close()
    reopened = make_store(max_file_size=64 * 1024)
    assert reopened.read("file", 10) == []
    assert reopened.stats()["dropped"]["corrupt"]["batches"] == 1


def test_entries_of_other_kinds_round_trip_the_same_way(
        make_store: Callable[..., SegmentStore]) -> None:
    token = ReadToken("containers", "container", None, 0, 10, "abc", 0)
    batch = [Entries("containers", "abc/stdout", (("container", "web"),), ["a", "b\nc"], 5,
                     token, 4, ADDRESS, [7, 9], [(("level", "info"),), ()],
                     [(("call_id", "x"),), ()])]
    store = make_store()
    store.append(batch)
    ((_, got),) = store.read("loki", 10)
    assert got == [replace(batch[0], ack_to=None)]


def test_an_empty_batch_or_a_closed_store_is_refused(make_store: Callable, tmp_path: Path) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="empty"):
        store.append([])
    unopened = SegmentStore(tmp_path / "other", SINKS)
    with pytest.raises(RuntimeError, match="not open"):
        unopened.append(make_batch(1))


def test_acks_out_of_order_advance_the_cursor_only_when_contiguous(make_store: Callable) -> None:
    store = make_store()
    for n in range(1, 6):
        store.append(make_batch(n))
    store.read("loki", 5)
    store.ack("loki", 2)
    store.ack("loki", 3)
    assert store.acked_seq("loki") == 0
    store.ack("loki", 1)
    assert store.acked_seq("loki") == 3
    store.ack("loki", 5)
    store.rewind("loki")
    assert seqs(store.read("loki", 10)) == [4]
    assert store.stats()["sinks"]["loki"]["lag_batches"] == 1
    assert store.stats()["sinks"]["file"]["lag_batches"] == 5


def test_acks_for_unknown_sinks_or_unassigned_seqs_are_refused(make_store: Callable) -> None:
    store = make_store()
    store.append(make_batch(1))
    with pytest.raises(ValueError, match="unknown sink 'nope'"):
        store.ack("nope", 1)
    with pytest.raises(ValueError, match="never assigned"):
        store.ack("loki", 2)
    store.ack("loki", 1)
    store.ack("loki", 1)
    assert store.acked_seq("loki") == 1


def test_sync_makes_every_appended_seq_durable(make_store: Callable) -> None:
    store = make_store()
    store.append(make_batch(1))
    store.append(make_batch(2))
    assert store.durable_seq == 0
    assert store.sync() == 2 and store.durable_seq == 2


def test_unsynced_bytes_count_the_raw_payload_appended_since_the_last_sync(
        make_store: Callable) -> None:
    store = make_store()
    assert store.unsynced_bytes == 0
    store.append(make_batch(1, lines=5, width=30))
    store.append(make_batch(2, lines=2, width=30))
    assert store.unsynced_bytes == store.stats()["appended"]["raw_bytes"] > 7 * 30
    store.sync()
    assert store.unsynced_bytes == 0
    store.append(make_batch(3, lines=1, width=30))
    assert 30 < store.unsynced_bytes < store.stats()["appended"]["raw_bytes"]


# --- rotation and the ledger -------------------------------------------------------------------


def test_segments_rotate_at_max_file_size_and_sealed_ones_get_a_ledger(
        make_store: Callable, tmp_path: Path) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n))
    infos = store.segments()
    assert len(infos) > 3
    assert all(info.bytes <= 1024 for info in infos)
    assert all(info.sealed for info in infos[:-1]) and not infos[-1].sealed
    assert [info.first_seq for info in infos[1:]] == [info.last_seq + 1 for info in infos[:-1]]
    for info in infos[:-1]:
        assert (tmp_path / info.name.replace(".seg", ".idx")).exists()
    assert not (tmp_path / infos[-1].name.replace(".seg", ".idx")).exists()
    assert store.durable_seq >= infos[-2].last_seq


def test_a_record_larger_than_max_file_size_gets_a_segment_of_its_own(
        make_store: Callable) -> None:
    store = make_store(max_file_size=600)
    store.append(make_batch(1, lines=2))
    store.append(make_batch(2, lines=60, width=50))
    store.append(make_batch(3, lines=2))
    assert [(i.first_seq, i.records) for i in store.segments()] == [(1, 1), (2, 1), (3, 1)]
    assert store.read("loki", 5)[1] == (2, make_batch(2, lines=60, width=50))


def test_start_up_reads_the_ledgers_of_sealed_segments_and_scans_only_the_active_one(
        make_store: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 40):
        store.append(make_batch(n))
    segments = len(store.segments())
    store.close()
    scanned: list[int] = []
    real_scan = recovery_module.scan_segment

    def counting_scan(fd: int, size: int | None = None) -> Any:
        scanned.append(fd)
        return real_scan(fd, size)

    monkeypatch.setattr(recovery_module, "scan_segment", counting_scan)
    store = make_store(max_file_size=1024)
    report = store.last_report
    assert report.clean, report.problems
    assert len(scanned) == 1 and report.indexes_used == segments - 1
    assert seqs(store.read("loki", 100)) == list(range(1, 40))


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_ledger_is_rebuilt_by_scanning(
        make_store: Callable, tmp_path: Path, damage: str) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 20):
        store.append(make_batch(n))
    first = store.segments()[0].name
    store.close()
    ledger = tmp_path / first.replace(".seg", ".idx")
    if damage == "missing":
        ledger.unlink()
    else:
        ledger.write_bytes(b"\x00" * 30)
    store = make_store(max_file_size=1024)
    report = store.last_report
    assert first in report.indexes_rebuilt and any(first in p for p in report.problems)
    assert ledger.exists()
    assert seqs(store.read("loki", 100)) == list(range(1, 20))


# --- recovery ------------------------------------------------------------------------------


def test_reopening_resumes_each_sink_after_its_acked_seq(make_store: Callable) -> None:
    store = make_store()
    for n in range(1, 8):
        store.append(make_batch(n))
    for seq in seqs(store.read("loki", 4)):
        store.ack("loki", seq)
    store.ack("file", 1)
    store.ack("file", 3)
    store.close()
    store = make_store()
    assert store.last_report.cursors == "primary"
    assert seqs(store.read("loki", 10)) == [5, 6, 7]
    assert seqs(store.read("file", 10)) == [2, 3, 4, 5, 6, 7]
    assert store.append(make_batch(8)) == 8


def test_a_torn_tail_is_cut_back_and_counted(make_store: Callable, tmp_path: Path) -> None:
    store = make_store()
    for n in range(1, 4):
        store.append(make_batch(n))
    crash(store)
    path = tmp_path / "0000000000000001.seg"
    size = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"LCR1\x00\x05garbage of a half-written record")
    store = make_store()
    report = store.last_report
    assert report.torn_tails == [(path.name, 38)]
    assert path.stat().st_size == size
    assert seqs(store.read("loki", 10)) == [1, 2, 3]
    assert store.append(make_batch(4)) == 4


def test_a_corrupt_record_in_the_middle_is_skipped_and_settled_for_every_sink(
        make_store: Callable, tmp_path: Path) -> None:
    store = make_store()
    for n in range(1, 5):
        store.append(make_batch(n))
    store.close()
    path = tmp_path / "0000000000000001.seg"
    records = scan_one(path)
    data = bytearray(path.read_bytes())
    data[records[1][0] + HEADER_BYTES + 3] ^= 0x40
    path.write_bytes(bytes(data))
    store = make_store()
    report = store.last_report
    assert report.corrupt_regions == [(path.name, records[1][0], records[1][1])]
    assert report.lost_seqs == 1
    assert seqs(store.read("loki", 10)) == [1, 3, 4]
    for seq in (1, 3, 4):
        store.ack("loki", seq)
    assert store.acked_seq("loki") == 4
    assert store.stats()["dropped"]["corrupt"]["batches"] == 1


def test_a_lost_record_whose_seq_was_persisted_is_settled_and_never_reused(
        make_store: Callable, tmp_path: Path) -> None:
    store = make_store()
    for n in range(1, 4):
        store.append(make_batch(n))
    store.persist_cursors()
    crash(store)
    path = tmp_path / "0000000000000001.seg"
    offset, _, seq = scan_one(path)[-1]
    os.truncate(path, offset + 7)
    store = make_store()
    assert store.last_report.lost_seqs == 1 and store.last_seq == seq == 3
    assert seqs(store.read("loki", 10)) == [1, 2]
    store.ack("loki", 1)
    store.ack("loki", 2)
    assert store.acked_seq("loki") == 3
    assert store.stats()["sinks"]["loki"]["lag_batches"] == 0
    assert store.append(make_batch(4)) == 4


def scan_one(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, size, seq)`` of every valid record of a segment file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(r.offset, r.header.size, r.header.seq) for r in scan_segment(fd).records]
    finally:
        os.close(fd)


def test_a_record_damaged_after_sealing_is_skipped_when_read(
        make_store: Callable, tmp_path: Path) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 20):
        store.append(make_batch(n))
    first = store.segments()[0]
    store.close()
    path = tmp_path / first.name
    offset, size, seq = scan_one(path)[1]
    data = bytearray(path.read_bytes())
    data[offset + size - 1] ^= 0x01
    path.write_bytes(bytes(data))
    store = make_store(max_file_size=1024)
    assert store.last_report.clean
    assert seq not in seqs(store.read("loki", 100))
    assert any(f"record {seq}" in p for p in store.drain_problems())
    assert store.stats()["dropped"]["corrupt"] == {"batches": 1, "lines": 5}
    assert seqs(store.read("file", 100)) == [s for s in range(1, 20) if s != seq]


def test_seqs_never_go_back_even_when_every_segment_was_deleted(make_store: Callable) -> None:
    store = make_store(max_file_size=512)
    for n in range(1, 10):
        store.append(make_batch(n))
    for sink in SINKS:
        for seq in seqs(store.read(sink, 100)):
            store.ack(sink, seq)
    store.append(make_batch(10))
    store.ack("loki", 10)
    store.ack("file", 10)
    store.collect()
    store.close()
    store = make_store(max_file_size=512)
    assert store.last_seq == 10
    assert store.append(make_batch(11)) == 11
    assert seqs(store.read("loki", 10)) == [11]


@pytest.mark.parametrize("damage", ["primary", "both"])
def test_a_corrupt_cursor_file_is_set_aside_and_nothing_is_lost(
        make_store: Callable, tmp_path: Path, damage: str) -> None:
    store = make_store()
    for n in range(1, 6):
        store.append(make_batch(n))
    store.ack("loki", 1)
    store.persist_cursors()
    store.ack("loki", 2)
    store.close()
    (tmp_path / "cursors.json").write_text("{not json")
    if damage == "both":
        (tmp_path / "cursors.json.bak").write_text(json.dumps({"version": 1}))
    store = make_store()
    report = store.last_report
    assert report.cursors == ("backup" if damage == "primary" else "empty")
    assert list(tmp_path.glob("cursors.json.corrupt-*"))
    expected = [2, 3, 4, 5] if damage == "primary" else [1, 2, 3, 4, 5]
    assert seqs(store.read("loki", 10)) == expected


def test_a_new_sink_gets_the_backlog_and_a_removed_one_no_longer_holds_data(
        make_store: Callable) -> None:
    store = make_store(max_file_size=512)
    for n in range(1, 10):
        store.append(make_batch(n))
    for seq in seqs(store.read("loki", 100)):
        store.ack("loki", seq)
    store.close()
    store = make_store(max_file_size=512, sinks=["loki", "archive"])
    assert seqs(store.read("archive", 100)) == list(range(1, 10))
    assert store.read("loki", 100) == []
    store.close()
    store = make_store(max_file_size=512, sinks=["loki"])
    store.collect()
    assert store.segments()[0].first_seq == store.segments()[-1].first_seq


def test_an_unusable_directory_is_refused_with_its_name(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BufferDirectoryError, match=f"{blocker}.*unusable"):
        SegmentStore(blocker, SINKS).open()


def test_a_directory_in_use_by_another_store_is_refused(make_store: Callable,
                                                         tmp_path: Path) -> None:
    make_store()
    with pytest.raises(BufferDirectoryError, match="in use"):
        SegmentStore(tmp_path, SINKS).open()


def test_stray_files_are_cleaned_or_reported(make_store: Callable, tmp_path: Path) -> None:
    (tmp_path / "cursors.json.tmp-1.abcd").write_text("x")
    (tmp_path / "0000000000000099.idx").write_bytes(b"orphan")
    (tmp_path / "notes.txt").write_text("x")
    report = make_store().last_report
    assert sorted(report.removed) == ["0000000000000099.idx", "cursors.json.tmp-1.abcd"]
    assert report.ignored == ["notes.txt"] and (tmp_path / "notes.txt").exists()


# --- release: acks, retention, capacity --------------------------------------------------------


def ack_all(store: SegmentStore, sink: str, upto: int) -> None:
    for seq in range(store.acked_seq(sink) + 1, upto + 1):
        store.ack(sink, seq)


def test_a_segment_is_deleted_only_once_every_sink_acked_it(make_store: Callable,
                                                             tmp_path: Path) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n))
    first = store.segments()[0]
    ack_all(store, "loki", 29)
    assert store.collect() == 0
    ack_all(store, "file", first.last_seq)
    assert store.collect() == first.bytes
    assert not (tmp_path / first.name).exists()
    assert not (tmp_path / first.name.replace(".seg", ".idx")).exists()
    assert store.first_seq == first.last_seq + 1
    assert store.stats()["dropped"]["retention"]["batches"] == 0


def test_cursors_are_written_before_any_segment_is_unlinked(
        make_store: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n))
    for sink in SINKS:
        ack_all(store, sink, 29)
    events: list[str] = []
    real_write, real_unlink = segments_module.write_cursors, os.unlink

    def write_cursors(*args: Any, **kwargs: Any) -> None:
        events.append("cursors")
        real_write(*args, **kwargs)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        events.append("unlink")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(segments_module, "write_cursors", write_cursors)
    monkeypatch.setattr(os, "unlink", unlink)
    store.collect()
    assert events[0] == "cursors" and "unlink" in events


def test_retention_drops_old_segments_and_counts_what_was_unacked(
        make_store: Callable, clock: FakeClock) -> None:
    store = make_store(max_file_size=1024, retention_period_s=60.0)
    for n in range(1, 15):
        store.append(make_batch(n))
    clock.now += 61
    for n in range(15, 18):
        store.append(make_batch(n))
    ack_all(store, "loki", 3)
    store.collect()
    remaining = store.first_seq
    assert 1 < remaining <= 15
    dropped = store.stats()["dropped"]["retention"]
    assert dropped == {"batches": remaining - 1, "lines": 5 * (remaining - 1)}
    assert seqs(store.read("file", 100))[0] == remaining


def test_an_idle_active_segment_older_than_retention_is_dropped(
        make_store: Callable, clock: FakeClock) -> None:
    store = make_store(retention_period_s=60.0)
    store.append(make_batch(1))
    clock.now += 61
    assert store.collect() > 0 and store.segments() == []
    assert store.append(make_batch(2)) == 2
    assert seqs(store.read("loki", 10)) == [2]


def test_when_full_block_refuses_the_append_and_writes_nothing(make_store: Callable) -> None:
    store = make_store(max_file_size=1024, max_total_size=4096)
    appended = 0
    with pytest.raises(BufferFull, match="does not fit"):
        for n in range(1, 100):
            store.append(make_batch(n))
            appended = n
    assert store.last_seq == appended and store.total_bytes <= 4096
    before = store.total_bytes
    with pytest.raises(BufferFull):
        store.append(make_batch(99))
    assert store.total_bytes == before


def test_a_full_buffer_releases_acked_segments_to_make_room(make_store: Callable) -> None:
    store = make_store(max_file_size=1024, max_total_size=4096)
    with pytest.raises(BufferFull):
        for n in range(1, 100):
            store.append(make_batch(n))
    last = store.last_seq
    for sink in SINKS:
        ack_all(store, sink, 5)
    store.append(make_batch(200))
    assert store.last_seq == last + 1
    assert store.stats()["dropped"]["full"]["batches"] == 0


def test_a_fully_acked_active_segment_is_released_when_the_limit_is_one_file(
        make_store: Callable) -> None:
    store = make_store(max_file_size=1024, max_files=1)
    while len(store.segments()) < 1 or store.segments()[-1].bytes < 800:
        store.append(make_batch(store.last_seq + 1))
    with pytest.raises(BufferFull):
        for _ in range(5):
            store.append(make_batch(store.last_seq + 1))
    for sink in SINKS:
        ack_all(store, sink, store.last_seq)
    seq = store.append(make_batch(500))
    assert [i.first_seq for i in store.segments()] == [seq]


def test_when_full_drop_oldest_drops_whole_segments_and_counts_them(
        make_store: Callable) -> None:
    store = make_store(max_file_size=1024, max_total_size=4096, when_full="drop_oldest")
    for n in range(1, 60):
        store.append(make_batch(n))
    assert store.total_bytes <= 4096
    first = store.first_seq
    dropped = store.stats()["dropped"]["full"]
    assert dropped == {"batches": first - 1, "lines": 5 * (first - 1)}
    assert seqs(store.read("loki", 100)) == list(range(first, 60))


def test_max_files_bounds_the_segment_count(make_store: Callable) -> None:
    store = make_store(max_file_size=512, max_files=3, when_full="drop_oldest")
    for n in range(1, 60):
        store.append(make_batch(n))
    assert len(store.segments()) <= 3


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        SegmentStore(tmp_path, ["a", "a"])
    with pytest.raises(ValueError, match="when_full"):
        SegmentStore(tmp_path, ["a"], when_full="panic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_file_size"):
        SegmentStore(tmp_path, ["a"], max_file_size=10, max_total_size=5)
    with pytest.raises(ValueError, match="max_files"):
        SegmentStore(tmp_path, ["a"], max_files=0)


# --- disk errors -------------------------------------------------------------------------------


def failing_write(monkeypatch: pytest.MonkeyPatch, *, truncate_fails: bool) -> list[int]:
    """Make the next record write put half its bytes down, then fail with ENOSPC."""
    real_write, real_truncate = os.write, os.ftruncate
    calls: list[int] = []

    def write(fd: int, data: Any) -> int:
        if not calls:
            calls.append(fd)
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def ftruncate(fd: int, length: int) -> None:
        if truncate_fails and len(calls) == 1:
            calls.append(-1)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_truncate(fd, length)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    return calls


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_enospc_propagates_and_the_partial_record_is_cut_back(
        make_store: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        truncate_fails: bool) -> None:
    store = make_store()
    store.append(make_batch(1))
    size = store.total_bytes
    failing_write(monkeypatch, truncate_fails=truncate_fails)
    with pytest.raises(OSError) as caught:
        store.append(make_batch(2))
    assert caught.value.errno == errno.ENOSPC
    assert store.last_seq == 1 and store.total_bytes == size
    path = tmp_path / "0000000000000001.seg"
    assert (path.stat().st_size > size) == truncate_fails
    assert store.append(make_batch(3)) == 2
    assert path.stat().st_size == store.total_bytes
    store.close()
    store = make_store()
    assert store.last_report.clean
    assert store.read("loki", 10) == [(1, make_batch(1)), (2, make_batch(3))]


def test_a_crash_after_enospc_leaves_a_torn_tail_that_open_repairs(
        make_store: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    store.append(make_batch(1))
    failing_write(monkeypatch, truncate_fails=True)
    with pytest.raises(OSError):
        store.append(make_batch(2))
    monkeypatch.undo()
    crash(store)
    store = make_store()
    assert len(store.last_report.torn_tails) == 1
    assert seqs(store.read("loki", 10)) == [1]


def test_enospc_while_sealing_leaves_the_segment_active_and_retries(
        make_store: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(max_file_size=700)
    store.append(make_batch(1, lines=10))
    store.append(make_batch(2, lines=10))
    import logcap.state.buffer.storage as storage_module

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    while store.segments()[-1].bytes < 500:
        store.append(make_batch(store.last_seq + 1, lines=10))
    last = store.last_seq
    monkeypatch.setattr(storage_module, "atomic_write_bytes", full)
    with pytest.raises(OSError):
        store.append(make_batch(99, lines=10))
    assert store.last_seq == last and not store.segments()[-1].sealed
    monkeypatch.undo()
    assert store.append(make_batch(99, lines=10)) == last + 1
    assert store.segments()[-2].sealed
    assert seqs(store.read("loki", 100)) == list(range(1, last + 2))


def test_a_failed_fsync_stops_appends_until_the_store_is_reopened(
        make_store: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    store.append(make_batch(1))
    store.sync()
    store.append(make_batch(2))

    def failing(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output"):
        store.sync()
    monkeypatch.undo()
    assert store.durable_seq == 1
    for attempt in (lambda: store.append(make_batch(3)), store.sync):
        with pytest.raises(OSError, match="reopen the store") as caught:
            attempt()
        assert caught.value.errno == errno.EIO
    assert seqs(store.read("loki", 10)) == [1, 2]
    store.close()
    store = make_store()
    assert store.append(make_batch(3)) == 3


def test_a_store_cannot_be_opened_twice(make_store: Callable) -> None:
    store = make_store()
    store.close()
    with pytest.raises(RuntimeError, match="opened once"):
        store.open()


def test_acked_segments_are_freed_even_when_the_cursor_file_cannot_be_written(
        make_store: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n))
    for sink in SINKS:
        ack_all(store, sink, 29)

    def failing_with(code: int) -> Callable[..., None]:
        def write_cursors(*_args: Any, **_kwargs: Any) -> None:
            raise OSError(code, os.strerror(code))
        return write_cursors

    monkeypatch.setattr(segments_module, "write_cursors", failing_with(errno.ENOSPC))
    assert store.collect() > 0
    monkeypatch.setattr(segments_module, "write_cursors", failing_with(errno.EACCES))
    for n in range(30, 60):
        store.append(make_batch(n))
    for sink in SINKS:
        ack_all(store, sink, 59)
    before = len(store.segments())
    with pytest.raises(PermissionError):
        store.collect()
    assert len(store.segments()) == before


def test_a_record_with_a_good_checksum_but_an_undecodable_payload_is_skipped(
        make_store: Callable, tmp_path: Path) -> None:
    from logcap.state.buffer.record import frame_record

    store = make_store()
    store.append(make_batch(1))
    store.close()
    with open(tmp_path / "0000000000000001.seg", "ab") as handle:
        handle.write(frame_record(seq=2, count=4, min_ts_ns=0, max_ts_ns=3,
                                  payload=b"not a zstd frame", encrypted=False))
    verdict = verify_directory(tmp_path).segments[0]
    assert verdict.records_ok == 2 and verdict.undecodable == 1
    store = make_store()
    assert store.last_seq == 2
    store.append(make_batch(3))
    assert seqs(store.read("loki", 10)) == [1, 3]
    assert store.stats()["dropped"]["corrupt"] == {"batches": 1, "lines": 4}
    assert "record 2" in store.drain_problems()[0]
    assert store.drain_problems() == []


def test_reading_many_segments_keeps_few_descriptors_open(make_store: Callable) -> None:
    store = make_store(max_file_size=300)
    for n in range(1, 41):
        store.append(make_batch(n))
    assert len(store.segments()) >= 20
    before = len(os.listdir("/proc/self/fd"))
    assert seqs(store.read("loki", 100)) == list(range(1, 41))
    assert len(os.listdir("/proc/self/fd")) - before <= 8


# --- selective recovery, stats, verify ---------------------------------------------------------


def test_select_returns_entries_by_time_range_and_source(make_store: Callable) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n, source="mysql" if n % 2 else "opensips"))
    picked = list(store.select(since_ns=10_000, until_ns=14_002, sources={"mysql"}))
    assert seqs(picked) == [11, 13]
    assert all(e.source == "mysql" for _, batch in picked for e in batch)
    assert seqs(list(store.select(since_ns=28_004))) == [28, 29]
    assert len(list(store.select())) == 29
    assert seqs(store.read("loki", 100)) == list(range(1, 30))


def test_stats_report_segments_bytes_lag_and_compression(make_store: Callable,
                                                         clock: FakeClock) -> None:
    store = make_store()
    for n in range(1, 4):
        store.append(make_batch(n, lines=50))
    clock.now += 5
    stats = store.stats()
    assert stats["segments"] == len(store.segments())
    assert stats["records"] == 3 and stats["lines"] == 150
    assert stats["bytes"] == store.total_bytes and stats["oldest_age_s"] == 5
    assert stats["appended"]["raw_bytes"] > stats["appended"]["stored_bytes"]
    assert stats["sinks"]["loki"] == {"acked_seq": 0, "read_seq": 1, "lag_batches": 3}


def test_verify_reports_torn_tails_corruption_and_ledgers_without_changing_anything(
        make_store: Callable, tmp_path: Path) -> None:
    store = make_store(max_file_size=1024)
    for n in range(1, 30):
        store.append(make_batch(n))
    infos = store.segments()
    store.close()
    assert verify_directory(tmp_path).ok
    sealed, active = tmp_path / infos[0].name, tmp_path / infos[-1].name
    data = bytearray(sealed.read_bytes())
    data[HEADER_BYTES + 2] ^= 0x08
    sealed.write_bytes(bytes(data))
    with open(active, "ab") as handle:
        handle.write(b"LCR1 torn")
    (tmp_path / infos[1].name.replace(".seg", ".idx")).unlink()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    report = verify_directory(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert not report.ok
    by_name = {v.name: v for v in report.segments}
    assert by_name[infos[0].name].records_ok == infos[0].records - 1
    assert by_name[infos[0].name].corrupt_regions[0][0] == 0
    assert by_name[infos[0].name].ledger == "stale"
    assert by_name[infos[1].name].ledger == "missing"
    assert by_name[infos[-1].name].torn_tail_bytes == 9
    assert by_name[infos[-1].name].ledger == "active"
    text = report.format()
    assert "PROBLEMS FOUND" in text and infos[-1].name in text


# --- the stateful model ------------------------------------------------------------------------

MACHINE_SINKS = ("a", "b")
MACHINE_FILE_BYTES = 1200
MACHINE_TOTAL_BYTES = 9000
MACHINE_RETENTION_S = 100.0


def machine_batch(seed: int, lines: int) -> list[Entries]:
    rng = random.Random(seed)
    text = ["".join(rng.choices("abcdefghijklmnop", k=rng.randrange(20, 60)))
            for _ in range(lines)]
    return [Entries("m", "s", (("k", "v"),), text, seed * 1_000,
                    ReadToken("m", FILE_KIND, None, seed, seed + 1, "f", 0), 1)]


def persisted_cursors(directory: Path) -> tuple[int, dict[str, int]]:
    try:
        document = json.loads((directory / "cursors.json").read_text())
    except FileNotFoundError:
        return 0, {}
    return document["last_seq"], document["sinks"]


class BufferMachine(RuleBasedStateMachine):
    """The store against a dict of batches, per-sink acked sets and read positions."""

    when_full = "block"
    max_files: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="logcap-buffer-model-"))
        self.clock = FakeClock()
        self.batches: dict[int, list[Entries]] = {}
        self.appended_at: dict[int, float] = {}
        self.acked: dict[str, set[int]] = {sink: set() for sink in MACHINE_SINKS}
        self.inflight: dict[str, set[int]] = {sink: set() for sink in MACHINE_SINKS}
        self.next_read = dict.fromkeys(MACHINE_SINKS, 1)
        self.last_seq = 0
        self.damaged: set[int] = set()
        self.store = self._open()

    def _open(self) -> SegmentStore:
        store = SegmentStore(self.directory, MACHINE_SINKS, max_file_size=MACHINE_FILE_BYTES,
                             max_total_size=MACHINE_TOTAL_BYTES,
                             retention_period_s=MACHINE_RETENTION_S, max_files=self.max_files,
                             when_full=self.when_full, clock=self.clock)  # type: ignore[arg-type]
        self.report = store.open()
        self.dropped = store.stats()["dropped"]
        return store

    def teardown(self) -> None:
        self.store._release_files()
        shutil.rmtree(self.directory, ignore_errors=True)

    # helpers

    def _floor(self, sink: str) -> int:
        seq = 0
        while seq < self.last_seq and (seq + 1 in self.acked[sink] or seq + 1 not in self.batches):
            seq += 1
        return seq

    def _acked_everywhere(self, seq: int) -> bool:
        return all(seq in self.acked[sink] for sink in MACHINE_SINKS)

    def _forget_deleted(self, reason: str | None) -> None:
        first = self.store.first_seq
        gone = [seq for seq in self.batches if seq < first]
        horizon = self.clock.now - MACHINE_RETENTION_S
        unacked = 0
        for seq in gone:
            if not self._acked_everywhere(seq):
                unacked += 1
                assert (reason == "retention" and self.appended_at[seq] < horizon) or (
                    reason == "full" and self.when_full == "drop_oldest"), (seq, reason)
            del self.batches[seq]
        now = self.store.stats()["dropped"]
        for kind in ("full", "retention"):
            delta = now[kind]["batches"] - self.dropped[kind]["batches"]
            expected = unacked if kind == reason else 0
            assert expected <= delta <= expected + len(self.damaged), (kind, delta, expected)
        self.dropped = now

    def _reopen(self, persisted: tuple[int, dict[str, int]]) -> None:
        persisted_last, persisted_acked = persisted
        self.store = self._open()
        for sink in MACHINE_SINKS:
            limit = persisted_acked.get(sink, 0)
            self.acked[sink] = {seq for seq in self.acked[sink] if seq <= limit}
            self.inflight[sink] = set()
        low = max([persisted_last, *persisted_acked.values(), *self.batches])
        assert low <= self.store.last_seq <= self.last_seq
        self.last_seq = self.store.last_seq
        for sink in MACHINE_SINKS:
            self.next_read[sink] = self._floor(sink) + 1

    def _crash(self) -> tuple[int, dict[str, int]]:
        persisted = persisted_cursors(self.directory)
        crash(self.store)
        return persisted

    # rules

    @rule(seed=st.integers(0, 2**16), lines=st.integers(1, 6))
    def append(self, seed: int, lines: int) -> None:
        batch = machine_batch(seed, lines)
        try:
            seq = self.store.append(batch)
        except BufferFull:
            assert self.when_full == "block"
            self._forget_deleted(None)
            return
        assert seq == self.last_seq + 1
        self.last_seq = seq
        self.batches[seq] = batch
        self.appended_at[seq] = self.clock.now
        self._forget_deleted("full")

    @rule(sink=st.sampled_from(MACHINE_SINKS), count=st.integers(1, 8))
    def read(self, sink: str, count: int) -> None:
        got = self.store.read(sink, count)
        expected = [seq for seq in sorted(self.batches)
                    if seq >= self.next_read[sink] and seq not in self.acked[sink]][:count]
        assert seqs(got) == expected
        for seq, batch in got:
            assert batch == self.batches[seq]
        self.inflight[sink].update(expected)
        self.next_read[sink] = expected[-1] + 1 if len(expected) == count else self.last_seq + 1

    @precondition(lambda self: any(self.inflight.values()))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        sink = data.draw(st.sampled_from([s for s in MACHINE_SINKS if self.inflight[s]]))
        seq = data.draw(st.sampled_from(sorted(self.inflight[sink])))
        self.store.ack(sink, seq)
        self.acked[sink].add(seq)
        self.inflight[sink].discard(seq)

    @rule(sink=st.sampled_from(MACHINE_SINKS))
    def ack_everything_read(self, sink: str) -> None:
        for seq in sorted(self.inflight[sink], reverse=True):
            self.store.ack(sink, seq)
            self.acked[sink].add(seq)
        self.inflight[sink].clear()

    @rule(sink=st.sampled_from(MACHINE_SINKS))
    def rewind(self, sink: str) -> None:
        self.store.rewind(sink)
        self.next_read[sink] = self._floor(sink) + 1

    @rule()
    def sync_and_persist(self) -> None:
        assert self.store.sync() == self.last_seq
        self.store.persist_cursors()

    @rule(seconds=st.floats(1, 150))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def collect(self) -> None:
        self.store.collect()
        self._forget_deleted("retention")
        infos = self.store.segments()
        if infos:
            floor = min(self.store.acked_seq(sink) for sink in MACHINE_SINKS)
            assert not (infos[0].sealed and infos[0].last_seq <= floor)
            assert not (infos[0].records and
                        infos[0].last_write_at < self.clock.now - MACHINE_RETENTION_S)

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.store.close()
            persisted = persisted_cursors(self.directory)
        else:
            persisted = self._crash()
        self._reopen(persisted)
        assert self.report.torn_tails == []
        assert self.damaged or self.report.corrupt_regions == []

    @rule(data=st.data())
    def reopen_after_truncating_the_last_segment(self, data: st.DataObject) -> None:
        persisted = self._crash()
        files = sorted(self.directory.glob("*.seg"))
        cut_inside = False
        if files:
            records = scan_one(files[-1])
            size = files[-1].stat().st_size
            cut = data.draw(st.integers(0, size), label="cut")
            boundaries = {0, size} | {offset + length for offset, length, _ in records}
            cut_inside = cut not in boundaries
            for offset, length, seq in records:
                if offset + length > cut:
                    self.batches.pop(seq, None)
            os.truncate(files[-1], cut)
        self._reopen(persisted)
        assert bool(self.report.torn_tails) == cut_inside or files[-1].name not in {
            name for name, _ in self.report.torn_tails}

    @precondition(lambda self: self.batches)
    @rule(data=st.data(), clean=st.booleans())
    def reopen_after_a_bit_flip(self, data: st.DataObject, clean: bool) -> None:
        seq = data.draw(st.sampled_from(sorted(self.batches)), label="seq")
        info = next(i for i in self.store.segments() if i.first_seq <= seq <= i.last_seq)
        if clean:
            self.store.close()
            persisted = persisted_cursors(self.directory)
        else:
            persisted = self._crash()
        path = self.directory / info.name
        offset, length = next((o, n) for o, n, s in scan_one(path) if s == seq)
        bit = data.draw(st.integers(0, 8 * length - 1), label="bit")
        content = bytearray(path.read_bytes())
        content[offset + bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(content))
        del self.batches[seq]
        self.damaged.add(seq)
        self._reopen(persisted)

    @invariant()
    def the_store_agrees_with_the_model_and_the_disk(self) -> None:
        assert self.store.last_seq == self.last_seq
        infos = self.store.segments()
        on_disk = sum(p.stat().st_size for p in self.directory.glob("*.seg"))
        assert self.store.total_bytes == sum(i.bytes for i in infos) == on_disk
        assert self.store.total_bytes <= MACHINE_TOTAL_BYTES
        assert all(i.sealed for i in infos[:-1])
        if self.max_files is not None:
            assert len(infos) <= self.max_files
        assert all(seq >= self.store.first_seq for seq in self.batches)


class DropOldestMachine(BufferMachine):
    when_full = "drop_oldest"
    max_files = 6


MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = MACHINE_SETTINGS
TestDropOldestMachine = DropOldestMachine.TestCase
TestDropOldestMachine.settings = MACHINE_SETTINGS


# --- sinks joining and leaving (a reload) ------------------------------------------------------


def test_a_sink_added_reads_only_what_is_appended_after_and_keeps_that_across_a_restart(
        make_store: Callable[..., SegmentStore], tmp_path: Path) -> None:
    store = make_store(sinks=["loki"])
    for n in range(1, 4):
        store.append(make_batch(n))
    store.add_sink("audit")
    assert store.read("audit", 10) == []
    store.append(make_batch(4))
    assert seqs(store.read("audit", 10)) == [4]
    assert seqs(store.read("loki", 10)) == [1, 2, 3, 4]
    store.ack("audit", 4)
    store.close()
    again = make_store(sinks=["loki", "audit"])
    assert seqs(again.read("audit", 10)) == []  # its cursor was persisted with it
    assert seqs(again.read("loki", 10)) == [1, 2, 3, 4]


def test_a_sink_removed_no_longer_holds_segments_back(
        make_store: Callable[..., SegmentStore]) -> None:
    store = make_store(sinks=["loki", "audit"], max_file_size=256)
    for n in range(1, 30):
        store.append(make_batch(n))
    for seq, _ in store.read("loki", 100):
        store.ack("loki", seq)
    store.collect()
    held = store.stats()["segments"]
    assert held > 1  # audit acknowledged nothing
    store.remove_sink("audit")
    store.collect()
    assert store.stats()["segments"] < held
    assert "audit" not in store.stats()["sinks"]
    with pytest.raises(ValueError, match="unknown sink"):
        store.read("audit", 1)
