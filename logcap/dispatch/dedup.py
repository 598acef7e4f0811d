"""Deduplication at a sink: a batch part whose bytes this sink already delivered is not sent again.

Within one run of logcap, lines can reach a sink twice when an acknowledgement is lost: a
shard that restarts makes its sources re-read what it held, and a restarted disk buffer resends
what a sink had not confirmed. Each part of a batch names what it came from (its
:class:`~logcap.origin.ReadToken`: source, kind, stream identity — for a file ``(dev, ino,
fingerprint)`` — and ``[start, end)``), so the sink remembers, for ``window_s`` seconds and at
most ``max_entries`` streams, the ranges it delivered, keyed by ``(source, kind, stream)``, and
drops a part wholly inside them. The part counts as delivered: its bytes are at the sink.

Only exact coverage is dropped (never a part that is partly new), and only parts whose token
has a stream identity (a DLQ resend has none); nothing about the line text is compared, so two
equal log lines are never merged. Memory is bounded: ranges older than the window are
forgotten, and past ``max_entries`` streams the least recently used one is. After a crash of
the whole process the memory is gone: those resends carry their original timestamps, and
Loki's exact-duplicate check absorbs them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from logcap.messages import Entries
from logcap.origin import StreamId

__all__ = ["DeliveredRanges"]

StreamKey = tuple[str, str, StreamId]
"""``(source, kind, stream identity)`` of a token."""


class DeliveredRanges:
    def __init__(self, window_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.clock = clock
        self._ranges: OrderedDict[StreamKey, list[tuple[int, int, float]]] = OrderedDict()

    @staticmethod
    def _key(part: Entries) -> StreamKey | None:
        token = part.token
        return None if token.stream is None else (token.source, token.kind, token.stream)

    def delivered(self, part: Entries) -> bool:
        """True if this sink already delivered every byte of ``part`` within the window."""
        key = self._key(part)
        spans = self._ranges.get(key) if key is not None else None
        if not spans:
            return False
        horizon = self.clock() - self.window_s
        start, end = part.token.start, part.token.end
        return any(s <= start and end <= e and at >= horizon for s, e, at in spans)

    def add(self, part: Entries) -> None:
        """Remember that ``part`` was delivered (merging with touching ranges)."""
        key = self._key(part)
        if key is None:
            return
        now = self.clock()
        horizon = now - self.window_s
        start, end = part.token.start, part.token.end
        kept = []
        for s, e, at in self._ranges.pop(key, []):
            if at < horizon:
                continue
            if s <= end and start <= e:  # touching or overlapping: merge
                start, end = min(s, start), max(e, end)
            else:
                kept.append((s, e, at))
        kept.append((start, end, now))
        self._ranges[key] = kept
        while len(self._ranges) > self.max_entries:
            self._ranges.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ranges)
