"""Chaos run: issue 12's reload acceptance, counted at two Loki test receivers.

    .venv/bin/python chaos/reload_storm.py [--reloads 50] [--invalid 5] [--rate 10000] [--buffer]

Numbered lines into two files at ``--rate`` lines/s in total while logcap is reloaded
``--reloads`` times (every third by SIGHUP, the others by ``POST /config/reload``), cycling
through adding the ``extra`` source, changing ``app``'s labels, changing the pipeline routed
to it, swapping the Loki URL between the two receivers and removing ``extra``; ``--invalid``
invalid configs (an unknown key, an unknown stage kind) are interleaved and must be refused
with their error and no effect (``tests/reload_scenario.py``). Prints one summary line:
reloads, invalid refused, lines, missing, duplicates kept (Loki's exact-duplicate rule, per
receiver), the final generation. Exit status 1 on any loss, kept duplicate or problem.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reload_scenario import run_reload_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=50)
    parser.add_argument("--invalid", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds between reloads (lines keep flowing)")
    parser.add_argument("--buffer", action="store_true", help="with the disk buffer on")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="logcap-reload-") as name:
        result = run_reload_scenario(Path(name), reloads=args.reloads, invalid=args.invalid,
                                     rate=args.rate, pause_s=args.pause, buffer=args.buffer)
    buffer = ", disk buffer on" if args.buffer else ""
    print(f"reload storm at {args.rate:.0f} lines/s{buffer}: {result.line()} "
          f"({time.monotonic() - started:.0f} s)")
    for problem in result.problems:
        print(f"  problem: {problem}")
    return 1 if result.problems or result.missing or result.duplicates_kept else 0


if __name__ == "__main__":
    sys.exit(main())
