"""Benchmark of multiline joining at the file source: CPU µs per physical line and lines/s.

Writes a file of Java-style stack traces (``--entries`` entries of 1 to ``--max-frames`` + 2
lines) to a temporary directory, warms the page cache, then reads the whole file with a plain
:class:`~logcap.sources.files.reader.LineReader` and with a
:class:`~logcap.sources.files.joining.JoiningReader` (``firstline``, and ``pattern`` with
``negate: false``), and prints what joining adds per line. CPU time is the process's
(``time.process_time``), so a loaded machine changes lines/s more than µs/line.

    python bench/multiline_reader.py [--entries 200000] [--max-frames 6] [--repeat 3]
    python bench/multiline_reader.py --instructions [--pipeline opensips] [--lines 60000]

With ``--instructions`` (needs ``valgrind``): the instructions per raw line of a built-in
pipeline's joining (the raw lines of ``bench/pipelines.py``, in reads of 1,000 lines), counted
by cachegrind (runs over the reads three times minus a run that only prepares them), in parts:
the rule's searches (:func:`~logcap.sources.line_automaton.stops`, by the automaton when the
rule has one, and with ``--no-automaton`` line by line), ``LineJoiner.feed_lines`` in all (the
rest is cutting and building the texts), and ``JoiningReader.read_batch`` over a reader that
hands out the prepared reads (the rest is the file joining layer).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipelines import RAW
from logcap.pipeline.builtins import builtin_pipelines
from logcap.sources import line_automaton
from logcap.sources.files.joining import JoiningReader
from logcap.sources.files.reader import CHUNK_BYTES, LineReader, ReadResult
from logcap.sources.line_automaton import stops
from logcap.sources.multiline import LineJoiner, MultilineRule

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


READ_LINES = 1000
PARTS = ("searches", "feed_lines", "read_batch")
REPS = 3
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


class _PreparedReads:
    """A stand-in for a ``LineReader`` with ``track_offsets``: hands out prepared reads."""

    tracks_offsets = True
    offset = 0

    def __init__(self, reads: list[ReadResult]) -> None:
        self._reads = iter(reads)

    def read_batch(self, max_bytes: int = CHUNK_BYTES, max_lines: int | None = None, *,
                   final: bool = False) -> ReadResult:
        return next(self._reads)


def _reads(name: str, lines: int) -> tuple[MultilineRule, list[ReadResult]]:
    spec = builtin_pipelines()[name].compile().multiline
    assert spec is not None
    raw = RAW[name](lines)
    reads: list[ReadResult] = []
    offset = 0
    for i in range(0, len(raw), READ_LINES):
        run = raw[i:i + READ_LINES]
        starts = []
        for line in run:
            starts.append(offset)
            offset += len(line.encode()) + 1
        reads.append(ReadResult(run, starts[0], offset, offset - starts[0],
                                line_offsets=starts, eof=False))
    return MultilineRule.of(spec), reads


def _run_part(name: str, part: str, lines: int, reps: int) -> None:
    rule, reads = _reads(name, lines)
    for _ in range(reps):
        if part == "searches":
            first = 0 if rule.after else 1
            for read in reads:
                stops(rule.regex, rule.automaton, read.lines, rule.negate, first)
        elif part == "feed_lines":
            joiner = LineJoiner(rule)
            for read in reads:
                joiner.feed_lines(read.lines, read.line_offsets or [], read.end_offset, 0.0)
        else:
            reader = JoiningReader(_PreparedReads(reads), rule,  # type: ignore[arg-type]
                                   clock=lambda: 0.0)
            for _read in reads:
                reader.read_batch()


def _instructions(name: str, part: str, lines: int, reps: int, automaton: bool) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--run-only", part, "--pipeline", name, "--reps", str(reps),
         "--lines", str(lines), *([] if automaton else ["--no-automaton"])],
        capture_output=True, text=True, check=True)
    found = _IREFS.search(done.stderr)
    assert found, done.stderr[-500:]
    return int(found.group(1).replace(",", ""))


def instructions(name: str, lines: int, automaton: bool) -> None:
    """Instructions per raw line of each part (module docstring)."""
    prepared = _instructions(name, "searches", lines, 0, automaton)
    spent = {part: (_instructions(name, part, lines, REPS, automaton) - prepared)
             / (REPS * lines) for part in PARTS}
    how = "the automaton" if automaton else "re.search line by line"
    print(f"{name} joining, {lines} raw lines in reads of {READ_LINES}, searches by {how} "
          f"(instructions per raw line, cachegrind): searches {spent['searches']:,.0f}; "
          f"feed_lines {spent['feed_lines']:,.0f} (cutting and texts "
          f"{spent['feed_lines'] - spent['searches']:,.0f}); read_batch "
          f"{spent['read_batch']:,.0f} (the file joining layer "
          f"{spent['read_batch'] - spent['feed_lines']:,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--pipeline", choices=tuple(RAW), default="opensips")
    parser.add_argument("--lines", type=int, default=60_000)
    parser.add_argument("--no-automaton", action="store_true",
                        help="search line by line (as without the compiled module)")
    parser.add_argument("--run-only", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=REPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_only:
        with mock.patch.object(line_automaton, "COMPILED",
                               None if args.no_automaton else line_automaton.COMPILED):
            _run_part(args.pipeline, args.run_only, args.lines, args.reps)
        return
    if args.instructions:
        instructions(args.pipeline, args.lines, not args.no_automaton)
        return
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
