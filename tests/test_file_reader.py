"""LineReader: lines, partial lines, offsets, truncation with bounded memory, binary input."""

from __future__ import annotations

import itertools
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.sources.files.reader import (
    CHUNK_BYTES,
    MIN_READ_BYTES,
    READ_MARGIN,
    LineReader,
    ReadResult,
)
from logcap.state.file_identity import hash_prefix

MiB = 1024 * 1024


class LogFile:
    """A file written by the test, read through a read-only descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")
        self.fd = os.open(path, os.O_RDONLY)

    def append(self, data: bytes) -> None:
        with open(self.path, "ab") as out:
            out.write(data)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LogFile]:
    f = LogFile(tmp_path / "app.log")
    yield f
    f.close()


def read_all(reader: LineReader, max_bytes: int = CHUNK_BYTES) -> list[str]:
    lines: list[str] = []
    while True:
        result = reader.read_batch(max_bytes)
        lines.extend(result.lines)
        if result.eof:
            return lines


def test_complete_lines_are_emitted_and_the_partial_last_line_waits_for_its_newline(
    log: LogFile,
) -> None:
    log.append(b"one\ntwo\nthr")
    reader = LineReader(log.fd)
    result = reader.read_batch()
    assert result.lines == ["one", "two"]
    assert (result.start_offset, result.end_offset, result.bytes_read) == (0, 8, 11)
    assert reader.offset == 8 and reader.pending_bytes == 3
    assert reader.read_batch().lines == []

    log.append(b"ee\nfour")
    result = reader.read_batch()
    assert result.lines == ["three"]
    assert (result.start_offset, result.end_offset, result.bytes_read) == (8, 14, 7)


def test_a_partial_line_is_read_from_the_file_only_once(log: LogFile) -> None:
    reader = LineReader(log.fd)
    total_read = 0
    for piece in (b"ab", b"cd", b"ef", b"\n"):
        log.append(piece)
        total_read += reader.read_batch().bytes_read
    assert total_read == 7 and reader.offset == 7


def test_crlf_loses_its_carriage_return_but_a_lone_carriage_return_is_kept(
    log: LogFile,
) -> None:
    log.append(b"a\r\nb\rc\n\r\n\r\r\nd\n")
    assert read_all(LineReader(log.fd)) == ["a", "b\rc", "", "\r", "d"]


def test_a_file_where_every_line_is_crlf_splits_the_same_as_lf(log: LogFile) -> None:
    log.append(b"x\r\n" * 1000 + b"tail")
    reader = LineReader(log.fd, track_offsets=True)
    result = reader.read_batch()
    assert result.lines == ["x"] * 1000
    assert result.line_offsets == list(range(0, 3000, 3))
    assert result.end_offset == 3000


def test_empty_lines_are_lines(log: LogFile) -> None:
    log.append(b"\n\na\n\n")
    assert read_all(LineReader(log.fd)) == ["", "", "a", ""]


def test_line_offsets_are_byte_offsets_even_with_multibyte_characters(log: LogFile) -> None:
    content = "é\n日本\n\nz\n".encode()
    log.append(content)
    result = LineReader(log.fd, track_offsets=True).read_batch()
    assert result.lines == ["é", "日本", "", "z"]
    assert result.line_offsets == [0, 3, 10, 11]
    assert result.end_offset == len(content) == 13


def test_invalid_utf8_is_escaped_and_nul_bytes_pass_through(log: LogFile) -> None:
    log.append(b"ok \xff\xfe end\nnul\x00byte\ncut \xe2\x82\n")
    assert read_all(LineReader(log.fd)) == [
        "ok \\xff\\xfe end",
        "nul\x00byte",
        "cut \\xe2\\x82",
    ]


def test_a_binary_file_never_raises_and_every_byte_is_accounted_for(log: LogFile) -> None:
    blob = os.urandom(3 * MiB)
    log.append(blob)
    reader = LineReader(log.fd, max_line_bytes=4096)
    while not reader.read_batch(MiB).eof:
        pass
    assert reader.offset == blob.rfind(b"\n") + 1
    assert reader.read_position == len(blob)


def test_resuming_from_a_stored_offset_starts_on_that_line(log: LogFile) -> None:
    log.append(b"first\nsecond\nthird\n")
    first = LineReader(log.fd)
    first.read_batch(max_lines=1)
    resumed = LineReader(log.fd, offset=first.offset)
    assert read_all(resumed) == ["second", "third"]


def test_max_lines_caps_a_batch_and_the_next_batch_continues_without_gap_or_repeat(
    log: LogFile,
) -> None:
    log.append(b"".join(b"line %d\n" % n for n in range(10)) + b"partial")
    reader = LineReader(log.fd, track_offsets=True)
    got: list[str] = []
    offsets: list[int] = []
    while True:
        result = reader.read_batch(max_lines=3)
        assert len(result.lines) <= 3
        got.extend(result.lines)
        offsets.extend(result.line_offsets or [])
        if not result.lines:
            break
    assert got == [f"line {n}" for n in range(10)]
    assert offsets == [7 * n for n in range(10)]
    assert reader.offset == 70 and reader.pending_bytes == len(b"partial")


def test_a_read_with_max_lines_asks_for_about_the_bytes_of_those_lines(log: LogFile) -> None:
    log.append(b"".join(b"line %06d\n" % n for n in range(200_000)))  # 12 bytes a line
    reader = LineReader(log.fd)
    first = reader.read_batch(CHUNK_BYTES, max_lines=5000)  # nothing known yet: all of it
    assert (len(first.lines), first.bytes_read) == (5000, CHUNK_BYTES)
    second = reader.read_batch(CHUNK_BYTES, max_lines=5000)
    assert (len(second.lines), second.bytes_read) == (5000, int(12 * 5000 * READ_MARGIN))
    assert second.lines[0] == "line 005000" and not second.eof
    small = reader.read_batch(CHUNK_BYTES, max_lines=10)
    assert (len(small.lines), small.bytes_read) == (10, MIN_READ_BYTES)
    assert reader.read_batch(CHUNK_BYTES).bytes_read == CHUNK_BYTES  # no max_lines: all


def test_max_lines_counts_a_line_completed_from_the_pending_bytes(log: LogFile) -> None:
    reader = LineReader(log.fd)
    log.append(b"hel")
    reader.read_batch()
    log.append(b"lo\nworld\n")
    assert reader.read_batch(max_lines=1).lines == ["hello"]
    assert reader.read_batch(max_lines=1).lines == ["world"]


def test_a_line_longer_than_the_limit_is_truncated_and_counted(log: LogFile) -> None:
    log.append(b"short\n" + b"x" * 100 + b"\nafter\n")
    result = LineReader(log.fd, max_line_bytes=10).read_batch()
    assert result.lines == ["short", "x" * 10, "after"]
    assert result.truncated_count == 1
    assert result.end_offset == 6 + 101 + 6


def test_a_line_of_exactly_the_limit_is_not_truncated(log: LogFile) -> None:
    log.append(b"y" * 10 + b"\n")
    reader = LineReader(log.fd, max_line_bytes=10)
    for size in (3, 3, 3, 3):
        result = reader.read_batch(size)
    assert result.lines == ["y" * 10] and result.truncated_count == 0


def test_truncation_does_not_cut_a_utf8_character_in_half(log: LogFile) -> None:
    log.append(("ab" + "€" * 5 + "\n").encode())  # € is 3 bytes
    result = LineReader(log.fd, max_line_bytes=6).read_batch()
    assert result.lines == ["ab€"]
    assert result.truncated_count == 1


def test_a_50_mb_line_is_truncated_without_holding_it_in_memory(log: LogFile) -> None:
    piece = b"z" * MiB
    with open(log.path, "ab") as out:
        out.write(b"before\n")
        for _ in range(50):
            out.write(piece)
        out.write(b"\nafter\n")
    max_line = 64 * 1024
    reader = LineReader(log.fd, max_line_bytes=max_line)
    lines: list[str] = []
    truncated = 0
    tracemalloc.start()
    try:
        while True:
            result = reader.read_batch(MiB)
            lines.extend(result.lines)
            truncated += result.truncated_count
            if result.eof:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == ["before", "z" * max_line, "after"]
    assert truncated == 1
    assert reader.offset == 7 + 50 * MiB + 1 + 6
    assert peak < 4 * MiB, f"peak traced memory {peak} bytes"


def test_reading_stops_at_the_partial_line_but_draining_emits_it(log: LogFile) -> None:
    log.append(b"a\nb\nno newline yet")
    reader = LineReader(log.fd)
    assert reader.read_batch().lines == ["a", "b"]
    drained = list(reader.drain_to_eof())
    assert [line for r in drained for line in r.lines] == ["no newline yet"]
    assert reader.offset == os.path.getsize(log.path)
    assert list(reader.drain_to_eof()) == []


def test_draining_a_large_file_yields_bounded_batches_in_order(log: LogFile) -> None:
    log.append(b"".join(b"%06d\n" % n for n in range(10_000)) + b"last")
    reader = LineReader(log.fd)
    batches = list(reader.drain_to_eof(max_bytes=4096))
    assert all(r.bytes_read <= 4096 for r in batches)
    lines = [line for r in batches for line in r.lines]
    assert lines == [f"{n:06d}" for n in range(10_000)] + ["last"]


def test_draining_a_huge_unfinished_line_emits_it_truncated(log: LogFile) -> None:
    log.append(b"q" * 10_000)
    reader = LineReader(log.fd, max_line_bytes=100)
    results = list(reader.drain_to_eof(max_bytes=1000))
    assert [line for r in results for line in r.lines] == ["q" * 100]
    assert sum(r.truncated_count for r in results) == 1
    assert reader.offset == 10_000


def test_reset_after_truncation_reads_the_new_content_from_zero(log: LogFile) -> None:
    log.append(b"old line\nold partial")
    reader = LineReader(log.fd)
    reader.read_batch()
    os.truncate(log.path, 0)
    log.append(b"new\n")
    reader.reset(0)
    assert read_all(reader) == ["new"]


def test_the_prefix_hash_matches_the_bytes_before_the_end_offset(log: LogFile) -> None:
    reader = LineReader(log.fd)
    log.append(b"short\n")
    small = reader.read_batch()
    assert reader.prefix_hash() == hash_prefix(str(log.path), small.end_offset)
    log.append(b"".join(b"line %05d\n" % n for n in range(2000)) + b"pending")
    big = reader.read_batch()
    assert big.end_offset == reader.offset
    assert reader.prefix_hash() == hash_prefix(str(log.path), big.end_offset)


def test_nonsensical_arguments_are_refused(log: LogFile) -> None:
    with pytest.raises(ValueError):
        LineReader(log.fd, max_line_bytes=0)
    with pytest.raises(ValueError):
        LineReader(log.fd, offset=-1)
    reader = LineReader(log.fd)
    with pytest.raises(ValueError):
        reader.read_batch(0)
    with pytest.raises(ValueError):
        reader.read_batch(max_lines=0)


# --- properties -------------------------------------------------------------------------------


def split_points(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed(
    path: Path,
    pieces: list[bytes],
    chunk: int,
    max_line_bytes: int = 1 << 30,
    max_lines: int | None = None,
) -> tuple[LineReader, list[str], list[int], int]:
    """Append ``pieces`` one by one, reading after each; return lines, offsets, truncations."""
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    reader = LineReader(fd, max_line_bytes=max_line_bytes, track_offsets=True)
    lines: list[str] = []
    offsets: list[int] = []
    truncated = 0
    try:
        for piece in pieces:
            with open(path, "ab") as out:
                out.write(piece)
            while True:
                result: ReadResult = reader.read_batch(chunk, max_lines)
                lines.extend(result.lines)
                offsets.extend(result.line_offsets or [])
                truncated += result.truncated_count
                assert result.end_offset >= result.start_offset
                if result.eof:
                    break
    finally:
        os.close(fd)
    return reader, lines, offsets, truncated


def reference_lines(data: bytes) -> tuple[list[bytes], int]:
    """The raw complete lines of ``data`` (without newline) and the complete-line prefix length."""
    complete = data[: data.rfind(b"\n") + 1]
    raw = complete.split(b"\n")[:-1]
    return raw, len(complete)


def strip_cr(raw: bytes) -> bytes:
    return raw[:-1] if raw.endswith(b"\r") else raw


def assert_complete_lines_read(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                               cuts: list[int], chunk: int, max_lines: int | None) -> None:
    """``data`` appended in the pieces ``cuts`` makes and read ``chunk`` bytes at a time (at
    most ``max_lines`` a read) gives exactly its complete lines, their offsets, none cut."""
    path = tmp_path_factory.mktemp("prop") / "f.log"
    reader, lines, offsets, truncated = feed(
        path, split_points(data, cuts), chunk, max_lines=max_lines
    )
    raw, complete_len = reference_lines(data)
    assert lines == [strip_cr(r).decode("utf-8", "backslashreplace") for r in raw]
    assert reader.offset == complete_len
    assert offsets == [sum(len(r) + 1 for r in raw[:i]) for i in range(len(raw))]
    assert truncated == 0


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600).map(lambda b: b.replace(b"7", b"\n")),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
    chunk=st.integers(min_value=1, max_value=64),
    max_lines=st.none() | st.integers(min_value=1, max_value=5),
)
def test_any_bytes_appended_in_any_pieces_give_exactly_the_complete_lines(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    cuts: list[int],
    chunk: int,
    max_lines: int | None,
) -> None:
    assert_complete_lines_read(tmp_path_factory, data, cuts, chunk, max_lines)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n", b"\r\n", b"\r", "é".encode(),
                                   b"\xff"]), max_size=300).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
    chunk=st.integers(min_value=1, max_value=200),
    max_lines=st.integers(min_value=1, max_value=5),
)
def test_a_batch_cut_by_max_lines_ends_on_its_last_newline_in_ascii_and_other_text(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    cuts: list[int],
    chunk: int,
    max_lines: int,
) -> None:
    # Mostly ASCII pieces (cut by the decoded lines' lengths), with CRLF, invalid bytes and
    # multi-byte characters in some chunks (cut on the bytes).
    assert_complete_lines_read(tmp_path_factory, data, cuts, chunk, max_lines)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)),
        max_size=300,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=1200), max_size=8),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_emitted_lines_and_newlines_concatenate_to_the_complete_line_prefix(
    tmp_path_factory: pytest.TempPathFactory, text: str, cuts: list[int], chunk: int
) -> None:
    data = text.encode()
    path = tmp_path_factory.mktemp("prop") / "f.log"
    reader, lines, _, _ = feed(path, split_points(data, cuts), chunk)
    emitted = "".join(line + "\n" for line in lines).encode()
    assert emitted == data[: data.rfind(b"\n") + 1]
    assert reader.offset == len(emitted)


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=400).map(lambda b: b.replace(b"7", b"\n")),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    chunk=st.integers(min_value=1, max_value=40),
    max_line=st.integers(min_value=1, max_value=30),
)
def test_long_lines_are_cut_to_the_limit_and_offsets_stay_exact(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    cuts: list[int],
    chunk: int,
    max_line: int,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "f.log"
    reader, lines, offsets, truncated = feed(path, split_points(data, cuts), chunk, max_line)
    raw, complete_len = reference_lines(data)
    assert len(lines) == len(raw)
    assert reader.offset == complete_len
    assert offsets == [sum(len(r) + 1 for r in raw[:i]) for i in range(len(raw))]
    assert truncated == sum(1 for r in raw if len(r) > max_line)
    for line, r in zip(lines, raw, strict=True):
        if len(r) > max_line:
            # cut at the limit, backed off by at most 3 bytes to a character boundary
            allowed = {
                r[:k].decode("utf-8", "backslashreplace")
                for k in range(max_line - 3, max_line + 1)
                if k >= 0
            }
            assert line in allowed
        else:
            assert line == strip_cr(r).decode("utf-8", "backslashreplace")
