"""End-to-end benchmark: a file -> logcap (its own process) -> a Loki push receiver.

    .venv/bin/python bench/e2e_loki.py [--lines 300000] [--rate 10000] [--seconds 15]
        [--encoding protobuf|json] [--line-bytes 200] [--batch-lines 5000] [--queue-size N]

Two runs, each against a fresh logcap process and a receiver that decodes and validates every
push (protobuf+snappy or JSON) in this process:

1. **throughput**: ``--lines`` lines of ``--line-bytes`` bytes are written first; logcap starts
   and reads from the beginning; lines/s = lines / (last arrival - logcap start).
2. **latency**: lines written at ``--rate`` lines/s for ``--seconds``, each carrying its write
   time; p50/p99/max of (arrival - write) at the receiver.

Both print logcap's CPU (% of one core, and µs of CPU per line, from /proc via psutil) and
peak RSS.
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
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import DecodedEntry, LokiReceiver


class TimingReceiver(LokiReceiver):
    """Records, for lines carrying ``t=<ns>``, the delay from write to arrival."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(keep_lines=False, **kw)
        self.latencies_ms: list[float] = []
        self.last_arrival = 0.0
        self.count = 0

    def _record(self, accepted: list[tuple[str, list[DecodedEntry]]]) -> int:
        now_ns = time.time_ns()
        for _, entries in accepted:
            for entry in entries:
                line = entry.line
                mark = line.find(" t=")
                if mark >= 0:
                    end = line.find(" ", mark + 3)
                    written = int(line[mark + 3:end if end > 0 else None])
                    self.latencies_ms.append((now_ns - written) / 1e6)
        self.last_arrival = time.monotonic()
        total = sum(len(entries) for _, entries in accepted)
        self.count += total
        return total


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


def _config(tmp: Path, receiver: LokiReceiver, encoding: str) -> Path:
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
    receiver = TimingReceiver().start()
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
        while receiver.count < lines and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = receiver.last_arrival - started
        cpu, rss = probe.finish()
        proc.stop()
    receiver.stop()
    rate = receiver.count / elapsed
    mode = f"{encoding}{', disk buffer' if DISK_BUFFER['enabled'] else ''}"
    print(f"throughput [{mode}]: {receiver.count:,} lines of {line_bytes} B in {elapsed:.2f}s"
          f" = {rate:,.0f} lines/s ({rate * line_bytes / 2**20:.1f} MiB/s)"
          f"  logcap CPU {cpu:.0f}% of a core ({probe.us_per_line(receiver.count):.1f} µs/line,"
          f" {probe.system_us_per_line(receiver.count):.1f} of it system),"
          f" peak RSS {rss:.0f} MiB  (target >= 50,000 lines/s: {rate / 50_000:.2f}x)")


def latency(rate: float, seconds: float, line_bytes: int, encoding: str) -> None:
    receiver = TimingReceiver().start()
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
        proc.stop()
    receiver.stop()
    lat = sorted(receiver.latencies_ms)
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
    args = parser.parse_args()
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
