"""Benchmark of the file source's own read path: CPU µs per raw line, raw and joined.

What the source actor's thread runs for a file read from the beginning, without the actors:
:meth:`FileSource.read` (rotation check, reads, read tokens, the timestamp journal) then
:meth:`FileSource.ack` of every read (commits: the positions' prefix hashes), until every
line was read. The file is written first (``--lines`` raw lines, made as in
``bench/pipelines.py``), so the page cache holds it; ``batch_lines`` is 1000 (the e2e
benches' ``dispatcher.batch_size``). Variants: ``raw`` (OpenSIPS lines, no multiline rule),
``opensips`` (the same lines joined at the source by the built-in pipeline's rule: ``firstline``),
``docker_json`` and ``cri`` (container log files joined by their built-ins' rules: ``pattern``
with ``match: before``). CPU time is the process's (``time.process_time``), best of
``--repeat``.

    .venv/bin/python bench/file_source.py [--lines 200000] [--repeat 5] [--only VARIANT]

With ``--once VARIANT`` it runs one pass and prints nothing but the result count: for
``valgrind --tool=cachegrind --cache-sim=no``; instructions per line are those of that run
minus those of the same run with ``--no-read`` (which writes the file, starts and stops the
source, and reads nothing), divided by ``--lines``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelines import cri_raw, docker_json_raw, opensips_raw

from logcap.pipeline.builtins import builtin_pipelines
from logcap.sources.files.source import FileSource
from logcap.sources.files.tailer import TailerSettings
from logcap.sources.multiline import MultilineSpec

__all__ = ["main"]

BATCH_LINES = 1000
RAW = {"raw": opensips_raw, "opensips": opensips_raw, "docker_json": docker_json_raw,
       "cri": cri_raw}
VARIANTS = tuple(RAW)


def _spec(variant: str) -> MultilineSpec | None:
    return None if variant == "raw" else builtin_pipelines()[variant].multiline


def _see_writes(source: FileSource, path: str) -> None:
    """Make each read see ``path`` as written since the last one, as the inotify thread
    would tell it a moment later (the bench writes and reads at once)."""
    watcher = source.watcher
    if watcher is None:
        return
    take_touched = watcher.take_touched

    def touched() -> set[str] | None:
        fresh = take_touched()
        return None if fresh is None else fresh | {path}

    watcher.take_touched = touched  # type: ignore[method-assign]


def run_once(tmp: str, variant: str, lines: int, read: bool = True,
             batch_lines: int = BATCH_LINES, grow: int = 0) -> tuple[int, float]:
    """Read a fresh file of ``lines`` raw lines through a fresh source (``read=False``: only
    start and stop it), ``batch_lines`` lines a read at most; (results, CPU s). With
    ``grow``, the file starts empty and grows by ``grow`` lines before each wake-up and read
    (a steady writer: the fixed cost of a wake-up and a read)."""
    logs = os.path.join(tmp, variant)
    os.makedirs(logs, exist_ok=True)
    path = os.path.join(logs, "app.log")
    raw = RAW[variant](lines) if lines else []
    chunks = [("\n".join(raw[i:i + grow]) + "\n").encode() for i in range(0, lines, grow)] \
        if grow else []
    with open(path, "w") as out:
        if lines and not grow:
            out.write("\n".join(raw) + "\n")
    spec = _spec(variant)
    journal = os.path.join(tmp, f"{variant}.journal")
    settings = TailerSettings(source="app", include=(os.path.join(logs, "*.log"),),
                              start_at="beginning", batch_lines=batch_lines)
    source = FileSource(settings, multiline_for=lambda _path: spec, journal_path=journal)
    got = 0
    try:
        source.start([], {}, lambda: None)
        started = time.process_time()
        if grow:
            _see_writes(source, path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                for chunk in chunks if read else ():
                    os.write(fd, chunk)
                    source.on_wake()
                    reading = source.read()
                    got += sum(len(e.lines) for e in reading.entries)
                    source.ack([e.token for e in reading.entries])
            finally:
                os.close(fd)
        while read and not grow:
            reading = source.read()
            got += sum(len(e.lines) for e in reading.entries)
            source.ack([e.token for e in reading.entries])
            if not reading.more and not reading.entries:
                break
        spent = time.process_time() - started
    finally:
        source.close()
        os.unlink(path)
        if os.path.exists(journal):
            os.unlink(journal)
    return got, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=VARIANTS)
    parser.add_argument("--once", choices=VARIANTS)
    parser.add_argument("--no-read", action="store_true")
    parser.add_argument("--batch-lines", type=int, default=BATCH_LINES,
                        help="lines a read at most (the fixed cost per read: compare 1000 "
                             "with 100)")
    parser.add_argument("--grow", type=int, default=0,
                        help="start empty; append this many lines before each wake-up and "
                             "read (steady writing: the fixed cost per read)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logcap-bench-") as tmp:
        if args.once:
            print(run_once(tmp, args.once, args.lines, not args.no_read, args.batch_lines,
                           args.grow)[0])
            return
        for variant in (args.only,) if args.only else VARIANTS:
            best = float("inf")
            got = 0
            for _ in range(args.repeat):
                got, spent = run_once(tmp, variant, args.lines, batch_lines=args.batch_lines,
                                      grow=args.grow)
                best = min(best, spent)
            print(f"{variant:11} {args.lines} raw lines -> {got} results: "
                  f"{best / args.lines * 1e6:5.2f} µs CPU/raw line "
                  f"(best of {args.repeat})")


if __name__ == "__main__":
    main()
