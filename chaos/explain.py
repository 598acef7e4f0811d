"""Why numbers were kept twice: each run of kept duplicates beside the crashes just before it.

Pure, from what the runner has at the end: per stream the ``(timestamp, number)`` of every
entry the receiver accepted (:meth:`chaos.receiver.TrackingReceiver.arrivals`) and the crashes
applied, as ``(unix time, actor)``. A number is kept twice when one stream holds it under two
timestamps (a line read again: the timestamp is the read time). Numbers kept twice whose
second copies were read within :data:`SAME_READ_S` of each other form one *run*; for each run
:func:`explain` gives the numbers, the read times of both copies (seconds after the first
crash) and the crashes in the :data:`BEFORE_S` before the second read: the crash that made a
source read again is among them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["BEFORE_S", "SAME_READ_S", "KeptRun", "explain", "kept_runs"]

SAME_READ_S = 0.5
BEFORE_S = 3.0
MAX_RUNS = 20


@dataclass(frozen=True, slots=True)
class KeptRun:
    first: int
    last: int
    count: int
    first_read_ns: int
    second_read_ns: int


def kept_runs(arrivals: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> list[KeptRun]:
    """Runs of numbers kept under two timestamps, by number."""
    twice: list[tuple[int, int, int]] = []  # (number, first ts, second ts)
    for timestamps, numbers in arrivals.values():
        stamps: dict[int, set[int]] = {}
        for ts, number in zip(timestamps, numbers, strict=True):
            stamps.setdefault(number, set()).add(ts)
        for number, seen in stamps.items():
            if len(seen) > 1:
                first, second = sorted(seen)[:2]
                twice.append((number, first, second))
    twice.sort()
    runs: list[KeptRun] = []
    for number, first, second in twice:
        last = runs[-1] if runs else None
        if last is not None and abs(second - last.second_read_ns) <= SAME_READ_S * 1e9:
            runs[-1] = KeptRun(last.first, number, last.count + 1, last.first_read_ns,
                               last.second_read_ns)
        else:
            runs.append(KeptRun(number, number, 1, first, second))
    return runs


def explain(arrivals: Mapping[str, tuple[Sequence[int], Sequence[int]]],
            crashes: Sequence[tuple[float, str]]) -> list[str]:
    """One line per run of kept duplicates (at most :data:`MAX_RUNS`, then a count)."""
    runs = kept_runs(arrivals)
    origin = crashes[0][0] if crashes else 0.0
    out = []
    for run in runs[:MAX_RUNS]:
        second_s = run.second_read_ns / 1e9
        near = [f"{at - origin:.2f}s {actor}" for at, actor in crashes
                if second_s - BEFORE_S <= at <= second_s]
        out.append(f"kept twice: {run.count} numbers in {run.first}..{run.last}, read at "
                   f"{run.first_read_ns / 1e9 - origin:.2f}s and {second_s - origin:.2f}s; "
                   f"crashes in the {BEFORE_S:.0f}s before: {', '.join(near) or 'none'}")
    if len(runs) > MAX_RUNS:
        out.append(f"... and {len(runs) - MAX_RUNS} more runs")
    return out
