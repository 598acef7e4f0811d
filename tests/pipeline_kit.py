"""Helpers for the pipeline tests: Entries from lines, a run through a built-in or a spec, and
a reference joiner of multiline records for the built-ins' fixtures.

``join_records`` follows :class:`~logcap.config.sources.MultilineConfig` as documented (a line
matching ``pattern``, or not with ``negate``, starts a record with ``match: after``, ends one
with ``before``; at most ``max_lines`` lines; lines joined by ``\\n``). It stands in for the
source-side joiner (``logcap/sources/multiline.py``, another helper's scope) so the built-ins
can be checked against whole entries; it is not used by logcap itself.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

from logcap.cli.pipeline_test import join_all
from logcap.messages import Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.pipeline.builtins import builtin_pipelines
from logcap.pipeline.compiled import CompiledPipeline, Processed

FIXTURES = Path(__file__).parent / "fixtures"


def leaked(run: Callable[[int], None], kept: Sequence[object], times: int = 5000
           ) -> tuple[int, list[int]]:
    """What ``run(times)`` (a compiled stage over ``times`` batches) leaves behind, after a
    warm-up: the bytes still allocated (tracemalloc) and how the reference counts of the
    ``kept`` objects (inputs of each batch) changed."""
    run(200)
    gc.collect()
    counts = [sys.getrefcount(o) for o in kept]
    tracemalloc.start()
    try:
        run(100)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run(times)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    after = [sys.getrefcount(o) for o in kept]  # counted the same way as before
    return grown, [a - c for a, c in zip(after, counts, strict=True)]
READ_NS = 1_796_169_600_000_000_000  # 2026-12-02T00:00:00Z


def entries(lines: list[str], ts_ns: int = READ_NS, stream: str = "/var/log/app.log",
            source: str = "app", labels: tuple[tuple[str, str], ...] = (("job", "app"),),
            **kw: object) -> Entries:
    token = ReadToken(source, FILE_KIND, FileStream(1, 2, "fp"), 0, 10 * len(lines), "g1", 1)
    return Entries(source, stream, labels, list(lines), ts_ns, token, **kw)  # type: ignore[arg-type]


def read_lines(path: Path) -> list[str]:
    """A file's lines as the file reader gives them (LF or CRLF removed)."""
    text = path.read_bytes().decode()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def builtin(name: str) -> CompiledPipeline:
    return builtin_pipelines()[name].compile()


def run_builtin(name: str, fixture: str, read_ns: int = READ_NS) -> Processed:
    """A fixture's lines, joined as the built-in's multiline spec says, through it."""
    pipeline = builtin(name)
    lines = read_lines(FIXTURES / fixture)
    if pipeline.multiline is not None:
        lines = join_all(lines, pipeline.multiline)
    return pipeline.run(entries(lines, read_ns))


def metadata(result: Processed, i: int) -> dict[str, str]:
    assert result.entries.metadata is not None
    return dict(result.entries.metadata[i])


def line_labels(result: Processed, i: int) -> dict[str, str]:
    assert result.entries.line_labels is not None
    return dict(result.entries.line_labels[i])
