"""Conservation judged from what the Loki receiver accepted: pure, tested without processes.

Input: the number of lines written (numbered ``0 .. total-1``) and, per stream, the
``(timestamp, seq)`` of every entry accepted, in arrival order. Loki stores an entry once per
(stream, timestamp, line); the writer's lines are determined by their number, so
(stream, timestamp, seq) is that identity here.

- **missing**: numbers written that no stream holds;
- **duplicates kept**: copies beyond the first of a number, after Loki's rule (what a query
  returns twice); **duplicates sent** counts every copy received, before the rule;
- **order breaks**: per stream, the first copy of each number in timestamp order (what a
  query returns) must come after every number before it: each number whose first copy sorts
  before a smaller number's is a break.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chaos.scenarios import Bounds

__all__ = ["Conservation", "judge", "violations"]

MAX_LISTED = 10


@dataclass(frozen=True, slots=True)
class Conservation:
    written: int
    received: int
    missing: int
    first_missing: tuple[int, ...]
    duplicates_sent: int
    duplicates_kept: int
    duplicate_runs: tuple[tuple[int, int], ...]
    """The first runs of consecutive numbers kept twice, as ``(first, last)``."""
    order_breaks: int
    unexpected: int
    """Entries whose number was never written (a bug in the run itself)."""
    streams: int

    @property
    def duplicate_share(self) -> float:
        return self.duplicates_kept / self.written if self.written else 0.0


def judge(written: int,
          arrivals: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> Conservation:
    """``arrivals``: per stream, parallel sequences of timestamps and numbers."""
    kept_copies = bytearray(written)  # 1: a copy of that number is kept
    extra_kept = 0
    received = 0
    sent_copies = bytearray(written)  # 1: a copy of that number was received
    extra_sent = 0
    unexpected = 0
    breaks = 0
    kept_twice: list[int] = []
    for timestamps, seqs in arrivals.values():
        received += len(seqs)
        for seq in seqs:
            if 0 <= seq < written:
                if sent_copies[seq]:
                    extra_sent += 1
                sent_copies[seq] = 1
        entries = sorted(set(zip(timestamps, seqs, strict=True)))
        seen: set[int] = set()
        highest = -1
        for _, seq in entries:
            if not 0 <= seq < written:
                unexpected += 1
                continue
            if kept_copies[seq]:
                extra_kept += 1
                kept_twice.append(seq)
            else:
                kept_copies[seq] = 1
            if seq in seen:
                continue
            seen.add(seq)
            if seq < highest:
                breaks += 1
            else:
                highest = seq
    missing = [n for n in range(written) if not kept_copies[n]] if written else []
    return Conservation(written=written, received=received, missing=len(missing),
                        first_missing=tuple(missing[:MAX_LISTED]), duplicates_sent=extra_sent,
                        duplicates_kept=extra_kept, duplicate_runs=_runs(kept_twice),
                        order_breaks=breaks, unexpected=unexpected,
                        streams=len(arrivals))


def _runs(numbers: list[int]) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        elif len(runs) < MAX_LISTED:
            runs.append((n, n))
        else:
            break
    return tuple(runs)


def violations(result: Conservation, bounds: Bounds) -> list[str]:
    """The conservation bounds ``result`` breaks, each as a short reason."""
    out = []
    if result.missing > bounds.max_missing:
        out.append(f"{result.missing} lines missing (first {list(result.first_missing)})")
    if result.duplicate_share > bounds.max_duplicate_share:
        out.append(f"{result.duplicates_kept} duplicates kept ({result.duplicate_share:.5%} > "
                   f"{bounds.max_duplicate_share:.5%}; first runs {list(result.duplicate_runs)})")
    if bounds.order_kept and result.order_breaks:
        out.append(f"{result.order_breaks} lines out of order")
    if result.unexpected:
        out.append(f"{result.unexpected} entries with numbers never written")
    return out
