"""Partial failure: delivery while a share of Loki pushes fails at random (issue 9).

    .venv/bin/python bench/partial_failure.py [--fault 60] [--rate 5000] [--errors 0.5]
                                              [--resets 0.0]

Lines are written at ``--rate`` lines/s for 5 s, then for ``--fault`` s while the Loki test
receiver answers 500 to a share ``--errors`` of the pushes and resets the connection of a
share ``--resets`` (nothing of those is kept), then 5 s more without faults. Prints lines/s
delivered during the fault (what the receiver kept, per second: the mean and the slowest
10-second window), how long delivery took to catch up after it, lost lines and duplicates
kept (Loki's exact-duplicate rule), and logcap's CPU µs per line. Exit status 1 if a line is
lost.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver

WINDOW_S = 10
BEFORE_S = AFTER_S = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", type=float, default=60)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--errors", type=float, default=0.5)
    parser.add_argument("--resets", type=float, default=0.0)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--keep-log", type=Path, help="copy logcap's log here at the end")
    args = parser.parse_args()
    receiver = LokiReceiver().start()
    with tempfile.TemporaryDirectory(prefix="logcap-partial-") as name:
        tmp = Path(name)
        (tmp / "logs").mkdir()
        config = make_config(
            tmp, [str(tmp / "logs" / "*.log")],
            sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
            dispatcher={"batch_size": 1000, "batch_timeout": "200ms",
                        "retry_base_delay": "500ms", "retry_max_delay": "30s"},
            logging={"level": args.log_level},
        )
        total = int(args.rate * (BEFORE_S + args.fault + AFTER_S))
        writer = NumberedWriter(tmp / "logs" / "app.log", line_bytes=200)
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        process = psutil.Process(proc.proc.pid)
        cpu0 = sum(process.cpu_times()[:2])
        thread = threading.Thread(target=writer.write_at_rate, args=(total, args.rate))
        start = time.monotonic()
        thread.start()
        time.sleep(BEFORE_S)
        receiver.fail_randomly(args.errors, args.fault, reset_share=args.resets, seed=1)
        fault_start = time.monotonic()
        samples = [(fault_start, receiver.line_count)]
        while time.monotonic() - fault_start < args.fault:
            time.sleep(1)
            samples.append((time.monotonic(), receiver.line_count))
        fault_end = time.monotonic()
        deadline = fault_end + 600
        while time.monotonic() < deadline:
            if not thread.is_alive() and receiver.line_count >= total:
                counts = receiver.received_seq_numbers(dedupe=True)
                if all(counts.get(n) for n in range(total)):
                    break
            time.sleep(0.2)
        caught_up = time.monotonic() - fault_end
        thread.join()
        cpu = sum(process.cpu_times()[:2]) - cpu0
        stats = receiver.stats()
        proc.stop()
        if args.keep_log:
            shutil.copy(proc.log_path, args.keep_log)
    receiver.stop()
    counts = receiver.received_seq_numbers(dedupe=True)
    lost = sum(1 for n in range(total) if not counts.get(n))
    dups = sum(c - 1 for c in counts.values() if c > 1)
    during = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    windows = [(samples[i + WINDOW_S][1] - samples[i][1])
               / (samples[i + WINDOW_S][0] - samples[i][0])
               for i in range(len(samples) - WINDOW_S)]
    print(f"{args.errors:.0%} random 500s and {args.resets:.0%} connection resets for "
          f"{args.fault:.0f} s at {args.rate:.0f} lines/s written ({total} lines)")
    print(f"delivered during the fault: {during:.0f} lines/s on average, slowest "
          f"{WINDOW_S} s window {min(windows, default=during):.0f} lines/s")
    print(f"caught up {max(0.0, caught_up - AFTER_S):.1f} s after the writes ended "
          f"(in {caught_up:.1f} s after the fault); {lost} lost, {dups} duplicates kept; "
          f"answers {stats['by_status']}")
    print(f"logcap CPU {1e6 * cpu / total:.0f} µs/line over {time.monotonic() - start:.0f} s")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
