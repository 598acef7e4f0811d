"""The Loki test receiver (``tests/loki_receiver.py``) keeping, per stream, the timestamp and
number of every entry it accepts, compactly (two ``array('q')`` per stream: 16 bytes an entry,
so a 10-minute run at 10k lines/s fits), for :func:`chaos.judge.judge`. Lines are not kept."""

from __future__ import annotations

from array import array
from typing import Any

from tests.loki_receiver import DecodedEntry, LokiReceiver, seq_number

__all__ = ["TrackingReceiver"]


class TrackingReceiver(LokiReceiver):
    def __init__(self, **kw: Any) -> None:
        super().__init__(keep_lines=False, **kw)

    def _reset_unlocked(self) -> None:
        super()._reset_unlocked()
        self._arrivals: dict[str, tuple[array[int], array[int]]] = {}

    def _record(self, accepted: list[tuple[str, list[DecodedEntry]]]) -> int:
        for key, entries in accepted:
            stamps, seqs = self._arrivals.setdefault(key, (array("q"), array("q")))
            for entry in entries:
                seq = seq_number(entry.line)
                if seq is not None:
                    stamps.append(entry.ts_ns)
                    seqs.append(seq)
        return super()._record(accepted)

    def arrivals(self) -> dict[str, tuple[array[int], array[int]]]:
        """Per stream, copies of the (timestamps, numbers) accepted, in arrival order."""
        with self._lock:
            return {key: (array("q", s), array("q", q)) for key, (s, q) in self._arrivals.items()}

    def distinct_numbers(self) -> int:
        """How many distinct numbers arrived (the delivery wait's progress)."""
        with self._lock:
            return len(self._seq_raw)
