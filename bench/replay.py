"""Disk-buffer replay after a Loki outage: how fast the backlog drains while new lines flow.

    .venv/bin/python bench/replay.py [--backlog 3000000] [--rate 10000] [--line-bytes 200]
                                     [--in-process-receiver]

1. **outage**: the Loki receiver answers 503; ``--backlog`` lines (default: 5 minutes at
   10,000 lines/s; numbered ``seq=N``) are written to the file and logcap, with the disk buffer
   on, reads them into the buffer (their positions commit once they are durable there);
2. **replay**: the receiver comes back while a writer keeps adding lines at ``--rate``
   (``new=N t=<ns>``, not numbered); the drain ends when the receiver has every backlog line
   (the new lines delivered by then count in its rate too).

Printed: the backlog's fill (lines/s into the buffer, CPU µs per line), the drain (backlog
and new lines delivered, lines/s, CPU µs per line) and the new lines' p99 delay from write to
arrival during the drain and after it. The receiver decodes and validates every push, in its
own process (``tests/fast_loki_receiver.py``), or with ``--in-process-receiver`` the full test
receiver in this one; both on the same 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_loki import (
    Probe,
    ReceiverCpu,
    add_receiver_option,
    apply_receiver_option,
    open_receiver,
)
from tests.harness import LogcapProcess, make_config


def buffered_lines(proc: LogcapProcess) -> int:
    """Lines appended to the disk buffer so far (its ``/stats``)."""
    stats = proc.api("/stats")
    return int(stats["disk_buffer"]["appended"]["lines"])


def write_at_rate(path: Path, rate: float, stop: threading.Event, pad: str,
                  written: list[int]) -> None:
    """Append ``seq=N t=<ns>`` lines at ``rate`` until ``stop``; ``written[0]`` counts them."""
    chunk = max(1, int(rate / 100))
    start = time.monotonic()
    with open(path, "a") as fh:
        while not stop.is_set():
            now_ns = time.time_ns()
            n = written[0]
            fh.write("".join(f"new={n + i} t={now_ns} {pad}\n" for i in range(chunk)))
            fh.flush()
            written[0] = n + chunk
            ahead = written[0] / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=3_000_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--line-bytes", type=int, default=200)
    add_receiver_option(parser)
    args = parser.parse_args()
    apply_receiver_option(args)
    receiver = open_receiver()
    receiver.fail_unavailable()
    with tempfile.TemporaryDirectory(prefix="logcap-replay-") as name:
        tmp = Path(name)
        logs = tmp / "logs"
        logs.mkdir()
        config = make_config(
            tmp, [str(logs / "*.log")],
            sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
            dispatcher={"batch_size": 1000, "batch_timeout": "50ms",
                        "retry_base_delay": "100ms", "retry_max_delay": "1s"},
            positions={"flush_interval": "1s"}, logging={"level": "warning"},
            disk_buffer={"enabled": True, "directory": str(tmp / "buffer"),
                         "max_total_size": "8GiB"})
        path = logs / "app.log"
        pad = "x" * max(0, args.line_bytes - 20)
        with open(path, "w") as fh:
            for n in range(args.backlog):
                fh.write(f"seq={n:09d} {pad}\n")
        proc = LogcapProcess(config).start(wait_healthy=False)
        assert proc.proc is not None
        fill = Probe(proc.proc.pid)
        deadline = time.monotonic() + 60
        while not proc.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)
        while buffered_lines(proc) < args.backlog:
            time.sleep(0.2)
        fill_cpu, _ = fill.finish()
        fill_s = time.monotonic() - fill.t_start
        print(f"outage: {args.backlog:,} lines into the buffer in {fill_s:.1f} s = "
              f"{args.backlog / fill_s:,.0f} lines/s, logcap {fill.us_per_line(args.backlog):.1f}"
              f" µs CPU per line ({fill_cpu:.0f} % of a core)")

        stop, written = threading.Event(), [0]
        writer = threading.Thread(target=write_at_rate, args=(path, args.rate, stop,
                                                             pad[:-25], written))
        drain = Probe(proc.proc.pid)
        receiver_cpu = ReceiverCpu(receiver)
        receiver.clear_faults()
        writer.start()
        deadline = time.monotonic() + 1800
        while receiver.numbered < args.backlog and time.monotonic() < deadline:
            time.sleep(0.05)
        drain_cpu, rss = drain.finish()
        done = next(a for a in receiver.arrivals if a.numbered >= args.backlog)
        drain_s = done.monotonic - drain.t_start
        delivered = done.lines
        receiver_text = receiver_cpu.text(delivered)
        time.sleep(5)  # the new lines alone, after the drain
        latencies = receiver.latencies_ms
        during, after = latencies[:done.delays], latencies[done.delays:]
        stop.set()
        writer.join()
        proc.stop()
    receiver.stop()
    print(f"replay: {delivered:,} lines ({args.backlog:,} backlog + "
          f"{delivered - args.backlog:,} new at {args.rate:,.0f}/s) in {drain_s:.1f} s = "
          f"{delivered / drain_s:,.0f} lines/s, logcap {drain.us_per_line(delivered):.1f} µs CPU"
          f" per line ({drain_cpu:.0f} % of a core), peak RSS {rss:.0f} MiB{receiver_text} "
          f"(target >= 300,000 lines/s: {delivered / drain_s / 300_000:.2f}x)")
    print(f"  new lines' delay: p99 {p99(during):,.0f} ms during the drain, "
          f"{p99(after):,.0f} ms after it")


if __name__ == "__main__":
    main()
