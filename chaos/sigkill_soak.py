"""Chaos run: SIGKILL logcap at random moments while lines are written; count at a Loki receiver.

    .venv/bin/python chaos/sigkill_soak.py [--kills 20] [--rate 20000] [--lines 400000]
        [--disk-buffer] [--slow-sink-ms 20]

Writes numbered lines to a file at ``--rate`` lines/s, kills logcap ``--kills`` times at random
moments (restarting it each time), then waits until every line arrived and prints lines,
missing, duplicates (raw and after Loki's exact-duplicate rule) and the duplicate rate.
Exit status 1 if any line is missing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--slow-sink-ms", type=float, default=0.0)
    parser.add_argument("--disk-buffer", action="store_true")
    args = parser.parse_args()
    receiver = LokiReceiver(keep_lines=False).start()
    if args.slow_sink_ms:
        receiver.set_latency(args.slow_sink_ms / 1000)
    with tempfile.TemporaryDirectory(prefix="logcap-chaos-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "logs").mkdir()
        extra = {"disk_buffer": {"enabled": True, "directory": str(tmp / "buffer")}} \
            if args.disk_buffer else {}
        config = make_config(
            tmp, [str(tmp / "logs" / "*.log")],
            sinks={"file": {"enabled": False},
                   "loki": {"enabled": True, "url": receiver.url}},
            **extra,
        )
        writer = NumberedWriter(tmp / "logs" / "app.log", line_bytes=200)
        stop = threading.Event()
        thread = threading.Thread(target=writer.write_at_rate,
                                  args=(args.lines, args.rate, stop))
        proc = LogcapProcess(config).start()
        thread.start()
        duration = args.lines / args.rate
        rng = random.Random()
        moments = sorted(rng.uniform(0.5, duration) for _ in range(args.kills))
        started = time.monotonic()
        for moment in moments:
            delay = moment - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            proc.kill()
            proc = LogcapProcess(config).start()
        thread.join()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = receiver.received_seq_numbers()
            if len(counts) >= args.lines:
                break
            time.sleep(0.5)
        proc.stop()
    counts = receiver.received_seq_numbers()
    dedup = receiver.received_seq_numbers(dedupe=True)
    receiver.stop()
    missing = [n for n in range(args.lines) if not counts.get(n)]
    dups = sum(c - 1 for c in counts.values() if c > 1)
    dups_after_loki = sum(c - 1 for c in dedup.values() if c > 1)
    print(f"lines {args.lines}  kills {args.kills}  rate {args.rate:.0f}/s  "
          f"disk_buffer {args.disk_buffer}")
    print(f"missing {len(missing)}  duplicates {dups} ({dups / args.lines:.4%})  "
          f"after Loki's exact-duplicate rule {dups_after_loki} "
          f"({dups_after_loki / args.lines:.4%})")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
