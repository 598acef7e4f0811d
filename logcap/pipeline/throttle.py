"""Holding processed reads of rate-limited streams: ``rate_limit`` in ``mode: block``.

A :class:`Throttle` sits between the pipeline and the batcher of a shard. Each read offered (a
processed :class:`~logcap.messages.Entries`) belongs to a stream (the shard uses ``(source,
stream)``) and may carry the :class:`~logcap.pipeline.stages.filter.Demand` of a block-mode
``rate_limit`` stage: one token of the stream's bucket per line it gives out. A read goes on
at once, whole, when its stream holds nothing and the bucket has its tokens; otherwise it
waits at the end of its stream's queue, and the queue is let out in order, as the bucket
refills (:meth:`Throttle.release`, at the time :meth:`Throttle.next_release_s` gives): the
first lines of the first read as soon as the bucket has enough for a step (``rate`` /
:data:`STEPS_PER_SECOND` lines, at least one, at most ``burst``), and so on. A read without
a demand (a later read of a stream whose routing changed) goes as soon as it is first in its
queue. Nothing is dropped, and other streams are not held.

A read let out in pieces (:func:`split_read`) stays one read for acknowledgement: every
piece but the last has no ``ack_to`` and a token without a stream identity (so no sink
takes it for a range already delivered, and the disk buffer records no range for it); the
last piece keeps the read's token and ``ack_to``. Batches are settled in order, so the read
is acknowledged, and its position committed, only once all its lines were delivered. A shard
that stops or crashes loses what it holds from memory only: it was not acknowledged, so it is
read again (pieces already delivered arrive twice, like any re-read).

What bounds it: held reads are not acknowledged, so their source's read window (at most 32
reads per file, 16 MiB per source) fills and the source stops reading that file; the file is
the buffer, as when a sink is down.

Plain code with the time passed in; the shard (``logcap/actors/shard.py``) runs it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from logcap.messages import Entries
from logcap.pipeline.stages.filter import Demand

__all__ = ["STEPS_PER_SECOND", "Released", "Throttle", "split_read"]

STEPS_PER_SECOND = 10
"""A held stream is let out in about this many pieces per second."""


@dataclass(frozen=True, slots=True)
class Released:
    """Entries let through: ``held_s`` how long they were held (0: they were not),
    ``demand`` the demand they were held for (None: none)."""

    entries: Entries
    held_s: float
    demand: Demand | None


def split_read(entries: Entries, lines: int) -> tuple[Entries, Entries]:
    """The first ``lines`` lines of a read as a piece (no ``ack_to``, a token without a
    stream identity; module docstring), and the rest (the read's token and ``ack_to``).
    Per-line fields are split with their lines, timestamps kept."""
    head: dict[str, object] = {"lines": entries.lines[:lines], "ack_to": None,
                               "token": dataclasses.replace(entries.token, stream=None)}
    rest: dict[str, object] = {"lines": entries.lines[lines:], "ts_ns": entries.ts_ns + lines}
    total = len(entries.lines)
    if entries.bytes:
        head["bytes"] = entries.bytes * lines // total
        rest["bytes"] = entries.bytes - head["bytes"]  # type: ignore[operator]
    for name in ("timestamps", "line_labels", "metadata"):
        values = getattr(entries, name)
        if values is not None:
            head[name], rest[name] = values[:lines], values[lines:]
    return dataclasses.replace(entries, **head), dataclasses.replace(entries, **rest)  # type: ignore[arg-type]


@dataclass(slots=True)
class _Held:
    entries: Entries
    demand: Demand | None
    since_s: float


class Throttle:
    """Per-stream queues of held reads (module docstring)."""

    __slots__ = ("_queues", "held_lines")

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[_Held]] = {}
        self.held_lines = 0

    def offer(self, stream: Hashable, entries: Entries, demand: Demand | None,
              now_s: float) -> list[Released]:
        """What may go now, in order: the read itself if it need not wait, else what its
        stream's queue lets out (possibly nothing; the rest is held)."""
        if stream not in self._queues:
            lines = len(entries.lines)
            if demand is None:
                return [Released(entries, 0.0, None)]
            if demand.bucket.available(now_s) >= lines:
                demand.bucket.spend(lines, now_s)
                return [Released(entries, 0.0, demand)]
        self._queues.setdefault(stream, deque()).append(_Held(entries, demand, now_s))
        self.held_lines += len(entries.lines)
        return self._let_out(stream, now_s)

    def release(self, now_s: float) -> list[Released]:
        """What the held streams let out at ``now_s``, each stream's in order."""
        out: list[Released] = []
        for stream in list(self._queues):
            out += self._let_out(stream, now_s)
        return out

    def next_release_s(self, now_s: float) -> float | None:
        """Seconds from ``now_s`` until a held stream may let out lines (None: none held)."""
        waits = [self._wait_s(queue[0], now_s) for queue in self._queues.values()]
        return min(waits) if waits else None

    def streams(self) -> int:
        """Streams with held reads."""
        return len(self._queues)

    @staticmethod
    def _step(held: _Held) -> int:
        """Lines the head read waits to let out at once."""
        assert held.demand is not None
        bucket = held.demand.bucket
        step = max(1, min(int(bucket.rate) // STEPS_PER_SECOND, int(bucket.burst)))
        return min(len(held.entries.lines), step)

    def _wait_s(self, held: _Held, now_s: float) -> float:
        if held.demand is None:
            return 0.0
        return held.demand.bucket.wait_s(self._step(held), now_s)

    def _let_out(self, stream: Hashable, now_s: float) -> list[Released]:
        queue = self._queues[stream]
        out: list[Released] = []
        while queue:
            head = queue[0]
            demand = head.demand
            if demand is None:
                lines = len(head.entries.lines)
            else:
                if self._wait_s(head, now_s):
                    break
                lines = min(len(head.entries.lines), demand.bucket.available(now_s))
                demand.bucket.spend(lines, now_s)
            self.held_lines -= lines
            held_s = now_s - head.since_s
            if lines < len(head.entries.lines):
                piece, head.entries = split_read(head.entries, lines)
                out.append(Released(piece, held_s, demand))
                break  # the bucket is empty
            queue.popleft()
            out.append(Released(head.entries, held_s, demand))
        if not queue:
            del self._queues[stream]
        return out
