"""Benchmark of the Loki sink's grouping of a batch into streams, with and without per-line
fields: CPU µs per line and lines/s of :meth:`LokiService.streams` (labels through the guard,
the stream limit, one ``(ts_ns, line, metadata)`` tuple per line), then of the protobuf +
snappy body.

Batches of ``--parts`` parts of ``--lines`` lines each: plain parts (timestamps ``ts_ns + i``,
the part's labels), parts whose lines carry their own timestamps, and parts whose lines also
carry a ``level`` label (three values: each part goes to three streams) and a Call-ID as
structured metadata, as the ``opensips`` pipeline leaves them.

    python bench/loki_streams.py [--parts 10] [--lines 100] [--iterations 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import yaml

from logcap.config import parse_config
from logcap.messages import Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.sinks.loki.request import encode_protobuf
from logcap.sinks.loki.service import LokiService

__all__ = ["main"]

T0 = 1_700_000_000_000_000_000
LEVELS = ("INFO", "ERROR", "DBG")


def make_parts(parts: int, lines: int, fields: str) -> tuple[Entries, ...]:
    out = []
    for p in range(parts):
        text = [f"opensips[42]: INFO:core:main: call seq={p * lines + i} " + "x" * 120
                for i in range(lines)]
        token = ReadToken("sip", FILE_KIND, FileStream(1, 2, "fp"), 0, 1, "g1", 0)
        extra: dict[str, Any] = {}
        if fields != "plain":
            extra["timestamps"] = [T0 + (p * lines + i) * 1_000 for i in range(lines)]
        if fields == "labels+metadata":
            extra["line_labels"] = [(("level", LEVELS[i % 3]),) for i in range(lines)]
            extra["metadata"] = [(("call_id", f"{i:016x}@10.0.0.1"),) for i in range(lines)]
        out.append(Entries("sip", f"/var/log/opensips{p}.log",
                           (("job", "opensips"), ("filename", f"/var/log/opensips{p}.log")),
                           text, T0 + p * lines, token, 130 * lines, **extra))
    return tuple(out)


def best(fn: Callable[[], object], iterations: int, repeat: int) -> float:
    """The lowest CPU seconds per call of ``fn`` over ``repeat`` rounds."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(iterations):
            fn()
        times.append((time.process_time() - started) / iterations)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=10)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cfg = parse_config(yaml.safe_dump(
        {"sinks": {"loki": {"enabled": True, "url": "http://127.0.0.1:9"}}}), {}).sinks.loki
    service = LokiService(cfg)
    total = args.parts * args.lines
    for fields in ("plain", "timestamps", "labels+metadata"):
        batch = make_parts(args.parts, args.lines, fields)
        streams = service.streams(batch)
        group = best(partial(service.streams, batch), args.iterations, args.repeat)
        encode = best(partial(encode_protobuf, streams), args.iterations, args.repeat)
        print(f"{fields:16} {total} lines in {len(streams):2} streams: grouping "
              f"{group / total * 1e6:5.2f} µs CPU/line ({total / group / 1e6:5.2f} M lines/s), "
              f"protobuf+snappy {encode / total * 1e6:5.2f} µs CPU/line")
    service.close()


if __name__ == "__main__":
    main()
