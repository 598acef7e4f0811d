"""Benchmark of multiline joining at the file source: CPU µs per physical line and lines/s.

Writes a file of Java-style stack traces (``--entries`` entries of 1 to ``--max-frames`` + 2
lines) to a temporary directory, warms the page cache, then reads the whole file with a plain
:class:`~logcap.sources.files.reader.LineReader` and with a
:class:`~logcap.sources.files.joining.JoiningReader` (``firstline``, and ``pattern`` with
``negate: false``), and prints what joining adds per line. CPU time is the process's
(``time.process_time``), so a loaded machine changes lines/s more than µs/line.

    python bench/multiline_reader.py [--entries 200000] [--max-frames 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable

from logcap.sources.files.joining import JoiningReader
from logcap.sources.files.reader import CHUNK_BYTES, LineReader
from logcap.sources.multiline import MultilineRule

__all__ = ["main"]

DEFAULT_ENTRIES = 200_000
DEFAULT_MAX_FRAMES = 6
DEFAULT_REPEAT = 3


def _write(path: str, entries: int, max_frames: int) -> int:
    lines = 0
    with open(path, "w") as out:
        for n in range(entries):
            block = [f"2024-05-01 12:00:{n % 60:02d}.{n % 1000:03d} ERROR [main] seq={n} failed",
                     f"java.lang.IllegalStateException: state {n}"]
            block += [f"\tat com.example.Service{k}.call(Service{k}.java:{n % 97 + k})"
                      for k in range(n % (max_frames + 1))]
            out.write("\n".join(block) + "\n")
            lines += len(block)
    return lines


Reader = LineReader | JoiningReader


def _read_all(path: str, make: Callable[[int], Reader]) -> tuple[int, float, float]:
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = make(fd)
        out = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while True:
            result = reader.read_batch(CHUNK_BYTES, final=True)
            out += len(result.lines)
            if result.eof and not result.bytes_read:
                break
        return out, time.perf_counter() - wall, time.process_time() - cpu
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args()
    firstline = MultilineRule(re.compile(r"^\d{4}-\d\d-\d\d "), max_lines=1000)
    indented = MultilineRule(re.compile(r"^(\s|java\.)"), negate=False, max_lines=1000)
    variants: list[tuple[str, int | None, Callable[[int], Reader]]] = [
        ("plain LineReader", None, lambda fd: LineReader(fd)),
        ("joined, firstline", args.entries,
         lambda fd: JoiningReader(LineReader(fd, track_offsets=True), firstline)),
        ("joined, pattern/after", args.entries,
         lambda fd: JoiningReader(LineReader(fd, track_offsets=True), indented)),
    ]
    with tempfile.TemporaryDirectory(prefix="logcap-bench-") as tmp:
        path = os.path.join(tmp, "traces.log")
        lines = _write(path, args.entries, args.max_frames)
        _read_all(path, variants[0][2])  # warm the page cache
        base_cpu = None
        for label, expected, make in variants:
            best_wall = best_cpu = float("inf")
            for _ in range(args.repeat):
                out, wall, cpu = _read_all(path, make)
                if out != (expected if expected is not None else lines):
                    raise SystemExit(f"{label}: {out} results, expected {expected or lines}")
                best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
            per_line = best_cpu / lines * 1e6
            base_cpu = per_line if base_cpu is None else base_cpu
            print(f"{label:22} {lines} lines ({args.entries} entries): "
                  f"{lines / best_wall / 1e6:5.2f} M lines/s, {per_line:5.2f} µs CPU/line "
                  f"(+{per_line - base_cpu:4.2f} over plain), best of {args.repeat}")


if __name__ == "__main__":
    main()
