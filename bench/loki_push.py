"""Benchmark of the Loki sink's transport alone: CPU per push of one ready request.

One request of ``--lines`` lines (protobuf + snappy, built once) is POSTed ``--pushes`` times
through :meth:`LokiService._push` (send, read the answer, classify): what the HTTP client costs
per push, without grouping or encoding. The answer comes from a
:class:`tests.loki_receiver.LokiReceiver` in this process (it decodes every push, in its own
threads: their CPU is not counted), or with ``--answerer`` from a minimal child process that
answers ``204`` at once.

    .venv/bin/python bench/loki_push.py [--pushes 2000] [--lines 600] [--repeat 5] [--answerer]
    .venv/bin/python bench/loki_push.py --instructions [--pushes 500] [--receiver]

The first form prints the calling thread's CPU µs per push (``time.thread_time``, the median of
``--repeat`` rounds). ``--instructions`` (needs ``valgrind``) counts instructions per push with
cachegrind against the child answerer, or with ``--receiver`` against a
:class:`~tests.loki_receiver.LokiReceiver` in a child process (``tests/loki_receiver.py``: it
decodes and validates each push and answers as Loki does, ``204`` with ``Date`` and ``Server``
headers; cachegrind does not count its process): a run of ``--pushes`` pushes minus a run of
none, so two versions compare without the machine's noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loki_deliver import cachegrind_instructions, make_service, start_answerer, start_receiver

from logcap.messages import Outcome
from logcap.sinks.loki.request import LokiStream, PushRequest, entries_at
from logcap.sinks.loki.service import LokiService
from tests.loki_receiver import LokiReceiver


def one_request(service: LokiService, lines: int) -> tuple[list[LokiStream], PushRequest]:
    text = [f"{1_796_169_600_000_000_000 + i} line {i} " + "x" * 150 for i in range(lines)]
    streams = [LokiStream('{job="bench"}', entries_at(1_796_169_600_000_000_000, text))]
    return streams, service._request(streams)


def push_times(service: LokiService, lines: int, pushes: int) -> list[float]:
    """Thread CPU seconds of each of ``pushes`` pushes (after one that connects)."""
    streams, request = one_request(service, lines)
    push = service._push
    assert push(streams, 0, request).outcome is Outcome.DELIVERED
    times = []
    for _ in range(pushes):
        started = time.thread_time()
        verdict = push(streams, 0, request)
        times.append(time.thread_time() - started)
        assert verdict.outcome is Outcome.DELIVERED, verdict
    return times


def cpu_per_push(lines: int, pushes: int, repeat: int, answerer: bool) -> float:
    proc = None
    receiver = None
    if answerer:
        proc, url = start_answerer()
    else:
        receiver = LokiReceiver(keep_lines=False).start()
        url = receiver.url
    try:
        service = make_service(url)
        rounds = [sum(push_times(service, lines, pushes)) / pushes for _ in range(repeat)]
        service.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if receiver is not None:
            receiver.stop()
    return statistics.median(rounds) * 1e6


def _run_only(lines: int, pushes: int, receiver: bool) -> None:
    proc, url = start_receiver() if receiver else start_answerer()
    try:
        service = make_service(url)
        push_times(service, lines, pushes)
        service.close()
    finally:
        proc.kill()
        proc.wait()


def _instructions(lines: int, pushes: int, receiver: bool) -> int:
    return cachegrind_instructions([sys.executable, __file__, "--run-only", "--lines",
                                    str(lines), "--pushes", str(pushes),
                                    *(["--receiver"] if receiver else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--answerer", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--receiver", action="store_true",
                        help="--instructions against a LokiReceiver process")
    parser.add_argument("--run-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_only:
        _run_only(args.lines, args.pushes, args.receiver)
        return
    if args.instructions:
        spent = (_instructions(args.lines, args.pushes, args.receiver)
                 - _instructions(args.lines, 0, args.receiver))
        against = "LokiReceiver process" if args.receiver else "child answerer"
        print(f"push of {args.lines} lines: {spent / args.pushes:,.0f} instructions "
              f"({args.pushes} pushes, cachegrind, {against})")
        return
    us = cpu_per_push(args.lines, args.pushes, args.repeat, args.answerer)
    against = "child answerer" if args.answerer else "LokiReceiver"
    print(f"push of {args.lines} lines: {us:6.1f} µs thread CPU (median of {args.repeat} "
          f"rounds of {args.pushes}, {against})")


if __name__ == "__main__":
    main()
