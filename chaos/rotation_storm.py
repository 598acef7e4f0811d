"""Chaos run: rotation storms of issue 9 at full length, counted at the Loki test receiver.

    .venv/bin/python chaos/rotation_storm.py [--seconds 30] [--rate 5000]

Runs rename rotation every 100 ms across 5 files with include ``*.log`` and again ``*.log*``,
then delete + recreate of ``app.log`` 20 times with a 0.2 s pause and with none (inode reuse
forced: logcap closes a deleted file after a short ``rotate_wait``, the file system hands its
inode number to the next file). Prints lines, lost, duplicates kept (after Loki's
exact-duplicate rule), the most descriptors logcap held, and the inode reuses seen.
Exit status 1 if a line is lost or a duplicate kept.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.storms import StormResult, recreate_storm, rename_storm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=5000)
    args = parser.parse_args()
    failed = False
    runs: list[tuple[str, StormResult]] = []
    for include in ("*.log", "*.log*"):
        with tempfile.TemporaryDirectory(prefix="logcap-storm-") as name:
            result = rename_storm(Path(name), include, args.seconds, rate=args.rate,
                                  deadline_s=120)
            runs.append((f"rename every 100 ms, 5 files, include {include}", result))
    for pause in (0.2, 0.0):
        with tempfile.TemporaryDirectory(prefix="logcap-storm-") as name:
            result = recreate_storm(Path(name), pause)
            runs.append((f"delete + recreate x20, pause {pause} s", result))
    for what, result in runs:
        print(f"{what}: {result.summary()}")
        failed |= bool(result.missing) or result.duplicates_kept > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
