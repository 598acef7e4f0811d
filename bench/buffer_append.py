"""Benchmark of the disk buffer's write path: append + group-commit fsync.

Appends ``--batches`` batches (default 300) of ``--lines`` lines (default 1,000) of about
``--line-bytes`` bytes (default 200; OpenSIPS- and MariaDB-like lines with varying call ids,
addresses and numbers, so compression is realistic, not a best case) to a fresh
:class:`~logcap.state.buffer.SegmentStore`, calling ``sync()`` (fsync) every ``--group-commit``
appends (default 10) and at the end. Reports lines/s, MB/s of raw line bytes, the CPU per line
of the appends, the compression ratio (raw line bytes / bytes on disk after them), fsyncs and
segments. Then the CPU per line of
:meth:`SegmentStore.read` for the sink: once over everything (a backlog: read back from the
files, verified, decompressed, decoded), and once more appending the batches again and reading
after each group commit (a steady pace: the batches just appended, held in memory).
``--encrypt`` adds AES-256-GCM; ``--level`` sets the zstd level (default: the buffer's);
``--max-file-size`` the segment size in MiB (default 64; smaller values include the cost of
sealing and rotating); ``--dir`` picks the file system (default: a temporary directory under
the current one, removed afterwards).

    python bench/buffer_append.py [--batches 300] [--lines 1000] [--line-bytes 200]
                                  [--group-commit 10] [--level 1] [--encrypt]
                                  [--max-file-size 64] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

from logcap.messages import Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken
from logcap.state.buffer import Cipher, SegmentStore
from logcap.state.buffer.codec import DEFAULT_COMPRESSION_LEVEL

_TEMPLATES = (
    "opensips[{pid}]: INFO:dialog:dlg_onreply: Call-ID {call}@10.{a}.{b}.{c} state 4 -> 5 "
    "from sip:{user}@example.net to sip:+4930{num}@carrier.example;user=phone ",
    "opensips[{pid}]: NOTICE:acc:acc_log_request: ACC: transaction answered: "
    "timestamp={ts};method=INVITE;from_tag={tag};to_tag={tag2};call_id={call};code=200 ",
    "{date} {thread} [Warning] Aborted connection {num} to db: 'voip' user: 'opensips' "
    "host: '10.{a}.{b}.{c}' (Got an error reading communication packets) ",
    "opensips[{pid}]: ERROR:tm:t_forward_nonack: failure to add branches for Call-ID "
    "{call} (ruri sip:{user}@10.{a}.{b}.{c}:5060) cseq {num} INVITE ",
)


def make_line(rng: random.Random, size: int) -> str:
    line = rng.choice(_TEMPLATES).format(
        pid=rng.randrange(1000, 40000), call=f"{rng.getrandbits(64):016x}",
        a=rng.randrange(256), b=rng.randrange(256), c=rng.randrange(256),
        user=f"u{rng.randrange(10**6)}", num=rng.randrange(10**8), ts=rng.randrange(10**10),
        tag=f"{rng.getrandbits(32):08x}", tag2=f"{rng.getrandbits(32):08x}",
        date="2024-05-01 12:00:00", thread=rng.randrange(10**5),
    )
    while len(line) < size:
        line += f"x-{rng.choice(('branch', 'via', 'ua', 'rtp'))}={rng.getrandbits(40):x} "
    return line[:size]


def make_batches(count: int, lines: int, line_bytes: int) -> list[list[Entries]]:
    rng = random.Random(7)
    base_ns = 1_700_000_000_000_000_000
    pool = [make_line(rng, line_bytes) for _ in range(4 * lines)]
    batches = []
    for n in range(count):
        start = rng.randrange(3 * lines)
        token = ReadToken("opensips", FILE_KIND, FileStream(8, 1234, ""), n * lines * line_bytes,
                          (n + 1) * lines * line_bytes, "g1")
        batches.append([Entries("opensips", "/var/log/opensips.log", (("job", "opensips"),),
                                pool[start:start + lines], base_ns + n * lines, token,
                                lines * line_bytes)])
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--line-bytes", type=int, default=200)
    parser.add_argument("--group-commit", type=int, default=10)
    parser.add_argument("--level", type=int, default=DEFAULT_COMPRESSION_LEVEL)
    parser.add_argument("--encrypt", action="store_true")
    parser.add_argument("--max-file-size", type=int, default=64, help="MiB")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    batches = make_batches(args.batches, args.lines, args.line_bytes)
    raw_bytes = sum(len(line.encode()) for batch in batches for e in batch for line in e.lines)
    directory = tempfile.mkdtemp(prefix="logcap-bench-", dir=args.dir or os.getcwd())
    cipher = Cipher(os.urandom(32)) if args.encrypt else None
    store = SegmentStore(directory, ["loki"], max_file_size=args.max_file_size * 1024**2,
                         max_total_size=64 * 1024**3,
                         compression_level=args.level, cipher=cipher)
    store.open()
    fsyncs = 0
    try:
        started, append_cpu = time.perf_counter(), time.process_time()
        for n, batch in enumerate(batches, 1):
            store.append(batch)
            if n % args.group_commit == 0:
                store.sync()
                fsyncs += 1
        store.sync()
        fsyncs += 1
        elapsed = time.perf_counter() - started
        append_cpu = time.process_time() - append_cpu
        stored = store.total_bytes  # before the batches are appended again below
        cpu = time.process_time()
        read_lines = 0
        while batch_read := store.read("loki", 4):
            read_lines += sum(len(e.lines) for _, b in batch_read for e in b)
        read_cpu = time.process_time() - cpu
        # at a steady pace: each group of appends is read by the sink right after its commit
        steady_cpu, steady_lines = 0.0, 0
        for n, batch in enumerate(batches, 1):
            store.append(batch)
            if n % args.group_commit == 0 or n == len(batches):
                store.sync()
                cpu = time.process_time()
                while batch_read := store.read("loki", 4):
                    steady_lines += sum(len(e.lines) for _, b in batch_read for e in b)
                steady_cpu += time.process_time() - cpu
        segments = len(store.segments())
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)

    lines = args.batches * args.lines
    print(f"batches {args.batches} x {args.lines} lines x ~{args.line_bytes} B, "
          f"group commit every {args.group_commit}, zstd level {args.level}, "
          f"{'AES-256-GCM' if args.encrypt else 'no encryption'}")
    print(f"  {lines / elapsed:,.0f} lines/s   {raw_bytes / elapsed / 1e6:,.1f} MB/s raw   "
          f"{elapsed / args.batches * 1e3:.2f} ms/batch   append CPU "
          f"{append_cpu / lines * 1e6:.2f} µs per line (fsyncs included)")
    print(f"  compression ratio {raw_bytes / stored:.2f} ({raw_bytes / 1e6:.1f} MB -> "
          f"{stored / 1e6:.1f} MB), {fsyncs} fsyncs, {segments} segments")
    print(f"  read for a sink after all appends (a backlog, from the files): {read_lines:,} "
          f"lines, {read_cpu / max(read_lines, 1) * 1e6:.2f} µs CPU per line")
    print(f"  read for a sink after each group commit (a steady pace): {steady_lines:,} lines, "
          f"{steady_cpu / max(steady_lines, 1) * 1e6:.2f} µs CPU per line")


if __name__ == "__main__":
    main()
