"""Cost of committing a file position at an ack: the positions store, before and after the
positions log.

    python bench/positions_commit.py [--acks 20000] [--files 20] [--dir /var/tmp]

Three ways, each over ``--acks`` commits spread round-robin over ``--files`` positions, in a
fresh directory under ``--dir`` (the file system matters: an fsync on tmpfs is free):

* ``snapshot per ack (before)``: no log; each commit flushed at once (the atomic replace with
  fsync), the only way the store had to make a commit survive a ``kill -9``;
* ``memory only (before, default)``: no log; commits in memory, a snapshot every 5 s; a
  ``kill -9`` loses every commit since the last snapshot;
* ``log per ack (after)``: each commit appended to ``positions.log`` (survives a ``kill -9``),
  the snapshot every 5 s empties the log.

Prints wall and CPU microseconds per ack for each. Then the timestamp journal's part of a
read (``logcap/sources/files/timestamp_journal.py``): microseconds to record one read sent,
and to give a re-read of 1,000 lines (in other chunks) its first timestamps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from logcap.sources.files.timestamp_journal import TimestampJournal
from logcap.state.positions import FilePosition, PositionsStore

FP = "1024:" + "ab" * 8


def _position(index: int, offset: int) -> FilePosition:
    return FilePosition(path=f"/var/log/app-{index}.log", dev=1, ino=100 + index, fingerprint=FP,
                        fingerprint_len=1024, offset=offset, prefix_hash="", size_at_commit=offset,
                        updated_at=0.0)


def run(directory: str, acks: int, files: int, *, log: bool, flush_each: bool) -> tuple[float,
                                                                                            float]:
    store = PositionsStore(directory, flush_interval_s=5.0, max_memory_buffer=10**9, log=log)
    store.load()
    for index in range(files):
        store.commit_file(_position(index, 0))
    store.flush()
    wall, cpu = time.perf_counter(), time.process_time()
    for n in range(acks):
        store.commit_file(_position(n % files, 1000 * (n + 1)))
        if flush_each or store.should_flush():
            store.flush()
    store.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    store.close()
    return wall / acks * 1e6, cpu / acks * 1e6


def journal_costs(directory: str, reads: int) -> tuple[float, float]:
    """µs per read recorded (the reads of 1,000 lines each, committed as they go, as in a
    run), and µs per line replayed (a re-read in chunks of 1,500 lines)."""
    journal = TimestampJournal(os.path.join(directory, "timestamps-bench.journal"))
    journal.load()
    start = time.process_time()
    for n in range(reads):
        journal.stamp(1, 2, FP, n * 100_000, (n + 1) * 100_000, 1000, n * 10**9)
        if n >= 32:  # a window of 32 reads in flight
            journal.commit((1, 2), (n - 32) * 100_000)
    record = (time.process_time() - start) / reads * 1e6
    first = max(0, reads - 32) * 100_000
    start = time.process_time()
    offset, lines = first, 0
    while offset < reads * 100_000:
        stamps = journal.stamp(1, 2, FP, offset, offset + 150_000, 1500, 0)
        lines += len(stamps or ())
        offset += 150_000
    replay = (time.process_time() - start) / max(1, lines) * 1e6
    journal.close()
    return record, replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acks", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--dir", default="/var/tmp")
    args = parser.parse_args()
    print(f"{args.acks} acks over {args.files} files in {args.dir}")
    for name, log, flush_each, acks in (
        ("snapshot per ack (before)", False, True, max(1, args.acks // 20)),
        ("memory only (before, default)", False, False, args.acks),
        ("log per ack (after)", True, False, args.acks),
    ):
        with tempfile.TemporaryDirectory(dir=args.dir) as directory:
            wall, cpu = run(os.path.join(directory, "positions"), acks, args.files, log=log,
                            flush_each=flush_each)
        print(f"  {name:32s} {wall:9.1f} us/ack wall {cpu:8.1f} us/ack CPU  ({acks} acks)")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        record, replay = journal_costs(directory, 20_000)
    print(f"timestamp journal: {record:.1f} us CPU per read recorded (1,000 lines each), "
          f"{replay:.3f} us CPU per line replayed")


if __name__ == "__main__":
    main()
