"""Peers: logcap and syslog-ng on the same job, side by side, interleaved (issue 14).

    .venv/bin/python bench/peers.py [--lines 1000000] [--rate 10000] [--seconds 20]
                                    [--runs 3] [--line-bytes 200] [--batch-lines 5000]
                                    [--only NAME ...] [--pipeline opensips]

Agents (each its own process, config and state under a temp dir; never a system service):

- ``logcap``: memory buffer (``disk_buffer.enabled: false``), protobuf + snappy;
- ``logcap-disk``: the disk buffer on (fsync by group commit every 200 ms, or at once when 4 MiB
  wait);
- ``syslog-ng``: Debian's ``syslog-ng-core`` + ``syslog-ng-mod-http`` (3.38, memory queue,
  ``flags(flow-control)``), a ``file()`` source (``follow-freq(0.1)``, ``log-iw-size(10000)``,
  ``log-fetch-limit(1000)``) and an ``http()`` destination posting Loki's JSON push format
  (``--batch-lines`` lines or 50 ms a batch, one worker: one ordered stream).

Each agent tails one file into a Loki push receiver on loopback that decodes and validates
every push (``tests/fast_loki_receiver.py`` in its own process; ``--in-process-receiver``: the
full ``tests/loki_receiver.py`` in this one, as before) in two jobs:

1. **burst**: ``--lines`` lines of ``--line-bytes`` bytes are written first; the agent starts
   and reads from the beginning: lines/s (lines / time to the last arrival), CPU µs per line
   (user + system time of the agent's process over the job), peak RSS;
2. **steady**: lines written at ``--rate`` lines/s for ``--seconds``, each carrying its write
   time: p50/p99 of (arrival - write), the agent's CPU as % of one core and its peak RSS.

With ``--pipeline opensips`` (issue 14's "the same run with the opensips pipeline"): the burst
alone, logcap alone (``logcap+opensips``, ``logcap-disk+opensips``), each agent running the
built-in ``opensips`` pipeline on OpenSIPS lines (:func:`write_opensips`: every 20th entry a
SIP message dump of 7 lines, joined into one entry; levels as labels, Call-ID and the rest as
structured metadata, the log's own timestamp); lines/s and µs/line count raw lines, the
receiver counts the joined entries.

The jobs run ``--runs`` times, agents interleaved within each run (A B C, A B C, ...), and the
median of each figure is printed, then the ratios of each logcap mode to syslog-ng. Every run
checks that every line arrived (a run that lost lines is reported, not hidden).
"""

from __future__ import annotations

import abc
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_loki import (
    Probe,
    ReceiverCpu,
    add_receiver_option,
    apply_receiver_option,
    open_receiver,
)
from bench.pipelines import opensips_raw
from logcap.config.sources import DEFAULT_DISPATCH_BATCH_LINES
from tests.harness import LogcapProcess, ensure_bytecode, make_config

SYSLOG_NG = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"


class Agent(abc.ABC):
    """One agent under test: started on a log file and a receiver URL, stopped at the end."""

    name = ""

    @abc.abstractmethod
    def start(self, tmp: Path, log: Path, url: str) -> int:
        """Start the agent following ``log`` and pushing to ``url``; its PID."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop it (SIGTERM, then kill)."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Its process is running."""


class Logcap(Agent):
    def __init__(self, disk_buffer: bool, batch_lines: int, pipeline: str | None = None) -> None:
        self.name = ("logcap-disk" if disk_buffer else "logcap") + \
            (f"+{pipeline}" if pipeline else "")
        self.disk_buffer = disk_buffer
        self.batch_lines = batch_lines
        self.pipeline = pipeline
        self.proc: LogcapProcess | None = None

    def start(self, tmp: Path, log: Path, url: str) -> int:
        source: dict[str, Any] = {"name": "app", "include": [str(log)], "start_at": "beginning",
                                  "labels": {"job": "test"}}
        if self.pipeline:
            source["pipeline"] = self.pipeline
        config = make_config(
            tmp, [], sources={"files": [source]},
            sinks={"file": {"enabled": False},
                   "loki": {"enabled": True, "url": url, "encoding": "protobuf",
                            "batch_size": self.batch_lines}},
            dispatcher={"batch_size": self.batch_lines, "batch_timeout": "50ms"},
            positions={"flush_interval": "1s"},
            logging={"level": "warning"},
            disk_buffer={"enabled": self.disk_buffer, "directory": str(tmp / "buffer")})
        self.proc = LogcapProcess(config)
        self.proc.start(wait_healthy=False)
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.proc is not None \
            and self.proc.proc.poll() is None


SYSLOG_NG_CONFIG = """@version: 3.38
options {{ stats-freq(0); frac-digits(9); keep-hostname(no); use-dns(no); dns-cache(no); }};
source s_file {{ file("{log}" flags(no-parse) follow-freq(0.1) log-iw-size(10000)
                      log-fetch-limit(1000)); }};
destination d_loki {{
  http(url("{url}/loki/api/v1/push") method("POST") headers("Content-Type: application/json")
       batch-lines({batch_lines}) batch-timeout(50) workers(1)
       body-prefix('{{"streams":[{{"stream":{{"job":"syslog-ng"}},"values":[')
       delimiter(",")
       body('{body}')
       body-suffix("]}}]}}"));
}};
log {{ source(s_file); destination(d_loki); flags(flow-control); }};
"""
SYSLOG_NG_BODY = ('["$(substr "${R_UNIXTIME}" 0 10)$(substr "${R_UNIXTIME}" 11 9)",'
                  '$(substr "$(format-json --scope none v=$MSG)" 5 -1)]')
"""One value of the push: the line JSON-escaped by ``format-json`` (``{"v":"..."}``, cut to
the string); the timestamp is the receipt time in ns (``R_UNIXTIME`` with 9 fraction digits,
the dot cut)."""


class SyslogNg(Agent):
    name = "syslog-ng"

    def __init__(self, batch_lines: int) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.batch_lines = batch_lines

    def start(self, tmp: Path, log: Path, url: str) -> int:
        conf = tmp / "syslog-ng.conf"
        conf.write_text(SYSLOG_NG_CONFIG.format(log=log, url=url, body=SYSLOG_NG_BODY,
                                                batch_lines=self.batch_lines))
        with open(tmp / "syslog-ng.log", "wb") as err:
            self.proc = subprocess.Popen(
                [SYSLOG_NG, "-F", "-f", str(conf), "-R", str(tmp / "syslog-ng.persist"),
                 "-p", str(tmp / "syslog-ng.pid"), "-c", str(tmp / "syslog-ng.ctl"),
                 "--no-caps"], stdout=subprocess.DEVNULL, stderr=err)
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Figures:
    """One agent's figures over the runs (medians printed)."""

    burst_rate: list[float] = field(default_factory=list)
    burst_us: list[float] = field(default_factory=list)
    burst_rss: list[float] = field(default_factory=list)
    receiver_us: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    steady_cpu: list[float] = field(default_factory=list)
    steady_us: list[float] = field(default_factory=list)
    steady_rss: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _wait(done: Callable[[], bool], timeout: float, agent: Agent) -> bool:
    """Wait for ``done``; False after ``timeout`` or once the agent's process has exited."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline or not agent.alive():
            return done()
        time.sleep(0.02)
    return True


def write_numbered(log: Path, lines: int, line_bytes: int) -> tuple[int, int]:
    """``lines`` lines ``seq=N <padding>`` of ``line_bytes`` bytes; the entries to expect, and
    how many of them the burst's figures wait for (all)."""
    pad = "x" * (line_bytes - 15)
    with open(log, "w") as fh:
        for start in range(0, lines, 10_000):
            fh.write("".join(f"seq={n:09d} {pad}\n"
                             for n in range(start, min(lines, start + 10_000))))
    return lines, lines


def write_opensips(log: Path, lines: int, line_bytes: int) -> tuple[int, int]:
    """``lines`` raw lines of OpenSIPS's log (:func:`bench.pipelines.opensips_raw`: syslog
    timestamp, ``[pid] LEVEL:module:function: message``, a Call-ID in each, single lines padded
    to ``line_bytes``; every 20th entry a ``NOTICE`` xlog line followed by its SIP message dump,
    joined by the ``opensips`` pipeline's multiline rule). The entries to expect, as the pipeline
    joins them, and how many the burst's figures wait for: all but the last, which waits for the
    multiline timeout (no line follows to end it; it must arrive too, later)."""
    raw = opensips_raw(lines, number="n", pad_to=line_bytes - 1)
    entries = sum(1 for line in raw if line.startswith("Dec "))
    with open(log, "w") as fh:
        for start in range(0, lines, 10_000):
            fh.write("".join(f"{line}\n" for line in raw[start:start + 10_000]))
    return entries, entries - 1


def burst(agent: Agent, lines: int, line_bytes: int, figures: Figures,
          write: Callable[[Path, int, int], tuple[int, int]] = write_numbered) -> None:
    receiver = open_receiver()
    with tempfile.TemporaryDirectory(prefix=f"peers-{agent.name}-") as name:
        tmp = Path(name)
        log = tmp / "app.log"
        expected, timed = write(log, lines, line_bytes)
        receiver_cpu = ReceiverCpu(receiver)
        started = time.monotonic()
        probe = Probe(agent.start(tmp, log, receiver.url))
        complete = _wait(lambda: receiver.count >= timed, 600, agent)
        count = receiver.count
        elapsed = receiver.last_arrival - started
        _, rss = probe.finish()
        receiver_cpu_s = receiver_cpu.seconds()
        if complete and timed < expected:
            complete = _wait(lambda: receiver.count >= expected, 60, agent)
        arrived = receiver.count
        agent.stop()
    receiver.stop()
    if not complete or arrived != expected:
        figures.problems.append(f"burst: {arrived} of {expected} entries arrived")
    raw = lines * min(1.0, count / expected)  # the raw lines those entries hold
    figures.burst_rate.append(raw / elapsed)
    figures.burst_us.append(probe.us_per_line(int(raw)))
    figures.burst_rss.append(rss)
    if receiver_cpu_s is not None:
        figures.receiver_us.append(1e6 * receiver_cpu_s / max(1, raw))


def steady(agent: Agent, rate: float, seconds: float, line_bytes: int,
           figures: Figures) -> None:
    receiver = open_receiver()
    with tempfile.TemporaryDirectory(prefix=f"peers-{agent.name}-") as name:
        tmp = Path(name)
        log = tmp / "app.log"
        log.write_text("")
        pid = agent.start(tmp, log, receiver.url)
        time.sleep(2.0)  # started and following the file
        probe = Probe(pid)
        pad = "x" * max(0, line_bytes - 45)
        chunk = max(1, int(rate / 100))  # 100 writes a second
        total = int(rate * seconds)
        written = 0
        begin = time.monotonic()
        with open(log, "a") as fh:
            while written < total:
                now_ns = time.time_ns()
                fh.write("".join(f"seq={written + i} t={now_ns} {pad}\n" for i in range(chunk)))
                fh.flush()
                written += chunk
                ahead = written / rate - (time.monotonic() - begin)
                if ahead > 0:
                    time.sleep(ahead)
        complete = _wait(lambda: receiver.count >= written, 60, agent)
        cpu, rss = probe.finish()
        count, latencies = receiver.count, receiver.latencies_ms
        agent.stop()
    receiver.stop()
    if not complete:
        figures.problems.append(f"steady: {count} of {written} lines arrived")
    lat = sorted(latencies)
    figures.p50.append(statistics.median(lat) if lat else float("nan"))
    figures.p99.append(lat[max(0, int(len(lat) * 0.99) - 1)] if lat else float("nan"))
    figures.steady_cpu.append(cpu)
    figures.steady_us.append(probe.us_per_line(len(lat)))
    figures.steady_rss.append(rss)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


ROWS: list[tuple[str, str, str]] = [
    ("burst_rate", "burst lines/s", "{:,.0f}"),
    ("burst_us", "burst CPU µs/line", "{:.2f}"),
    ("burst_rss", "burst peak RSS MiB", "{:.0f}"),
    ("receiver_us", "burst receiver CPU µs/line", "{:.2f}"),
    ("p50", "steady p50 ms", "{:.0f}"),
    ("p99", "steady p99 ms", "{:.0f}"),
    ("steady_cpu", "steady CPU % of a core", "{:.1f}"),
    ("steady_us", "steady CPU µs/line", "{:.2f}"),
    ("steady_rss", "steady peak RSS MiB", "{:.0f}"),
]


def report(results: dict[str, Figures], args: Any) -> None:
    names = list(results)
    steady_job = "" if args.pipeline else \
        f", {args.rate:,.0f} lines/s for {args.seconds:.0f} s (steady)"
    pipeline = f", the {args.pipeline} pipeline" if args.pipeline else ""
    print(f"\npeers: {args.lines:,} lines of {args.line_bytes} B (burst){steady_job}{pipeline}; "
          f"median of {args.runs} interleaved runs; load average {os.getloadavg()[0]:.1f}")
    width = max(len(label) for _, label, _ in ROWS)
    column = max(14, *(len(n) + 2 for n in names))
    print(" " * width + "".join(f"{n:>{column}}" for n in names))
    for key, label, fmt in ROWS:
        if not any(getattr(results[n], key) for n in names):
            continue  # not measured (the steady job is not run with --pipeline)
        cells = [fmt.format(_median(getattr(results[n], key))) for n in names]
        print(label.ljust(width) + "".join(f"{c:>{column}}" for c in cells))
    peer = results.get(SyslogNg.name)
    if peer is not None:
        for name in names:
            if name == SyslogNg.name:
                continue
            ratios = []
            for key, label, _ in ROWS:
                ours, theirs = _median(getattr(results[name], key)), _median(getattr(peer, key))
                if theirs:
                    ratios.append(f"{label} {ours / theirs:.2f}x")
            print(f"{name}/syslog-ng: " + "; ".join(ratios))
    for name, figures in results.items():
        for problem in figures.problems:
            print(f"  {name}: {problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--line-bytes", type=int, default=200)
    parser.add_argument("--batch-lines", type=int, default=DEFAULT_DISPATCH_BATCH_LINES,
                        help="lines per push, for every agent (logcap's dispatcher and Loki "
                             "batch_size, syslog-ng's batch-lines; default: logcap's)")
    parser.add_argument("--only", nargs="+", choices=["logcap", "logcap-disk", "syslog-ng"])
    parser.add_argument("--pipeline", choices=["opensips"],
                        help="logcap runs this built-in pipeline on OpenSIPS lines (the burst "
                             "only, logcap only: syslog-ng parses nothing)")
    add_receiver_option(parser)
    args = parser.parse_args()
    apply_receiver_option(args)
    ensure_bytecode()  # before the first burst's clock starts (as an installed wheel has it)
    agents: list[Agent] = [Logcap(False, args.batch_lines, args.pipeline),
                           Logcap(True, args.batch_lines, args.pipeline),
                           SyslogNg(args.batch_lines)]
    if args.pipeline:
        agents = agents[:2]
    if not os.path.exists(SYSLOG_NG):
        print(f"{SYSLOG_NG} not found (apt-get install syslog-ng-core syslog-ng-mod-http): "
              "logcap alone")
        agents = agents[:2]
    if args.only:
        agents = [a for a in agents if a.name.split("+")[0] in args.only]
    results = {agent.name: Figures() for agent in agents}
    write = write_opensips if args.pipeline else write_numbered
    for run in range(args.runs):
        for agent in agents:
            burst(agent, args.lines, args.line_bytes, results[agent.name], write)
            print(f"run {run + 1} {agent.name} burst: "
                  f"{results[agent.name].burst_rate[-1]:,.0f} lines/s, "
                  f"{results[agent.name].burst_us[-1]:.2f} µs/line", flush=True)
        for agent in agents if not args.pipeline else ():
            steady(agent, args.rate, args.seconds, args.line_bytes, results[agent.name])
            print(f"run {run + 1} {agent.name} steady: p99 {results[agent.name].p99[-1]:.0f} ms, "
                  f"CPU {results[agent.name].steady_cpu[-1]:.1f}%", flush=True)
    report(results, args)
    return 1 if any(f.problems for f in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
