"""Snappy block compression of a Loki push body: the compiled compressor against cramjam's.

    .venv/bin/python bench/snappy.py [--lines 4600] [--iterations 50] [--repeat 5]
        [--only compiled|cramjam] [--held-build PATH]

The payload is an encoded push request of ``--lines`` realistic 200-byte log lines
(``tests.test_snappy.log_payload``; 4,600 lines are about 1 MiB). Prints, per compressor, the
compressed size (ratio) and the CPU time per MiB of payload, best of ``--repeat`` rounds of
``--iterations`` calls.

``--only NAME`` runs only that compressor's loop (no timing table), for instruction counts::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python bench/snappy.py --only compiled --iterations 0     # the baseline
    ... --only compiled --iterations 20    # (difference / 20 / MiB) = instructions per MiB

``--held-build PATH``: a build of ``_snappy.c`` that never releases the GIL, to compare with
(``gcc -O2 -shared -fPIC -DRELEASE_GIL_BYTES=0x7fffffffffffffffLL -I<python include>
logcap/sinks/loki/_snappy.c -o DIR/_snappy.cpython-311-x86_64-linux-gnu.so``): a Python thread
counts in a loop while another compresses; printed, for each compressor, in how many calls the
counter moved and by how much (0 in every call: the call held the GIL throughout).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cramjam

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logcap.sinks.loki import _snappy
from tests.test_snappy import log_payload, steps_during_calls

MIB = 1 << 20


def compressors() -> dict[str, Callable[[bytes], bytes]]:
    return {"compiled": _snappy.compress, "cramjam": cramjam.snappy.compress_raw}


def cpu_per_call(fn: Callable[[bytes], object], data: bytes, iterations: int,
                 repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(iterations):
            fn(data)
        best = min(best, (time.process_time() - start) / iterations)
    return best


def load_build(path: str) -> ModuleType:
    """A build of ``_snappy.c`` at ``path`` (any file name ending in the extension suffix)."""
    loader = importlib.machinery.ExtensionFileLoader("logcap.sinks.loki._snappy", path)
    spec = importlib.util.spec_from_file_location("logcap.sinks.loki._snappy", path,
                                                  loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=4600)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=sorted(compressors()))
    ap.add_argument("--held-build")
    args = ap.parse_args()
    data = log_payload(args.lines)
    if args.only:
        fn = compressors()[args.only]
        for _ in range(args.iterations):
            fn(data)
        return
    mib = len(data) / MIB
    print(f"payload: {args.lines} lines, {len(data)} bytes ({mib:.2f} MiB)")
    for name, fn in compressors().items():
        size = len(fn(data))
        cpu = cpu_per_call(fn, data, args.iterations, args.repeat)
        print(f"{name:9s} {size:8d} bytes (ratio {len(data) / size:.2f})  "
              f"{cpu / mib * 1e6:7.0f} µs CPU/MiB")
    if args.held_build:
        held = load_build(args.held_build)
        assert held.compress(data) == _snappy.compress(data)
        for name, fn in (("compiled, GIL released", _snappy.compress),
                         ("compiled, GIL held", held.compress),
                         ("cramjam", cramjam.snappy.compress_raw)):
            during = steps_during_calls(fn, data, 200)
            ran = sum(1 for n in during if n) / len(during)
            print(f"while {name} compresses: another Python thread ran during {ran:4.0%} "
                  f"of 200 calls, {statistics.mean(during):8.0f} loop steps per call")

if __name__ == "__main__":
    main()
