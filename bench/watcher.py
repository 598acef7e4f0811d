"""What the inotify watcher thread costs while a writer appends small writes to a watched file.

    .venv/bin/python bench/watcher.py [--writes-per-second 200] [--seconds 10] [--files 1]

A :class:`~logcap.sources.files.watcher.DirWatcher` watches one directory (with the tailer's
``wanted`` predicate, as a file source runs it); a child process appends a 200-byte line to
each of ``--files`` files in it ``--writes-per-second`` times a second (at 10,000 lines/s
written 50 lines at a time, 200 writes a second). Printed: the watcher thread's CPU (% of one
core, µs per write) and the wake-ups it gave (``on_change`` calls per second).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logcap.sources.files.watcher import DirWatcher

WRITER = """
import sys, time
paths, rate, seconds = sys.argv[1].split(","), float(sys.argv[2]), float(sys.argv[3])
files = [open(p, "a", buffering=1) for p in paths]
line = "x" * 199 + "\\n"
start = time.monotonic()
n = 0
while time.monotonic() - start < seconds:
    for f in files:
        f.write(line)
    n += 1
    pause = start + n / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print(n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes-per-second", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--files", type=int, default=1)
    args = parser.parse_args()
    wakes = 0

    def on_change() -> None:
        nonlocal wakes
        wakes += 1

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"app{i}.log") for i in range(args.files)]
        for path in paths:
            Path(path).touch()
        watcher = DirWatcher(on_change, name="bench-watcher",
                             wanted=lambda p: p.endswith(".log"))
        watcher.watch([tmp])
        time.sleep(0.2)
        me = psutil.Process()
        native = {t.native_id: t.name for t in threading.enumerate()}
        tid = next(i for i, name in native.items() if name == "bench-watcher")

        def thread_cpu() -> float:
            return next(t.user_time + t.system_time for t in me.threads() if t.id == tid)

        before, wakes = thread_cpu(), 0
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", WRITER, ",".join(paths),
                              str(args.writes_per_second), str(args.seconds)],
                             capture_output=True, text=True, check=True).stdout
        elapsed = time.monotonic() - started
        used = thread_cpu() - before
        watcher.close()
    writes = int(out) * args.files
    print(f"{writes / elapsed:,.0f} writes/s to {args.files} file(s) for {elapsed:.1f} s: "
          f"watcher thread {used / elapsed * 100:.2f} % of a core, "
          f"{used / max(writes, 1) * 1e6:.1f} µs per write, {wakes / elapsed:.0f} wake-ups/s"
          + f" (read delay {watcher.delay_s * 1000:g} ms)")


if __name__ == "__main__":
    main()
