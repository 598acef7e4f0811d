"""When pushes reached a Loki receiver, and how long their lines took from write to arrival.

The benchmarks' convention: a line may carry its write time as `` t=<ns since the epoch>`` (the
first `` t=`` in the line, up to the next space or the line's end; not an integer: no time).
:class:`ArrivalLog` keeps, for every accepted push, its arrival (monotonic clock, which Linux
shares between processes) with the cumulative lines and numbered lines accepted so far, and the
delay from write to arrival of every line carrying a write time. The receivers call
:meth:`ArrivalLog.add` once per accepted push.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["WRITE_TIME_MARK", "Arrival", "ArrivalLog", "write_times_ns"]

WRITE_TIME_MARK = " t="

_WRITE_TIME = re.compile(r" t=([^ \n]*)[^\n]*")
"""The first `` t=`` value of a line; the rest of the line is consumed so that a second one on
the same line is not taken (a search over lines joined by newlines)."""
_LINE_WRITE_TIME = re.compile(r" t=([^ ]*)")


def write_times_ns(lines: Sequence[str]) -> list[int]:
    """The write times of the lines carrying one, in order; a value that is not an integer
    (``int()`` refuses it) is left out."""
    joined = "\n".join(lines)
    if WRITE_TIME_MARK not in joined:
        return []
    if joined.count("\n") == len(lines) - 1:  # no line holds a newline: one search for all
        values = _WRITE_TIME.findall(joined)
    else:
        values = [m.group(1) for m in map(_LINE_WRITE_TIME.search, lines) if m]
    try:
        return [int(v) for v in values]
    except ValueError:
        return [n for n in map(_int_or_none, values) if n is not None]


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Arrival:
    """One accepted push: when it arrived and the totals after it."""

    monotonic: float
    lines: int
    """Lines accepted so far, this push included."""
    numbered: int
    """Numbered lines (``seq=<int>`` or a leading integer) accepted so far."""
    delays: int
    """Write-to-arrival delays recorded so far (the length of ``latencies_ms`` then)."""


@dataclass
class ArrivalLog:
    """Arrivals and write-to-arrival delays; not thread-safe (the receiver's lock guards it)."""

    arrivals: list[Arrival] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, lines: Sequence[str], total_lines: int, total_numbered: int) -> None:
        """Record a push whose accepted ``lines`` just arrived, with the receiver's totals."""
        now_ns = time.time_ns()
        self.latencies_ms.extend([(now_ns - w) / 1e6 for w in write_times_ns(lines)])
        self.arrivals.append(Arrival(time.monotonic(), total_lines, total_numbered,
                                     len(self.latencies_ms)))

    @property
    def last_arrival(self) -> float:
        """Monotonic time of the last accepted push (0.0 before any)."""
        return self.arrivals[-1].monotonic if self.arrivals else 0.0

    def first_reaching(self, numbered: int) -> Arrival | None:
        """The first arrival after which at least ``numbered`` numbered lines had arrived."""
        return next((a for a in self.arrivals if a.numbered >= numbered), None)
