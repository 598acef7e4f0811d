"""End-to-end benchmark: a file -> logcap (its own process) -> a Loki push receiver.

    .venv/bin/python bench/e2e_loki.py [--lines 300000] [--rate 10000] [--seconds 15]
        [--encoding protobuf|json] [--line-bytes 200] [--batch-lines 5000] [--queue-size N]
        [--in-process-receiver]

Two runs, each against a fresh logcap process and a Loki push receiver that decodes and
validates every push (protobuf+snappy or JSON): by default the bench receiver in its own
process (``tests/fast_loki_receiver.py``: its own GIL, the other core, well under a µs per
line), with ``--in-process-receiver`` the full test receiver in this process (as the benches
ran before: ~5 µs per line, which caps what can be measured near 115,000 lines/s):

1. **throughput**: ``--lines`` lines of ``--line-bytes`` bytes are written first; logcap starts
   and reads from the beginning; lines/s = lines / (last arrival - logcap start).
2. **latency**: lines written at ``--rate`` lines/s for ``--seconds``, each carrying its write
   time; p50/p99/max of (arrival - write) at the receiver.

Both print logcap's CPU (% of one core, and µs of CPU per line, from /proc via psutil) and
peak RSS, and the receiver process's CPU µs per line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logcap.config.sources import DEFAULT_DISPATCH_BATCH_LINES
from tests.fast_loki_receiver import FastLokiReceiver, LokiReceiverProcess
from tests.harness import LogcapProcess, make_config

BenchReceiver = FastLokiReceiver | LokiReceiverProcess
"""What the benches read: ``url``, ``count``, ``numbered``, ``last_arrival``, ``latencies_ms``,
``arrivals``, ``fail_unavailable()``, ``clear_faults()``, ``stop()``."""
RECEIVER: dict[str, Any] = {"in_process": False}
"""``in_process``: the full test receiver in the bench's process (``--in-process-receiver``)."""


def open_receiver() -> BenchReceiver:
    """A started receiver: the fast one in its own process, or (``RECEIVER["in_process"]``)
    the full test receiver in this one."""
    if RECEIVER["in_process"]:
        return FastLokiReceiver(fast_path=False).start()
    return LokiReceiverProcess().start()


def add_receiver_option(parser: argparse.ArgumentParser) -> None:
    """``--in-process-receiver`` (sets ``RECEIVER["in_process"]`` once parsed, by
    :func:`apply_receiver_option`)."""
    parser.add_argument("--in-process-receiver", action="store_true",
                        help="run the full test receiver in this process, as the benches did "
                             "before (it caps the measurable rate near 115,000 lines/s)")


def apply_receiver_option(args: argparse.Namespace) -> None:
    RECEIVER["in_process"] = args.in_process_receiver


class ReceiverCpu:
    """The receiver process's CPU time over a job (nothing for the in-process receiver)."""

    def __init__(self, receiver: BenchReceiver) -> None:
        self.process = psutil.Process(receiver.pid) \
            if isinstance(receiver, LokiReceiverProcess) else None
        self.start = self._cpu()

    def _cpu(self) -> float:
        if self.process is None:
            return 0.0
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def seconds(self) -> float | None:
        """CPU seconds since the start (None in-process: not told apart from the bench's)."""
        return None if self.process is None else self._cpu() - self.start

    def text(self, lines: int) -> str:
        """``, receiver X µs/line`` since the start, or "" in-process."""
        spent = self.seconds()
        return "" if spent is None else f", receiver {1e6 * spent / max(1, lines):.2f} µs/line"


class Probe:
    """Samples a process's CPU time and RSS."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.system_start = self._system()
        self.cpu_start = self._cpu()
        self.cpu_s = 0.0
        self.system_s = 0.0
        self.t_start = time.monotonic()
        self._thread.start()

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def _system(self) -> float:
        return float(self.process.cpu_times().system)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def finish(self) -> tuple[float, float]:
        """(CPU % of one core, peak RSS MiB) since the probe started."""
        self.system_s = self._system() - self.system_start
        self.cpu_s = self._cpu() - self.cpu_start
        wall = time.monotonic() - self.t_start
        self._stop.set()
        self._thread.join()
        return 100 * self.cpu_s / wall, self.peak_rss / 2**20

    def us_per_line(self, lines: int) -> float:
        """CPU µs per line over the probe's life (after :meth:`finish`)."""
        return 1e6 * self.cpu_s / max(1, lines)

    def system_us_per_line(self, lines: int) -> float:
        """Of :meth:`us_per_line`, the kernel's (system time: reads, writes, fsync, sockets)."""
        return 1e6 * self.system_s / max(1, lines)


DISK_BUFFER: dict[str, Any] = {"enabled": False}
BATCHING: dict[str, Any] = {"batch_size": DEFAULT_DISPATCH_BATCH_LINES}
"""The shards' and the Loki sink's ``batch_size`` (``--batch-lines``) and, when given, the
dispatcher's ``queue_size`` (``--queue-size``)."""


def _config(tmp: Path, receiver: BenchReceiver, encoding: str) -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    buffer = {**DISK_BUFFER, "directory": str(tmp / "buffer")}
    return make_config(
        tmp, [str(tmp / "logs" / "*.log")],
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "encoding": encoding,
                        "batch_size": BATCHING["batch_size"]}},
        dispatcher={**BATCHING, "batch_timeout": "50ms"},
        positions={"flush_interval": "1s"},
        logging={"level": "warning"},
        disk_buffer=buffer,
    )


def throughput(lines: int, line_bytes: int, encoding: str) -> None:
    receiver = open_receiver()
    receiver_cpu = ReceiverCpu(receiver)
    with tempfile.TemporaryDirectory(prefix="logcap-bench-") as name:
        tmp = Path(name)
        config = _config(tmp, receiver, encoding)
        pad = "x" * (line_bytes - 20)
        with open(tmp / "logs" / "app.log", "w") as fh:
            for n in range(lines):
                fh.write(f"seq={n:09d} {pad}\n")
        proc = LogcapProcess(config)
        started = time.monotonic()
        proc.start(wait_healthy=False)
        assert proc.proc is not None
        probe = Probe(proc.proc.pid)
        deadline = started + 600
        while (count := receiver.count) < lines and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = receiver.last_arrival - started
        cpu, rss = probe.finish()
        receiver_text = receiver_cpu.text(count)
        proc.stop()
    receiver.stop()
    rate = count / elapsed
    mode = f"{encoding}{', disk buffer' if DISK_BUFFER['enabled'] else ''}"
    print(f"throughput [{mode}]: {count:,} lines of {line_bytes} B in {elapsed:.2f}s"
          f" = {rate:,.0f} lines/s ({rate * line_bytes / 2**20:.1f} MiB/s)"
          f"  logcap CPU {cpu:.0f}% of a core ({probe.us_per_line(count):.2f} µs/line,"
          f" {probe.system_us_per_line(count):.2f} of it system),"
          f" peak RSS {rss:.0f} MiB{receiver_text}  (target >= 50,000 lines/s:"
          f" {rate / 50_000:.2f}x)")


def latency(rate: float, seconds: float, line_bytes: int, encoding: str) -> None:
    receiver = open_receiver()
    with tempfile.TemporaryDirectory(prefix="logcap-bench-") as name:
        tmp = Path(name)
        config = _config(tmp, receiver, encoding)
        path = tmp / "logs" / "app.log"
        path.write_text("")
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        probe = Probe(proc.proc.pid)
        total = int(rate * seconds)
        pad = "x" * max(0, line_bytes - 45)
        chunk = max(1, int(rate / 100))  # 100 writes a second
        start = time.monotonic()
        written = 0
        with open(path, "a") as fh:
            while written < total:
                now_ns = time.time_ns()
                fh.write("".join(f"seq={written + i} t={now_ns} {pad}\n" for i in range(chunk)))
                fh.flush()
                written += chunk
                ahead = written / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        deadline = time.monotonic() + 60
        while receiver.count < written and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu, rss = probe.finish()
        latencies = receiver.latencies_ms
        proc.stop()
    receiver.stop()
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]
    mode = f"{encoding}{', disk buffer' if DISK_BUFFER['enabled'] else ''}"
    print(f"latency [{mode}] at {rate:,.0f} lines/s for {seconds:.0f}s: "
          f"{len(lat):,} lines, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms"
          f"  logcap CPU {cpu:.0f}% of a core ({probe.us_per_line(len(lat)):.1f} µs/line),"
          f" peak RSS {rss:.0f} MiB  (target p99 <= 150 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--line-bytes", type=int, default=200)
    parser.add_argument("--encoding", default="protobuf", choices=["protobuf", "json"])
    parser.add_argument("--only", choices=["throughput", "latency"])
    parser.add_argument("--disk-buffer", action="store_true",
                        help="with the disk buffer on (fsync every 200ms)")
    parser.add_argument("--batch-lines", "--batch-size", type=int,
                        default=DEFAULT_DISPATCH_BATCH_LINES,
                        help="the shards' and the Loki sink's batch_size (default: logcap's)")
    parser.add_argument("--queue-size", type=int, help="dispatcher.queue_size (mailboxes)")
    add_receiver_option(parser)
    args = parser.parse_args()
    apply_receiver_option(args)
    DISK_BUFFER["enabled"] = args.disk_buffer
    BATCHING["batch_size"] = args.batch_lines
    if args.queue_size:
        BATCHING["queue_size"] = args.queue_size
    if args.only != "latency":
        throughput(args.lines, args.line_bytes, args.encoding)
    if args.only != "throughput":
        latency(args.rate, args.seconds, args.line_bytes, args.encoding)


if __name__ == "__main__":
    main()
