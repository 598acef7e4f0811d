"""Benchmark of the Loki sink's whole push path: CPU per line of :meth:`LokiService.deliver`.

What the sink actor's thread spends per line: grouping into streams, the ``batch_bytes`` cap,
sorting, protobuf encoding, snappy, and the transport's per-push work (urllib3), sent over a
kept-alive connection to a minimal push answerer in a child process (it reads each request and
answers ``204`` at once, so no decoding in this process; its CPU is not counted).

Batches of ``--batch`` entries, as the shard sends them (parts of 100 lines):

- ``raw``: plain lines, timestamps ``ts_ns + i`` (a file read without a pipeline);
- ``opensips``: the ``opensips`` pipeline's output on OpenSIPS lines (per-line timestamps, the
  ``level``/``module`` line labels, metadata ``pid``, ``function``, ``call_id`` and sometimes
  ``method``, ``status``, ``src_ip``).

    .venv/bin/python bench/loki_deliver.py [--batches 200] [--batch 1000] [--repeat 5]
    .venv/bin/python bench/loki_deliver.py --instructions [--batches 40] [--receiver]
    .venv/bin/python bench/loki_deliver.py --steps [--batches 100]

The first form prints the calling thread's CPU µs per line (``time.thread_time``, the best of
``--repeat`` rounds). ``--instructions`` (needs ``valgrind``) counts the instructions per line
with cachegrind: a run that delivers the batches three times minus one that only prepares
them and sends one batch, so two versions compare without the machine's noise. ``--receiver``
pushes to a :class:`~tests.loki_receiver.LokiReceiver` process (it decodes and validates each
push, answers as Loki does) instead of the child answerer.
``--steps`` splits the first form's CPU per line by step, each timed alone on the same batches:
grouping (:meth:`LokiService.streams`), the sort check, the protobuf encoding, snappy, and one
POST of the batch's body through the sink's transport (a fixed cost per push: about the same
for a 10-byte body);
what ``deliver`` spends beyond their sum is the ``batch_bytes`` check, headers and the verdict.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelines import opensips_raw

from logcap.cli.pipeline_test import join_all
from logcap.config import parse_config
from logcap.messages import Entries, Outcome
from logcap.pipeline.builtins import builtin_pipelines
from logcap.sinks.loki.protobuf import compress_snappy, encode_push_request
from logcap.sinks.loki.request import build_push_request, sorted_streams
from logcap.sinks.loki.service import LokiService
from tests.pipeline_kit import entries

PART = 100
RECEIVER = Path(__file__).resolve().parent.parent / "tests" / "loki_receiver.py"
REPS = 3
CASES = ("raw", "opensips")
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_ANSWERER = r"""
import socket, threading
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def serve(conn):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        if b"\r\n\r\n" not in buf:
            break
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buf) < length:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        buf = buf[length:]
        conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    conn.close()
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


def make_batches(case: str, batches: int, size: int) -> list[tuple[Entries, ...]]:
    """``batches`` batches of ``size`` entries in parts of :data:`PART` lines."""
    total = batches * size
    if case == "raw":
        text = [f"Dec  1 20:34:{i % 60:02d} [2311] ERROR:tm:t_reply: call-id=a{i}@10.0.0.5 "
                f"replied 200 OK seq={i}" for i in range(total)]
        made = [entries(text[i:i + PART], ts_ns=1_796_169_600_000_000_000 + i)
                for i in range(0, total, PART)]
    else:
        pipeline = builtin_pipelines()["opensips"].compile()
        assert pipeline.multiline is not None
        joined: list[str] = []
        n = total
        while len(joined) < total:
            joined = join_all(opensips_raw(n), pipeline.multiline)
            n += n // 4 + 1
        made = [pipeline.run(entries(joined[i:i + PART])).entries
                for i in range(0, total, PART)]
    per = size // PART
    return [tuple(made[b * per:(b + 1) * per]) for b in range(batches)]


def start_answerer() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", _ANSWERER], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    socket.create_connection(("127.0.0.1", port)).close()
    return proc, f"http://127.0.0.1:{port}"


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """A :class:`~tests.loki_receiver.LokiReceiver` in a child process (``--no-keep-lines``:
    it decodes and validates each push, counts its lines, keeps none), and its URL."""
    proc = subprocess.Popen([sys.executable, str(RECEIVER), "--no-keep-lines"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}"


def start_peer(receiver: bool) -> tuple[subprocess.Popen[str], str]:
    return start_receiver() if receiver else start_answerer()


def make_service(url: str) -> LokiService:
    cfg = parse_config(yaml.safe_dump(
        {"sinks": {"loki": {"enabled": True, "url": url}}}), {}).sinks.loki
    return LokiService(cfg)


def deliver_all(service: LokiService, made: list[tuple[Entries, ...]]) -> None:
    for parts in made:
        verdict = service.deliver(parts)
        assert verdict.outcome is Outcome.DELIVERED, verdict


def cpu_per_line(case: str, batches: int, size: int, repeat: int, receiver: bool) -> float:
    made = make_batches(case, batches, size)
    proc, url = start_peer(receiver)
    try:
        service = make_service(url)
        deliver_all(service, made[:1])  # connect, warm the caches
        times = []
        for _ in range(repeat):
            started = time.thread_time()
            deliver_all(service, made)
            times.append(time.thread_time() - started)
        service.close()
    finally:
        proc.kill()
        proc.wait()
    return min(times) / (batches * size) * 1e6


def _best_per_line(fn: Callable[[Any], object], items: list[Any], lines: int,
                   repeat: int) -> float:
    """The best of ``repeat`` rounds of ``fn`` over ``items``: thread CPU µs per line."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        for item in items:
            fn(item)
        best = min(best, time.thread_time() - started)
    return best / lines * 1e6


def steps(case: str, batches: int, size: int, repeat: int) -> None:
    made = make_batches(case, batches, size)
    lines = batches * size
    proc, url = start_answerer()
    try:
        service = make_service(url)
        deliver_all(service, made[:1])
        grouped = [service.streams(parts) for parts in made]
        ordered = [sorted_streams(streams) for streams in grouped]
        payloads = [encode_push_request(streams).payload for streams in ordered]
        pushes = [build_push_request(streams) for streams in grouped]
        cases: list[tuple[str, Callable[[Any], object], list[Any]]] = [
            ("deliver, all of it", service.deliver, made),
            ("streams (grouping)", service.streams, made),
            ("sorted_streams", sorted_streams, grouped),
            ("encode_push_request", encode_push_request, ordered),
            ("compress_snappy", compress_snappy, payloads),
            ("POST (transport)", lambda push: service.session.post(
                service.url, push.body, push.headers, 10), pushes),
        ]
        for name, fn, items in cases:
            us = _best_per_line(fn, items, lines, repeat)
            print(f"{case:9} {name:20s} {us:6.3f} µs CPU per line")
        service.close()
    finally:
        proc.kill()
        proc.wait()


def _run_only(case: str, batches: int, size: int, reps: int, receiver: bool) -> None:
    made = make_batches(case, batches, size)
    proc, url = start_peer(receiver)
    try:
        service = make_service(url)
        deliver_all(service, made[:1])
        for _ in range(reps):
            deliver_all(service, made)
        service.close()
    finally:
        proc.kill()
        proc.wait()


def cachegrind_instructions(command: list[str]) -> int:
    """The instructions ``command`` runs, counted by cachegrind (no cache simulation)."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         *command], capture_output=True, text=True, check=True)
    found = _IREFS.search(done.stderr)
    assert found, done.stderr[-500:]
    return int(found.group(1).replace(",", ""))


def _instructions(case: str, batches: int, size: int, reps: int, receiver: bool) -> int:
    return cachegrind_instructions(
        [sys.executable, __file__, "--run-only", case, "--reps", str(reps),
         "--batches", str(batches), "--batch", str(size),
         *(["--receiver"] if receiver else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000, help="entries per batch")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--steps", action="store_true", help="CPU per line of each step")
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--receiver", action="store_true",
                        help="push to a LokiReceiver process instead of the child answerer")
    parser.add_argument("--run-only", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=REPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch % PART:
        parser.error(f"--batch must be a multiple of {PART}")
    if args.run_only:
        _run_only(args.run_only, args.batches, args.batch, args.reps, args.receiver)
        return
    for case in args.case or CASES:
        lines = args.batches * args.batch
        if args.steps:
            steps(case, args.batches, args.batch, args.repeat)
        elif args.instructions:
            spent = (_instructions(case, args.batches, args.batch, REPS, args.receiver)
                     - _instructions(case, args.batches, args.batch, 0, args.receiver))
            print(f"{case:9} deliver: {spent / (REPS * lines):,.0f} instructions per line, "
                  f"{spent / (REPS * args.batches):,.0f} per batch ({args.batches} batches "
                  f"of {args.batch}, {REPS} runs, cachegrind"
                  f"{', LokiReceiver process' if args.receiver else ''})")
        else:
            us = cpu_per_line(case, args.batches, args.batch, args.repeat, args.receiver)
            print(f"{case:9} deliver: {us:5.2f} µs CPU per line (thread CPU, best of "
                  f"{args.repeat}; {args.batches} batches of {args.batch})")


if __name__ == "__main__":
    main()
