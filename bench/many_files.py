"""Many files: threads and idle CPU of logcap following ``--files`` files.

    .venv/bin/python bench/many_files.py [--files 1000] [--idle-seconds 10]

Creates the files (a line in each), starts logcap with the file sink, waits until every
file's line arrived, then measures logcap's thread count and its CPU use over an idle period
(no writes), then appends one line to every file and measures how long until all arrive.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import LogcapProcess, file_sink_counts, make_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10)
    args = parser.parse_args()
    n = args.files
    with tempfile.TemporaryDirectory(prefix="logcap-many-") as name:
        tmp = Path(name)
        logs = tmp / "logs"
        logs.mkdir()
        for i in range(n):
            (logs / f"f{i:05d}.log").write_text(f"seq={i} first\n")
        config = make_config(tmp, [str(logs / "*.log")], logging={"level": "warning"})
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        process = psutil.Process(proc.proc.pid)
        started = time.monotonic()
        while len(file_sink_counts(tmp / "out")) < n and time.monotonic() - started < 120:
            time.sleep(0.2)
        first = time.monotonic() - started
        threads = process.num_threads()
        cpu0 = sum(process.cpu_times()[:2])
        time.sleep(args.idle_seconds)
        idle_cpu = 100 * (sum(process.cpu_times()[:2]) - cpu0) / args.idle_seconds
        t0 = time.monotonic()
        for i in range(n):
            with open(logs / f"f{i:05d}.log", "a") as fh:
                fh.write(f"seq={n + i} second\n")
        while len(file_sink_counts(tmp / "out")) < 2 * n and time.monotonic() - t0 < 120:
            time.sleep(0.1)
        second = time.monotonic() - t0
        fds = process.num_fds()
        rss = process.memory_info().rss / 2**20
        proc.stop()
    print(f"{n} files: all first lines shipped in {first:.1f}s; one new line in each shipped "
          f"in {second:.2f}s")
    print(f"threads {threads}, open fds {fds}, RSS {rss:.0f} MiB, idle CPU {idle_cpu:.1f}% of "
          f"a core over {args.idle_seconds:.0f}s")


if __name__ == "__main__":
    main()
