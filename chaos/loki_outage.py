"""Chaos run: Loki down for ``--outage`` seconds while lines flow at ``--rate``; disk buffer on.

    .venv/bin/python chaos/loki_outage.py [--outage 300] [--rate 10000] [--no-disk-buffer]

Prints peak RSS of logcap, the buffer's peak size, whether every line arrived, duplicates,
and whether each stream arrived in order (by timestamp and by sequence number).
Exit status 1 if a line is missing or a stream is out of order.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import SEQ, LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=300)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--no-disk-buffer", action="store_true")
    args = parser.parse_args()
    receiver = LokiReceiver().start()
    with tempfile.TemporaryDirectory(prefix="logcap-outage-") as name:
        tmp = Path(name)
        (tmp / "logs").mkdir()
        config = make_config(
            tmp, [str(tmp / "logs" / "*.log")],
            sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
            disk_buffer={"enabled": not args.no_disk_buffer, "directory": str(tmp / "buffer")},
            logging={"level": "warning"},
        )
        total = int(args.rate * (args.outage + 10))
        writer = NumberedWriter(tmp / "logs" / "app.log", line_bytes=200)
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        process = psutil.Process(proc.proc.pid)
        receiver.fail_unavailable(args.outage)
        thread = threading.Thread(target=writer.write_at_rate, args=(total, args.rate))
        thread.start()
        peak_rss = peak_buffer = 0
        deadline = time.monotonic() + args.outage + 600
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, process.memory_info().rss)
            size = sum(p.stat().st_size for p in (tmp / "buffer").glob("*.seg")) \
                if (tmp / "buffer").exists() else 0
            peak_buffer = max(peak_buffer, size)
            if not thread.is_alive() and receiver.line_count >= total:
                counts = receiver.received_seq_numbers()
                if all(counts.get(n) for n in range(total)):
                    break
            time.sleep(0.5)
        proc.stop()
    counts = receiver.received_seq_numbers()
    missing = sum(1 for n in range(total) if not counts.get(n))
    dups = sum(c - 1 for c in counts.values() if c > 1)
    in_order = True
    for entries in receiver.streams().values():
        stamps = [ts for ts, _ in entries]
        seqs = [int(m.group(1)) for _, line in entries if (m := SEQ.search(line))]
        if stamps != sorted(stamps) or seqs != sorted(seqs):
            in_order = False
    receiver.stop()
    print(f"outage {args.outage:.0f}s at {args.rate:.0f} lines/s, disk buffer "
          f"{not args.no_disk_buffer}: {total} lines, missing {missing}, duplicates {dups}, "
          f"in order per stream: {in_order}; peak RSS {peak_rss / 2**20:.0f} MiB, "
          f"peak buffer {peak_buffer / 2**20:.1f} MiB")
    return 0 if missing == 0 and in_order else 1


if __name__ == "__main__":
    sys.exit(main())
