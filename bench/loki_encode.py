"""Micro-benchmark of the Loki request encoders: entries/s and µs per request.

Builds a batch of ``--entries`` entries (default 1,000) of ``--line-bytes``-byte lines
(default 200) with nanosecond timestamps spread over a second, in ``--streams`` streams, then
times each encoder on it, best of ``--repeat`` rounds of ``--iterations`` calls:

- ``protobuf payload [python]``, ``[native]``: each encoder alone
  (:func:`encode_push_request_python`, and :func:`encode_push_request_native` when it was
  built; no compression, no sort);
- ``protobuf+snappy``: :func:`encode_protobuf` (sort check, encode, snappy block compression),
  what the sink sends by default;
- ``json``, ``json+gzip``: :func:`encode_json`.

    python bench/loki_encode.py [--entries 1000] [--line-bytes 200] [--streams 1]
                                [--metadata [call_id|opensips]] [--iterations 200] [--repeat 7]
    python bench/loki_encode.py --instructions [same batch options]

``--metadata`` gives each entry structured metadata: ``call_id`` (the default) one unique
Call-ID pair; ``opensips`` what the ``opensips`` pipeline leaves: ``pid`` and ``function``
(few values), a unique ``call_id``, and on every 4th entry ``method``, ``status`` and
``src_ip``, with whole-second timestamps (the log's own).

``--instructions`` (needs ``valgrind``) counts instead, with cachegrind, the instructions per
entry of each protobuf encoder and of the snappy compression of its payload: a run that calls
it ``--iterations`` times (at most 20) minus one that only builds the batch, both with
``PYTHONHASHSEED=0`` so that their start-up is the same: versions compare without the machine's
noise.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable

from logcap.sinks.loki.labels import render_labels
from logcap.sinks.loki.protobuf import (
    NATIVE,
    EntryLike,
    compress_snappy,
    encode_push_request,
    encode_push_request_native,
    encode_push_request_python,
)
from logcap.sinks.loki.request import LokiStream, encode_json, encode_protobuf

_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")
# what --instructions counts (and --run-only runs under cachegrind)
COUNTED: dict[str, Callable[[list[LokiStream]], object]] = {
    "python": encode_push_request_python,
    **({"native": encode_push_request_native} if NATIVE else {}),
    "snappy": lambda batch: compress_snappy(encode_push_request(batch).payload),
}


def opensips_metadata(i: int, rng: random.Random) -> tuple[tuple[str, str], ...]:
    md: tuple[tuple[str, str], ...] = (
        ("pid", ("2311", "2312", "2315")[i % 3]), ("function", ("t_reply", "relay")[i % 2]),
        ("call_id", f"{rng.getrandbits(64):016x}@10.0.0.1"))
    if i % 4 == 0:
        md += (("method", "INVITE"), ("status", "200"), ("src_ip", "192.0.2.10"))
    return md


def make_batch(entries: int, line_bytes: int, streams: int, metadata: str | None
               ) -> list[LokiStream]:
    rng = random.Random(1)
    base = 1_700_000_000_000_000_000
    if metadata == "opensips":
        stamps = [base + i // 50 * 1_000_000_000 for i in range(entries)]
    else:
        stamps = sorted(base + rng.randrange(1_000_000_000) for _ in range(entries))
    out: list[list[EntryLike]] = [[] for _ in range(streams)]  # as the sink makes them
    for i, ts in enumerate(stamps):
        head = f"2024-05-01T12:00:00.000Z level=info seq={i} msg="
        line = (head + "x" * line_bytes)[:line_bytes]
        md: tuple[tuple[str, str], ...] = ()
        if metadata == "call_id":
            md = (("call_id", f"{rng.getrandbits(64):016x}@10.0.0.1"),)
        elif metadata == "opensips":
            md = opensips_metadata(i, rng)
        out[i % streams].append((ts, line, md))
    return [
        LokiStream(render_labels({"job": "opensips", "host": "sip-1", "shard": str(n)}), es)
        for n, es in enumerate(out)
    ]


def best_seconds(fn: Callable[[], object], iterations: int, repeat: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def _run_only(name: str, batch: list[LokiStream], iterations: int) -> None:
    fn = COUNTED[name]
    if name == "snappy":  # the payload is made once: only the compression is counted
        payload = encode_push_request(batch).payload
        fn = lambda _: compress_snappy(payload)  # noqa: E731
    for _ in range(iterations):
        fn(batch)


def _instructions(argv: list[str], name: str, iterations: int) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, *argv, "--run-only", name, "--iterations", str(iterations)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})  # the same start-up in both runs
    found = _IREFS.search(done.stderr)
    assert found, done.stderr[-500:]
    return int(found.group(1).replace(",", ""))


def instructions(argv: list[str], entries: int, iterations: int) -> None:
    for name in COUNTED:
        spent = _instructions(argv, name, iterations) - _instructions(argv, name, 0)
        print(f"  {name:8s} {spent / (iterations * entries):9,.0f} instructions per entry "
              f"({iterations} calls, cachegrind)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--line-bytes", type=int, default=200)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--metadata", nargs="?", const="call_id", choices=("call_id", "opensips"),
                        help="structured metadata on every entry (see above)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--run-only", choices=COUNTED, help=argparse.SUPPRESS)
    args = parser.parse_args()

    batch = make_batch(args.entries, args.line_bytes, args.streams, args.metadata)
    if args.run_only:
        _run_only(args.run_only, batch, args.iterations)
        return
    describe = (f"{args.entries} entries of {args.line_bytes} B in {args.streams} stream(s)"
                f"{f', with {args.metadata} metadata' if args.metadata else ''}")
    if args.instructions:
        print(describe)
        argv = ["--entries", str(args.entries), "--line-bytes", str(args.line_bytes),
                "--streams", str(args.streams),
                *(["--metadata", args.metadata] if args.metadata else [])]
        instructions(argv, args.entries, min(args.iterations, 20))
        return
    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("protobuf payload [python]", lambda: encode_push_request_python(batch).payload),
        *([("protobuf payload [native]", lambda: encode_push_request_native(batch).payload)]
          if NATIVE else []),
        ("protobuf+snappy", lambda: encode_protobuf(batch)),
        ("json", lambda: encode_json(batch)),
        ("json+gzip", lambda: encode_json(batch, gzip=True)),
    ]
    print(f"{describe}; best of {args.repeat}")
    for name, fn in cases:
        seconds = best_seconds(fn, args.iterations, args.repeat)
        size = len(fn())
        per_1000_us = seconds / args.entries * 1000 * 1e6
        print(f"  {name:26s} {args.entries / seconds:12,.0f} entries/s "
              f"{per_1000_us:9.1f} µs per 1,000-entry request  body {size:,} B")


if __name__ == "__main__":
    main()
