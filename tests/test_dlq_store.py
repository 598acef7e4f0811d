"""The DLQ store: the open record format, damage tolerance, stats, retention, claim ledger."""

from __future__ import annotations

import json
import os
import random
import struct
import threading
from pathlib import Path

import zstandard

from logcap.messages import Entries
from logcap.origin import FILE_KIND, ReadToken
from logcap.state.buffer.record import HEADER_BYTES, frame_record
from logcap.state.dlq import (
    LEDGER_FILE,
    SEGMENT_SUFFIX,
    DeadLetter,
    DeadLetterStore,
    DeadStream,
    DlqFilter,
)

MiB = 1024 * 1024
DAY_S = 86_400.0


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def part(source: str, lines: list[str], ts_ns: int, labels: tuple[tuple[str, str], ...] = (
        ("job", "mysql"),), stream: str = "/var/log/mysql/error.log") -> Entries:
    return Entries(source, stream, labels, lines, ts_ns,
                   ReadToken(source, FILE_KIND, None, 0, 1, "k", 0))


def letter(sink: str = "loki", reason: str = "bad_request", lines: int = 3, when: float = 1e9,
           ts_ns: int = 1_700_000_000_000_000_000) -> DeadLetter:
    parts = (part("mysql", [f"line {i}" for i in range(lines)], ts_ns),)
    return DeadLetter.from_parts(sink, reason, 400, 2, when - 5, when, "entry out of order",
                                 parts)


def store_at(path: Path, clock: FakeClock | None = None, **kw: float) -> DeadLetterStore:
    store = DeadLetterStore(path, int(kw.pop("max_total_size", 64 * MiB)),
                            kw.pop("retention_period_s", 7 * DAY_S), clock or FakeClock(),
                            **{k: int(v) for k, v in kw.items()})
    assert store.open() == []
    return store


def segment_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.name.endswith(SEGMENT_SUFFIX))


def test_an_entry_round_trips_with_its_labels_streams_and_original_timestamps(
        tmp_path: Path) -> None:
    parts = (part("mysql", ["a", "b"], 1000), part("mysql", ["c"], 1002),
             part("opensips", ["sip \u00e9"], 5000, (("job", "sip"), ("host", "h1")), "/x"))
    entry = DeadLetter.from_parts("loki", "bad_request", 400, 3, 10.0, 12.5, "too old", parts)
    store_at(tmp_path).add(entry)

    again = store_at(tmp_path)
    [read] = list(again.entries())
    assert read == entry
    rebuilt = read.to_parts()
    assert [(p.source, p.stream, p.labels, p.lines, p.ts_ns) for p in rebuilt] == [
        ("mysql", "/var/log/mysql/error.log", (("job", "mysql"),), ["a", "b", "c"], 1000),
        ("opensips", "/x", (("job", "sip"), ("host", "h1")), ["sip \u00e9"], 5000)]


def test_rebuilt_parts_keep_every_lines_timestamp_across_gaps() -> None:
    stream = DeadStream((("job", "x"),), "s", "f",
                        ((10, "a"), (11, "b"), (12, "c"), (20, "d"), (21, "e"), (7, "f")))
    entry = DeadLetter("0" * 32, "loki", "r", None, 1, 0.0, 0.0, "", (stream,))
    [part] = entry.to_parts()
    assert part.lines == ["a", "b", "c", "d", "e", "f"]
    assert [part.timestamp(i) for i in range(6)] == [10, 11, 12, 20, 21, 7]
    consecutive = DeadStream((), "s", "f", ((5, "a"), (6, "b")))
    [plain] = DeadLetter("1" * 32, "loki", "r", None, 1, 0.0, 0.0, "", (consecutive,)).to_parts()
    assert plain.timestamps is None and plain.ts_ns == 5


def test_lines_with_escaped_non_utf8_bytes_survive_the_round_trip(tmp_path: Path) -> None:
    entry = DeadLetter.from_parts("file", "r", None, 1, 1.0, 1.0, "",
                                  (part("bin", ["\udcff\udcfe raw", "ok"], 1),))
    store_at(tmp_path).add(entry)
    assert store_at(tmp_path).get(entry.id) == entry


def test_the_files_can_be_read_with_nothing_but_struct_zstd_and_json(tmp_path: Path) -> None:
    entry = letter(lines=2)
    store_at(tmp_path).add(entry)
    data = segment_files(tmp_path)[0].read_bytes()
    magic, flags, length, count, seq, low, high = struct.unpack_from("<4sBIIQqq", data, 0)
    assert (magic, flags, count, seq) == (b"LCR1", 0, 2, 1)
    assert (low, high) == (entry.streams[0].lines[0][0], entry.streams[0].lines[1][0])
    payload = data[HEADER_BYTES:HEADER_BYTES + length]
    doc = json.loads(zstandard.ZstdDecompressor().decompress(payload).decode("utf-8"))
    assert doc["id"] == entry.id and doc["status_code"] == 400 and doc["version"] == 1
    assert doc["streams"][0]["lines"][1] == [str(low + 1), "line 1"]
    assert doc["streams"][0]["labels"] == [["job", "mysql"]]


def test_a_file_cut_in_half_keeps_its_valid_prefix(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first, second = letter(lines=5), letter(lines=5)
    store.add(first)
    store.add(second)
    store.close()
    [path] = segment_files(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 40)
    cut = path.read_bytes()

    again = DeadLetterStore(tmp_path, 64 * MiB, 7 * DAY_S)
    problems = again.open()
    assert [e.id for e in again.entries()] == [first.id]
    assert len(problems) == 1 and path.name in problems[0] and "torn tail" in problems[0]
    assert path.read_bytes() == cut  # reading never modifies
    third = letter()
    again.add(third)  # goes to a new file: the damaged one is left as found
    assert path.read_bytes() == cut and len(segment_files(tmp_path)) == 2
    assert [e.id for e in store_at_quietly(tmp_path).entries()] == [first.id, third.id]


def store_at_quietly(path: Path) -> DeadLetterStore:
    store = DeadLetterStore(path, 64 * MiB, 7 * DAY_S)
    store.open()
    return store


def test_a_corrupt_record_is_skipped_and_reported_with_its_file_name(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    entries = [letter(lines=20) for _ in range(3)]
    for entry in entries:
        store.add(entry)
    store.close()
    [path] = segment_files(tmp_path)
    data = bytearray(path.read_bytes())
    second_record = len(data) // 2
    data[second_record:second_record + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))

    again = DeadLetterStore(tmp_path, 64 * MiB, 7 * DAY_S)
    problems = again.open()
    assert [e.id for e in again.entries()] == [entries[0].id, entries[2].id]
    assert problems and all(path.name in p for p in problems)
    assert any("corrupt bytes" in p for p in problems)


def test_a_record_that_is_not_a_dlq_entry_is_skipped_and_reported(tmp_path: Path) -> None:
    good = letter()
    store_at(tmp_path).add(good)
    bogus = frame_record(seq=7, count=0, min_ts_ns=0, max_ts_ns=0,
                         payload=zstandard.ZstdCompressor().compress(b'{"version": 1}'),
                         encrypted=False)
    stray = tmp_path / f"{7:020d}{SEGMENT_SUFFIX}"
    stray.write_bytes(bogus)
    again = DeadLetterStore(tmp_path, 64 * MiB, 7 * DAY_S)
    problems = again.open()
    assert [e.id for e in again.entries()] == [good.id]
    assert len(problems) == 1 and stray.name in problems[0] and "skipped" in problems[0]


def test_the_same_entry_added_twice_is_stored_once(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    entry = letter()
    assert store.add(entry) == entry.id
    assert store.add(entry) == entry.id
    assert store.stats()["entries"] == 1


def test_stats_count_entries_lines_and_bytes_by_sink_and_by_reason(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.add(letter("loki", "bad_request", lines=3, when=100.0))
    store.add(letter("loki", "too_large", lines=4, when=300.0))
    store.add(letter("file", "bad_request", lines=5, when=200.0))
    stats = store.stats()
    assert (stats["entries"], stats["lines"], stats["files"]) == (3, 12, 1)
    assert stats["by_sink"]["loki"]["entries"] == 2 and stats["by_sink"]["loki"]["lines"] == 7
    assert stats["by_reason"]["bad_request"]["lines"] == 8
    assert stats["by_sink"]["file"]["bytes"] > 0
    assert stats["bytes"] == stats["total_bytes"] == segment_files(tmp_path)[0].stat().st_size
    assert (stats["oldest_entry_time"], stats["newest_entry_time"]) == (100.0, 300.0)


def test_filters_select_by_sink_reason_ids_and_dead_letter_time(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a = letter("loki", "bad_request", when=100.0)
    b = letter("loki", "too_large", when=200.0)
    c = letter("file", "bad_request", when=300.0)
    for entry in (a, b, c):
        store.add(entry)
    assert store.ids(DlqFilter(sink="loki")) == [a.id, b.id]
    assert store.ids(DlqFilter(reason="bad_request")) == [a.id, c.id]
    assert store.ids(DlqFilter(ids=frozenset({c.id, "f" * 32}))) == [c.id]
    assert store.ids(DlqFilter(since=200.0, until=300.0)) == [b.id, c.id]
    assert [e.id for e in store.entries(DlqFilter(sink="loki", until=150.0))] == [a.id]


def test_retention_by_size_drops_the_oldest_whole_files_and_counts_them(tmp_path: Path) -> None:
    clock = FakeClock()
    store = store_at(tmp_path, clock, max_total_size=64 * 1024, max_file_size=1)
    rng = random.Random(7)
    ids = []
    for n in range(4):  # incompressible lines: each record is large; one file each
        noisy = DeadStream((), "s", "f", tuple((i, rng.randbytes(60).hex()) for i in range(400)))
        ids.append(store.add(DeadLetter(f"{n:032x}", "loki", "r", None, 1, 0.0, clock.now, "",
                                        (noisy,))))
    files = segment_files(tmp_path)
    assert len(files) == 4
    store.max_total_size = files[2].stat().st_size + files[3].stat().st_size

    dropped = store.collect(clock.now)
    assert set(dropped) == {"size"}
    assert (dropped["size"].files, dropped["size"].entries, dropped["size"].lines) == (2, 2, 800)
    assert store.ids() == ids[2:]
    assert len(segment_files(tmp_path)) == 2 and store.total_bytes <= store.max_total_size
    assert store.stats()["dropped"]["lines"] == 800


def test_retention_by_age_drops_files_whose_newest_entry_is_too_old(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    store = store_at(tmp_path, clock, retention_period_s=DAY_S)
    old = letter(when=clock.now)
    store.add(old)
    clock.now += DAY_S / 4  # past 1/8 of the retention period: the next add rotates
    young = letter(when=clock.now)
    store.add(young)
    assert len(segment_files(tmp_path)) == 2
    assert store.collect(clock.now) == {}
    clock.now += DAY_S * 0.9
    dropped = store.collect(clock.now)
    assert set(dropped) == {"age"} and dropped["age"].entries == 1
    assert store.ids() == [young.id]


def test_claims_are_durable_across_reopen_and_never_granted_twice(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b, c = letter(), letter(), letter()
    for entry in (a, b, c):
        store.add(entry)
    assert store.claim([a.id, b.id, "f" * 32]) == [a.id, b.id]  # unknown ids are not claimed
    assert store.claim([a.id, b.id]) == []
    assert (tmp_path / LEDGER_FILE).exists()

    again = store_at(tmp_path)
    assert again.claim([a.id, b.id, c.id]) == [c.id]
    assert again.claimed([a.id, b.id, c.id]) == {a.id, b.id, c.id}


def test_concurrent_claims_from_two_threads_never_return_the_same_id_twice(
        tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ids = [store.add(letter(lines=1)) for _ in range(60)]
    other = store_at_quietly(tmp_path)  # a second store on the same directory, as a 2nd process
    start = threading.Barrier(2)
    won: dict[str, list[str]] = {"a": [], "b": []}

    def claimer(name: str, target: DeadLetterStore, seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        start.wait()
        for i in range(0, len(order), 5):
            won[name] += target.claim(order[i:i + 5])

    threads = [threading.Thread(target=claimer, args=("a", store, 1)),
               threading.Thread(target=claimer, args=("b", other, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(won["a"]) & set(won["b"])
    assert sorted(won["a"] + won["b"]) == sorted(ids)


def test_outcomes_are_flushed_and_unfinished_claims_are_reported_until_then(
        tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b = store.add(letter()), store.add(letter())
    store.claim([a, b])
    store.finish([a], "delivered")
    assert store.unfinished() == [b]
    store.close()
    again = store_at(tmp_path)
    assert again.unfinished() == [b]
    again.release([b])
    assert store_at(tmp_path).claim([a, b]) == [b]


def test_a_damaged_ledger_is_recovered_from_its_backup(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b = store.add(letter()), store.add(letter())
    store.claim([a])
    store.claim([b])  # the backup now holds the claim of a
    (tmp_path / LEDGER_FILE).write_text("{not json")
    again = DeadLetterStore(tmp_path, 64 * MiB, 7 * DAY_S)
    problems = again.open()
    assert any("recovered from its backup" in p for p in problems)
    assert again.claimed([a, b]) == {a}


def test_an_empty_directory_is_an_empty_dlq(tmp_path: Path) -> None:
    store = store_at(tmp_path / "new")
    assert store.stats()["entries"] == 0 and store.stats()["oldest_entry_time"] is None
    assert list(store.entries()) == [] and os.path.isdir(tmp_path / "new")
