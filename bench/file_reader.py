"""Micro-benchmark of :class:`logcap.sources.files.reader.LineReader`: lines/s and MB/s.

Writes a file of ``--lines`` lines of ``--line-bytes`` bytes each (newline included) to a
temporary directory, reads it once to warm the page cache, then times ``read_batch`` over the
whole file for each variant: plain, LF vs CRLF, with and without per-line offsets, with no
``max_lines`` and with ``--max-lines`` (what the file source passes: ``dispatcher.batch_size``).
The disk is not measured (the file is in the page cache): this is the splitting and decoding
cost. Wall time is sensitive to the allocator (a 1 MiB read may or may not fault its pages in
again): compare several runs.

    python bench/file_reader.py [--lines 1000000] [--line-bytes 200] [--chunk 1048576]
                                [--max-lines 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

from logcap.sources.files.reader import CHUNK_BYTES, LineReader

__all__ = ["main"]

DEFAULT_LINES = 1_000_000
DEFAULT_LINE_BYTES = 200
DEFAULT_REPEAT = 3
DEFAULT_MAX_LINES = 1000
_WRITE_BATCH_LINES = 10_000


def _make_line(n: int, line_bytes: int, terminator: bytes) -> bytes:
    head = f"2026-11-23T10:00:00.{n % 1000:03d}Z host opensips[4242]: INFO:core:main: call {n} "
    body_len = line_bytes - len(terminator)
    return (head.encode() + b"x" * body_len)[:body_len] + terminator


def _write_file(path: str, lines: int, line_bytes: int, terminator: bytes) -> int:
    with open(path, "wb") as out:
        for start in range(0, lines, _WRITE_BATCH_LINES):
            count = min(_WRITE_BATCH_LINES, lines - start)
            out.write(b"".join(_make_line(start + i, line_bytes, terminator) for i in range(count)))
    return os.path.getsize(path)


def _read_all(path: str, chunk: int, track_offsets: bool,
              max_lines: int | None = None) -> tuple[int, float]:
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = LineReader(fd, track_offsets=track_offsets)
        lines = 0
        started = time.perf_counter()
        while True:
            result = reader.read_batch(chunk, max_lines)
            lines += len(result.lines)
            if result.eof and not result.bytes_read:
                break
        return lines, time.perf_counter() - started
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES)
    parser.add_argument("--line-bytes", type=int, default=DEFAULT_LINE_BYTES)
    parser.add_argument("--chunk", type=int, default=CHUNK_BYTES)
    parser.add_argument("--max-lines", type=int, default=DEFAULT_MAX_LINES)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logcap-bench-") as tmp:
        for label, terminator in (("LF", b"\n"), ("CRLF", b"\r\n")):
            path = os.path.join(tmp, f"{label}.log")
            size = _write_file(path, args.lines, args.line_bytes, terminator)
            _read_all(path, args.chunk, False)  # warm the page cache
            for track, max_lines in itertools.product((False, True), (None, args.max_lines)):
                best = float("inf")
                for _ in range(args.repeat):
                    lines, elapsed = _read_all(path, args.chunk, track, max_lines)
                    if lines != args.lines:
                        raise SystemExit(f"read {lines} lines, wrote {args.lines}")
                    best = min(best, elapsed)
                print(
                    f"{label:4} track_offsets={track!s:5} max_lines={max_lines!s:5} {args.lines}"
                    f" lines x {args.line_bytes} B chunk={args.chunk}:"
                    f" {args.lines / best / 1e6:6.2f} M lines/s"
                    f"  {size / best / 1e6:7.1f} MB/s  ({best:.3f} s best of {args.repeat})"
                )
            os.unlink(path)


if __name__ == "__main__":
    main()
