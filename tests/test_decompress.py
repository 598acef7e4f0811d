"""DecompressedStream and a LineReader reading through it: each format, chunk boundaries,
several members, restarts, files still being written and corrupt files."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from logcap.sources.files.decompress import (
    COMPRESSED_READ_BYTES,
    CorruptCompressedFile,
    DecompressedStream,
)
from logcap.sources.files.reader import LineReader

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}

TEXT = b"".join(b"line %06d %s\n" % (i, b"x" * (i % 97)) for i in range(20_000))


@pytest.fixture
def open_file(tmp_path: Path) -> Iterator[Callable[[bytes], int]]:
    fds: list[int] = []

    def make(data: bytes) -> int:
        path = tmp_path / f"f{len(fds)}"
        path.write_bytes(data)
        fds.append(os.open(path, os.O_RDONLY))
        return fds[-1]

    yield make
    for fd in fds:
        os.close(fd)


def read_all(stream: DecompressedStream, chunk: int) -> bytes:
    parts, offset = [], 0
    while True:
        data = stream.pread(chunk, offset)
        if not data:
            return b"".join(parts)
        parts.append(data)
        offset += len(data)


@pytest.mark.parametrize("fmt", sorted(COMPRESS))
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_each_format_reads_back_byte_exact_in_any_chunk_size(
        open_file: Callable[[bytes], int], fmt: str, chunk: int) -> None:
    text = TEXT if chunk > 1 else TEXT[:20_000]
    stream = DecompressedStream(open_file(COMPRESS[fmt](text)), fmt)
    assert read_all(stream, chunk) == text
    assert stream.complete
    assert stream.restarts == 0


@pytest.mark.parametrize("fmt", sorted(COMPRESS))
def test_concatenated_members_read_as_one_stream(open_file: Callable[[bytes], int],
                                                 fmt: str) -> None:
    data = COMPRESS[fmt](b"first\n") + COMPRESS[fmt](b"second\n") + COMPRESS[fmt](b"third\n")
    stream = DecompressedStream(open_file(data), fmt)
    assert read_all(stream, 3) == b"first\nsecond\nthird\n"
    assert stream.complete


def test_a_read_before_what_the_stream_holds_decompresses_again_from_the_start(
        open_file: Callable[[bytes], int]) -> None:
    stream = DecompressedStream(open_file(gzip.compress(TEXT)), "gzip")
    assert stream.pread(100, 300_000) == TEXT[300_000:300_100]
    assert stream.pread(100, 299_000) == TEXT[299_000:299_100]  # kept behind: no restart
    assert stream.restarts == 0
    assert stream.pread(50, 10) == TEXT[10:60]
    assert stream.restarts == 1


def test_memory_stays_bounded_while_skipping_far(open_file: Callable[[bytes], int]) -> None:
    big = b"\x00" * (64 << 20)  # 64 MiB of NULs: compresses to almost nothing
    for fmt in ("gzip", "zstd"):
        stream = DecompressedStream(open_file(COMPRESS[fmt](big + b"end\n")), fmt)
        assert stream.pread(10, len(big)) == b"end\n"
        assert len(stream._buf) < 16 << 20  # never the whole stream
        assert stream.complete


@pytest.mark.parametrize("fmt", sorted(COMPRESS))
def test_a_file_still_being_written_reads_as_far_as_it_goes_then_continues(
        tmp_path: Path, fmt: str) -> None:
    data = COMPRESS[fmt](TEXT)
    path = tmp_path / "growing"
    path.write_bytes(data[: len(data) // 2])
    fd = os.open(path, os.O_RDONLY)
    try:
        stream = DecompressedStream(fd, fmt)
        head = read_all(stream, 65536)
        assert TEXT.startswith(head)
        assert not stream.complete
        with open(path, "ab") as out:
            out.write(data[len(data) // 2:])
        rest = read_all_from(stream, len(head))
        assert head + rest == TEXT
        assert stream.complete
    finally:
        os.close(fd)


def read_all_from(stream: DecompressedStream, offset: int) -> bytes:
    parts = []
    while data := stream.pread(65536, offset):
        parts.append(data)
        offset += len(data)
    return b"".join(parts)


@pytest.mark.parametrize("fmt", sorted(COMPRESS))
def test_corrupt_data_raises_a_clear_error_every_time(open_file: Callable[[bytes], int],
                                                       fmt: str) -> None:
    data = bytearray(COMPRESS[fmt](TEXT))
    middle = len(data) // 2
    data[middle: middle + 64] = bytes(64)  # 64 NULs inside the compressed data
    stream = DecompressedStream(open_file(bytes(data)), fmt)
    with pytest.raises(CorruptCompressedFile, match=f"corrupt {fmt} data"):
        read_all(stream, 65536)
    with pytest.raises(CorruptCompressedFile):
        stream.pread(10, 0)


def test_garbage_after_the_end_is_corrupt_and_nul_padding_is_not(
        open_file: Callable[[bytes], int]) -> None:
    padded = DecompressedStream(open_file(lzma.compress(b"a\n") + bytes(COMPRESSED_READ_BYTES
                                                                         + 8)), "xz")
    assert read_all(padded, 10) == b"a\n"
    assert padded.complete
    garbage = DecompressedStream(open_file(gzip.compress(b"a\n") + b"not gzip"), "gzip")
    with pytest.raises(CorruptCompressedFile, match="not another member"):
        read_all(garbage, 10)


@pytest.mark.parametrize("fmt", sorted(COMPRESS))
def test_a_line_reader_cuts_decompressed_lines_like_a_plain_file(
        open_file: Callable[[bytes], int], fmt: str) -> None:
    text = b"short\r\n" + b"y" * 5000 + b"\n" + "é".encode() * 10 + b"\n" + b"no newline"
    plain = LineReader(open_file(text), max_line_bytes=1000)
    fd = open_file(COMPRESS[fmt](text))
    stream = DecompressedStream(fd, fmt)
    packed = LineReader(fd, max_line_bytes=1000, pread=stream.pread)
    want = [r.lines for r in plain.drain_to_eof(max_bytes=333, max_lines=2)]
    got = [r.lines for r in packed.drain_to_eof(max_bytes=333, max_lines=2)]
    assert got == want
    assert packed.offset == len(text)
    assert packed.prefix_hash() == plain.prefix_hash()


def test_multiline_entries_are_joined_across_chunks_of_a_decompressed_stream(
        open_file: Callable[[bytes], int]) -> None:
    import re

    from logcap.sources.files.joining import reader_factory
    from logcap.sources.multiline import MultilineRule

    rule = MultilineRule(re.compile(r"^seq="), max_lines=50, timeout_s=5.0)
    entries = ["\n".join([f"seq={n} ERROR boom", *[f"\tat frame {n}.{k}" for k in range(n % 5)]])
               for n in range(2000)]
    text = "".join(e + "\n" for e in entries).encode()
    fd = open_file(zstandard.ZstdCompressor().compress(text))
    stream = DecompressedStream(fd, "zstd")
    reader = reader_factory(1000, "utf-8", lambda path: rule)("x.zst", fd, 0, stream.pread)
    got: list[str] = []
    while True:  # as the tailer drains a rotated file: the last read is final
        result = reader.read_batch(777, 64, final=True)
        got.extend(result.lines)
        if result.eof:
            break
    assert got == entries
    assert reader.offset == len(text)
