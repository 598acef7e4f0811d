"""Many files: threads, descriptors, admin API latency and idle CPU of logcap following
``--files`` files under ``max_open_files``.

    .venv/bin/python bench/many_files.py [--files 1000] [--idle-seconds 10]
                                         [--max-open-files 512] [--rate-seconds 10]

Creates the files (a line in each), starts logcap with the file sink, waits until every
file's line arrived, then measures logcap's thread count and its CPU use over an idle period
(no writes), then appends one line to every file and measures how long until all arrive, then
writes one line per second to every file for ``--rate-seconds`` (CPU µs per line). Throughout,
/health, /stats and /metrics are asked in turn: the slowest answer is printed, with the most
descriptors logcap held.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ApiProbe, LogcapProcess, file_sink_counts, make_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--max-open-files", type=int, default=512)
    parser.add_argument("--rate-seconds", type=int, default=10)
    args = parser.parse_args()
    n = args.files
    with tempfile.TemporaryDirectory(prefix="logcap-many-") as name:
        tmp = Path(name)
        logs = tmp / "logs"
        logs.mkdir()
        for i in range(n):
            (logs / f"f{i:05d}.log").write_text(f"seq={i} first\n")
        config = make_config(tmp, [str(logs / "*.log")], logging={"level": "warning"},
                             sources={"files": [{"name": "app", "include": [str(logs / "*.log")],
                                                 "start_at": "beginning",
                                                 "max_open_files": args.max_open_files}]})
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        process = psutil.Process(proc.proc.pid)
        probe = ApiProbe(proc.port)
        peak_fds = 0

        def arrived(count: int) -> bool:
            nonlocal peak_fds
            peak_fds = max(peak_fds, process.num_fds())
            return len(file_sink_counts(tmp / "out")) >= count

        started = time.monotonic()
        while not arrived(n) and time.monotonic() - started < 300:
            time.sleep(0.2)
        first = time.monotonic() - started
        threads = process.num_threads()
        probe.paused.set()
        time.sleep(2)
        cpu0 = sum(process.cpu_times()[:2])
        time.sleep(args.idle_seconds)
        idle_cpu = 100 * (sum(process.cpu_times()[:2]) - cpu0) / args.idle_seconds
        probe.paused.clear()
        t0 = time.monotonic()
        for i in range(n):
            with open(logs / f"f{i:05d}.log", "a") as fh:
                fh.write(f"seq={n + i} second\n")
        while not arrived(2 * n) and time.monotonic() - t0 < 300:
            time.sleep(0.1)
        second = time.monotonic() - t0
        cpu1 = sum(process.cpu_times()[:2])
        written = 2 * n
        for _ in range(args.rate_seconds):
            tick = time.monotonic()
            for i in range(n):
                with open(logs / f"f{i:05d}.log", "a") as fh:
                    fh.write(f"seq={written + i} more\n")
            written += n
            arrived(0)
            time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
        while not arrived(written) and time.monotonic() - t0 < 600:
            time.sleep(0.1)
        rate_cpu_us = 1e6 * (sum(process.cpu_times()[:2]) - cpu1) / max(1, written - 2 * n)
        rss = process.memory_info().rss / 2**20
        probe.stop()
        proc.stop()
    print(f"{n} files, max_open_files {args.max_open_files}: all first lines shipped in "
          f"{first:.1f}s; one new line in each shipped in {second:.2f}s")
    print(f"one line/s in each for {args.rate_seconds}s: {rate_cpu_us:.0f} CPU µs/line "
          f"({n} lines/s)")
    print(f"threads {threads}, peak open fds {peak_fds}, RSS {rss:.0f} MiB, idle CPU "
          f"{idle_cpu:.2f}% of a core over {args.idle_seconds:.0f}s")
    print(f"slowest /health|/stats|/metrics answer {probe.slowest * 1000:.0f} ms "
          f"({probe.slowest_path}), {len(probe.failures)} failed")


if __name__ == "__main__":
    main()
