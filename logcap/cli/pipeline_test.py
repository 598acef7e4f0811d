"""``logcap pipeline test -c CONFIG [--source NAME | --pipeline NAME] [--path PATH] [FILE|-]``.

Runs sample lines (FILE, or stdin for ``-`` or no FILE) through exactly what the agent runs:
the routing and pipelines loaded from CONFIG's processing files and the built-ins, and the
same :meth:`~logcap.pipeline.compiled.CompiledPipeline.run` the shards call, on one
:class:`~logcap.messages.Entries` of the input's lines. With ``--source`` the pipeline is the
one that source's entries get (its ``pipeline`` key, else the routing rules, matched with the
source's static labels and ``--path``, default FILE); with ``--pipeline`` it is named.

Prints each resulting entry (timestamp, where it came from, labels, structured metadata,
line), then every counted failure and drop by stage and reason. Lines are first joined as the
file source joins them (:class:`~logcap.sources.multiline.LineJoiner`, the source's own
``multiline`` key or the pipeline's multiline stage), with the end of the input closing the
last entry.

Exit codes: 0 done; 2 bad input (invalid config or processing files, an unknown source or
pipeline, an unreadable FILE).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

from logcap.config import Config
from logcap.config.sources import MultilineConfig
from logcap.messages import Entries
from logcap.origin import FILE_KIND, ReadToken
from logcap.pipeline.compiled import CompiledPipeline, Processed
from logcap.pipeline.routing import Routing
from logcap.sinks.loki.labels import render_labels
from logcap.sources.multiline import END_OF_STREAM, LineJoiner, MultilineRule

__all__ = ["add_subcommand", "join_all", "run_test"]

NS = 1_000_000_000


class UnknownName(Exception):
    """A --source or --pipeline that names nothing; the message is the line to print."""


def add_subcommand(sub: Any) -> None:
    pipeline = sub.add_parser("pipeline", help="try processing pipelines")
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    test = commands.add_parser("test", help="run sample lines through a pipeline and print "
                               "the entries")
    test.add_argument("-c", "--config", help="config file (default: $LOGCAP_CONFIG or "
                      "configs/config.yaml)")
    which = test.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="the pipeline this source's entries get")
    which.add_argument("--pipeline", help="a pipeline by name (built-in or from the "
                       "pipelines file)")
    test.add_argument("--path", help="the file path the routing rules see (default: FILE)")
    test.add_argument("file", nargs="?", default="-", help="sample lines (default: stdin)")


def join_all(lines: list[str], spec: MultilineConfig) -> list[str]:
    """``lines`` (one stream, complete) joined into entries as the file source joins them."""
    joiner = LineJoiner(MultilineRule.of(spec))
    out: list[str] = []
    offset = 0
    for line in lines:
        end = offset + len(line.encode("utf-8", "surrogateescape")) + 1
        out.extend(entry.text for entry in joiner.feed(line, offset, end, 0.0))
        offset = end
    last = joiner.flush(END_OF_STREAM)
    if last is not None:
        out.append(last.text)
    return out


def _choose(config: Config, routing: Routing, args: argparse.Namespace, path: str
            ) -> tuple[CompiledPipeline | None, str, tuple[tuple[str, str], ...],
                       MultilineConfig | None]:
    if args.pipeline:
        if args.pipeline not in routing.pipelines:
            raise UnknownName(f"no pipeline named {args.pipeline!r} (known: "
                              f"{', '.join(sorted(routing.pipelines))})")
        compiled = routing.router().compiled(args.pipeline)
        return compiled, "test", (), compiled.multiline
    sources = {s.name: s for s in config.sources.files}
    source = sources.get(args.source)
    if source is None:
        raise UnknownName(f"no source named {args.source!r} (sources: "
                          f"{', '.join(sources) or 'none'})")
    labels = tuple(sorted(dict(source.labels).items()))
    name = routing.pipeline_for(source.name, FILE_KIND, path, labels)
    pipeline = None if name is None else routing.router().compiled(name)
    multiline = source.multiline or (pipeline.multiline if pipeline is not None else None)
    return pipeline, source.name, labels, multiline


def _read_lines(stream: IO[str]) -> list[str]:
    return [line.rstrip("\n") for line in stream]


def _format_ns(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // NS, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns % NS:09d}Z"


def render(processed: Processed, read_ns: int, out: IO[str]) -> None:
    """Print each entry of ``processed`` and its counts (module docstring)."""
    entries = processed.entries
    for i, line in enumerate(entries.lines):
        ts = entries.timestamp(i)
        labels = dict(entries.labels)
        if entries.line_labels is not None:
            labels.update(entries.line_labels[i])
        metadata = entries.metadata[i] if entries.metadata is not None else ()
        print(f"entry {i + 1}", file=out)
        print(f"  timestamp: {_format_ns(ts)} ({ts})", file=out)
        print(f"  labels:    {render_labels(labels)}", file=out)
        shown = ", ".join(f"{k}={v!r}" for k, v in metadata) or "-"
        print(f"  metadata:  {shown}", file=out)
        print(f"  line:      {line}", file=out)
    for title, counts in (("failed", processed.failures), ("dropped", processed.drops)):
        for (stage, reason), lines in sorted(counts.items()):
            print(f"{title}: stage {stage}: {reason}: {lines} line"
                  f"{'' if lines == 1 else 's'}", file=out)
    if processed.demand is not None:
        bucket = processed.demand.bucket
        print(f"rate limited: stage {processed.demand.stage}: the agent lets these entries out "
              f"at {bucket.rate:g} lines/s per stream (burst {bucket.burst:g}), none dropped",
              file=out)
    print(f"{len(entries.lines)} entr{'y' if len(entries.lines) == 1 else 'ies'}, "
          f"{sum(processed.failures.values())} failures, {processed.dropped} dropped", file=out)


def run_test(config: Config, routing: Routing, args: argparse.Namespace,
             out: IO[str] | None = None, err: IO[str] | None = None) -> None:
    """The command's work (module docstring); raises OSError or :class:`UnknownName`.
    ``out`` and ``err`` default to the standard streams."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    path = args.path or ("" if args.file == "-" else os.path.abspath(args.file))
    pipeline, source, labels, multiline = _choose(config, routing, args, path)
    if args.file == "-":
        lines = _read_lines(sys.stdin)
    else:
        with open(args.file, encoding="utf-8", errors="replace") as stream:
            lines = _read_lines(stream)
    if multiline is not None:
        lines = join_all(lines, multiline)
    read_ns = time.time_ns()
    token = ReadToken(source, FILE_KIND, None, 0, sum(len(x) + 1 for x in lines))
    entries = Entries(source, path or "-", labels, lines, read_ns, token)
    if pipeline is None:
        print(f"note: no pipeline applies to source {source!r} with path {path!r}; the lines "
              "go on as read", file=err)
        render(Processed(entries, {}, {}), read_ns, out)
        return
    render(pipeline.run(entries, time.monotonic()), read_ns, out)
