"""SourceTailer without threads, ``decompress: true``: compressed files read decompressed, a
rotated ``.gz`` continuing its tracked file, files still being written, corrupt files, and
files the watcher opened empty that turn out to be compressed."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from logcap.sources.files.tailer import SourceTailer
from logcap.sources.files.watcher import Arrival
from tests.test_tailer_identity import Clock, clock, make, pump, tailers, write

__all__ = ["clock", "tailers"]  # fixtures

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
    "zst": zstandard.ZstdCompressor().compress,
}


def numbered(prefix: str, n: int) -> list[str]:
    return [f"{prefix} {i:05d}" for i in range(n)]


def text(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def collect(tailer: SourceTailer, clock: Clock, rounds: int, step: float = 0.6) -> list[str]:
    """Look for rotations, poll and acknowledge, ``rounds`` times (``pump`` without its
    last unacknowledged poll)."""
    lines: list[str] = []
    for _ in range(rounds):
        tailer.check_rotation()
        for entries in tailer.poll().entries:
            lines.extend(entries.lines)
            tailer.ack([entries.token])
        clock.now += step
    return lines


def rotate_and_compress(log: Path, copytruncate: bool = False) -> None:
    """logrotate ``compress`` without ``delaycompress``, by hand: ``app.log`` renamed (or
    copied and truncated) to ``app.log.1``, gzipped to ``app.log.1.gz``, ``app.log.1``
    removed; then ``c 0`` written to the new ``app.log``."""
    rotated = log.with_name(log.name + ".1")
    if copytruncate:
        rotated.write_bytes(log.read_bytes())
        os.truncate(log, 0)
    else:
        log.rename(rotated)
    log.with_name(log.name + ".1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
    rotated.unlink()
    write(log, "c 0")


def follow(tmp: Path, clock: Clock, made: list[SourceTailer], include: str = "*",
           **kw: object) -> SourceTailer:
    tailer = make(tmp, clock, include, decompress=True, **kw)
    made.append(tailer)
    return tailer


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_a_compressed_file_is_read_decompressed_once_and_committed_in_stream_offsets(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer], suffix: str) -> None:
    lines = numbered("z", 3000)
    (tmp_path / f"old.{suffix}").write_bytes(COMPRESS[suffix](text(lines)))
    tailer = follow(tmp_path, clock, tailers)
    assert tailer.rescan() == []
    got: list[str] = []
    commits = []
    for _ in range(8):
        result = tailer.poll()
        for entries in result.entries:
            got.extend(entries.lines)
            commits.extend(tailer.ack([entries.token]))
        clock.now += 0.6
    assert got == lines
    assert commits[-1].offset == len(text(lines))  # an offset in the decompressed stream
    assert commits[-1].prefix_hash == ""
    assert tailer.open_count() == 0  # read to its end and closed
    tailer.rescan()  # known by identity: not read again
    assert pump(tailer, clock) == []


def test_a_rotated_gz_that_is_the_tail_of_a_tracked_file_continues_from_its_offset(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log = tmp_path / "app.log"
    write(log, *numbered("a", 500))
    tailer = follow(tmp_path, clock, tailers, include="app.log*")
    tailer.rescan()
    assert pump(tailer, clock) == numbered("a", 500)
    write(log, *numbered("b", 100))  # written, not read yet, before the rotation
    rotate_and_compress(log)
    tailer.rescan()
    got = pump(tailer, clock, rounds=10)
    tailer.rescan()
    got += pump(tailer, clock, rounds=10)
    assert sorted(got) == sorted([*numbered("b", 100), "c 0"])  # once each, none again


def test_a_gz_copy_of_an_unknown_file_is_read_from_its_start(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    write(tmp_path / "app.log", *numbered("a", 10))
    tailer = follow(tmp_path, clock, tailers, include="app.log*")
    tailer.rescan()
    assert pump(tailer, clock) == numbered("a", 10)
    (tmp_path / "app.log.7.gz").write_bytes(gzip.compress(text(numbered("old", 20))))
    tailer.rescan()
    assert pump(tailer, clock) == numbered("old", 20)


def test_a_compressed_file_still_being_written_is_read_as_it_grows_and_waits_for_its_end(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    lines = numbered("w", 20000)
    data = gzip.compress(text(lines))
    path = tmp_path / "w.gz"
    path.write_bytes(data[: len(data) // 2])
    tailer = follow(tmp_path, clock, tailers)
    tailer.rescan()
    first = collect(tailer, clock, rounds=18, step=0.05)  # within rotate_wait (1 s)
    assert first == lines[: len(first)] and len(first) > 1000
    assert tailer.take_problems() == []
    with open(path, "ab") as out:
        out.write(data[len(data) // 2:])
    assert first + collect(tailer, clock, rounds=30) == lines
    assert tailer.take_problems() == []


def test_a_truncated_compressed_file_is_reported_once_and_keeps_its_complete_lines(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    lines = numbered("t", 20000)
    data = gzip.compress(text(lines))
    path = tmp_path / "t.gz"
    path.write_bytes(data[: len(data) // 2])
    tailer = follow(tmp_path, clock, tailers)
    tailer.rescan()
    got = collect(tailer, clock, rounds=20)
    assert got == lines[: len(got)] and len(got) > 1000  # whole lines only
    problems = tailer.take_problems()
    assert len(problems) == 1 and "truncated compressed file (gzip" in problems[0], problems
    assert collect(tailer, clock, rounds=3) == []
    assert tailer.take_problems() == []
    assert tailer.open_count() == 0
    with open(path, "ab") as out:  # it was a slow compressor after all: read on
        out.write(data[len(data) // 2:])
    tailer.rescan()
    assert got + collect(tailer, clock, rounds=30) == lines


def test_a_corrupt_compressed_file_is_reported_once_and_sends_only_what_decompressed(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    lines = numbered("c", 50000)
    data = bytearray(gzip.compress(text(lines)))
    data[len(data) // 2: len(data) // 2 + 200] = bytes(200)
    (tmp_path / "c.gz").write_bytes(bytes(data))
    tailer = follow(tmp_path, clock, tailers)
    tailer.rescan()
    got = pump(tailer, clock, rounds=10)
    assert got == lines[: len(got)]
    problems = tailer.take_problems()
    assert len(problems) == 1 and "corrupt compressed file (corrupt gzip data" in problems[0]
    tailer.rescan()
    assert pump(tailer, clock) == [] and tailer.take_problems() == []


@pytest.mark.parametrize("decompress", [True, False])
def test_a_file_the_watcher_opened_empty_that_becomes_compressed_is_never_read_as_text(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer], decompress: bool) -> None:
    tailer = make(tmp_path, clock, "*", decompress=decompress)
    tailers.append(tailer)
    tailer.rescan()
    path = tmp_path / "new.gz"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    tailer.adopt([Arrival(str(path), str(path), fd)])
    path.write_bytes(b"\x1f")  # the compressor has begun
    assert pump(tailer, clock, rounds=2) == []
    path.write_bytes(gzip.compress(text(numbered("n", 5))))
    got = collect(tailer, clock, rounds=6)
    if decompress:
        assert got == numbered("n", 5)
    else:
        assert got == []
        assert any("compressed (gzip)" in p for p in tailer.take_problems())


@pytest.mark.parametrize("sweep_first", [False, True])
def test_a_gz_of_a_file_closed_while_idle_sends_the_tail_it_gained_before_its_rotation(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer], sweep_first: bool) -> None:
    log = tmp_path / "app.log"
    write(log, *numbered("a", 300))
    tailer = follow(tmp_path, clock, tailers, include="app.log*", close_inactive_s=1.0)
    tailer.rescan()
    assert collect(tailer, clock, rounds=3) == numbered("a", 300)
    tailer.close_idle()
    assert str(log) in tailer.dormant
    write(log, *numbered("b", 50))  # gained while closed, then rotated and compressed
    rotate_and_compress(log)
    if sweep_first:
        tailer.sweep_dormant()  # sees app.log is another file before any scan finds the .gz
    tailer.rescan()
    got = collect(tailer, clock, rounds=8)
    tailer.sweep_dormant()  # the next tick: the new app.log
    tailer.rescan()
    got += collect(tailer, clock, rounds=8)
    assert sorted(got) == sorted([*numbered("b", 50), "c 0"])


def test_a_gz_of_a_copytruncate_copy_sends_only_the_tail_the_tailer_had_not_read(
        tmp_path: Path, clock: Clock, tailers: list[SourceTailer]) -> None:
    log = tmp_path / "app.log"
    write(log, *numbered("a", 400))
    tailer = follow(tmp_path, clock, tailers, include="app.log*")
    tailer.rescan()
    assert collect(tailer, clock, rounds=3) == numbered("a", 400)
    write(log, *numbered("b", 60))
    rotate_and_compress(log, copytruncate=True)
    got = collect(tailer, clock, rounds=4)  # the cut is seen: the copy is gone already
    tailer.rescan()
    got += collect(tailer, clock, rounds=8)
    assert sorted(got) == sorted([*numbered("b", 60), "c 0"])
