"""Where a steady rate's CPU goes, per actor message: thread CPU by actor and message type.

    .venv/bin/python bench/handler_cpu.py [--seconds 10] [--disk-buffer]
                                          [--profile Actor.Message ...]

Runs ``bench/steady_rate.py``'s job (10,000 lines/s written every 10 ms into one file, logcap
into a Loki receiver) with logcap's ``LogcapActor.on_receive`` timed by the handling thread's
CPU (``bench/handler_probe/sitecustomize.py``, loaded through ``PYTHONPATH``; logcap itself is
unchanged), then prints per ``(actor, message)`` the messages handled, their CPU in all and per
message, and the share of a core over the run. ``--profile SinkActor.Deliver`` also prints the
top functions of those messages' handling (cProfile on thread time: it slows what it
profiles, so its run's totals are not the figures to quote). What this leaves out is the
threads outside actors (the inotify watcher, the timer, a sink's sender) and the waits
themselves.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--disk-buffer", action="store_true")
    parser.add_argument("--profile", nargs="*", default=[], metavar="ACTOR.MESSAGE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "handlers")
        env = {**os.environ, "LOGCAP_HANDLER_CPU": prefix,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE / "handler_probe"),
                                                           os.environ.get("PYTHONPATH")])),
               "LOGCAP_HANDLER_PROFILE": ",".join(args.profile)}
        command = [sys.executable, str(HERE / "steady_rate.py"), "--seconds", str(args.seconds),
                   "--write-every", "0.01", *(["--disk-buffer"] if args.disk_buffer else [])]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        print(run.stdout.splitlines()[0] if run.stdout else "(no output)")
        dumps = [p for p in Path(tmp).glob("handlers.*") if p.suffix != ".prof"]
        if not dumps:
            sys.exit("no handler totals were written (did logcap start?)")
        agent = max(dumps, key=lambda p: p.stat().st_size)  # logcap's, not the bench's own
        rows = [line.split("\t") for line in agent.read_text().splitlines()]
        seconds = args.seconds + 1  # steady_rate waits a second before writing
        print(f"{'actor':22s} {'message':20s} {'handled':>8s} {'CPU ms':>8s} {'µs each':>8s} "
              f"{'% core':>7s}")
        for actor, message, count, spent in rows:
            n, cpu = int(count), float(spent)
            if cpu < 0.0005:
                continue
            print(f"{actor:22s} {message:20s} {n:8d} {cpu * 1e3:8.1f} {cpu / n * 1e6:8.1f} "
                  f"{cpu / seconds * 100:7.2f}")
        profile = agent.with_name(agent.name + ".prof")
        if profile.exists():
            print(profile.read_text())


if __name__ == "__main__":
    main()
