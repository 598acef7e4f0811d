"""Stages that remove lines, each removal counted with its reason: ``drop``, ``rate_limit``.

* ``drop``: a line is dropped when *every* condition given holds: ``expression`` is found in
  the line (or field ``source``); field ``source`` equals ``value``; the line's timestamp is
  more than ``older_than`` before its read time; the line is longer than ``longer_than`` bytes
  of UTF-8. The drop reason is the conditions given, joined by ``+`` (``regex``, ``value``,
  ``age``, ``size``, e.g. ``regex+size``). At least one condition is required.
* ``rate_limit``: a token bucket per stream (the ``Entries.stream``, e.g. a file's path) of
  ``rate`` lines per second and ``burst`` lines (default: ``rate``). Time is the batch's
  clock (``LineBatch.now_s``). ``mode: drop`` (the default): a line that finds no token is
  dropped (reason ``rate_limit``). ``mode: block``: no line is dropped; the stage puts a
  :class:`Demand` on the batch (its stream's bucket), and the caller holds the lines the
  pipeline gives out (after every stage) until the bucket has a token for each, letting them
  out in order as it refills (the shard: :mod:`logcap.pipeline.throttle`), so the stream
  goes at ``rate`` lines per second after its first ``burst``. One pipeline has at most one
  stage in block mode (the config refuses a second).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import attrs

from logcap.config.section import Problem, Section
from logcap.config.values import choice, duration, integer, optional_text, regex
from logcap.pipeline.batch import LineBatch

__all__ = ["Demand", "DropConfig", "DropStage", "RateLimitConfig", "RateLimitStage",
           "TokenBucket"]

NS = 1_000_000_000
_NO_LIMIT = 0


@attrs.frozen
class DropConfig(Section):
    """Options of ``drop``."""

    expression: str = regex()
    source: str | None = optional_text()
    value: str | None = optional_text()
    older_than: float = duration(0.0, allow_zero=True)
    longer_than: int = integer(_NO_LIMIT, minimum=0)

    def problems(self) -> Iterator[Problem]:
        if not self.reason():
            yield Problem("", "a drop stage needs at least one condition (expression, value, "
                          "older_than, longer_than)", ())
        if self.value is not None and self.source is None:
            yield Problem("value", "needs source (the field compared with value)",
                          ("value", "source"))

    def reason(self) -> str:
        """The conditions given, joined by ``+`` (the drop reason)."""
        given = [("regex", bool(self.expression)), ("value", self.value is not None),
                 ("age", self.older_than > 0), ("size", self.longer_than > 0)]
        return "+".join(name for name, on in given if on)


class DropStage:
    """Drops the lines that meet every condition (module docstring)."""

    __slots__ = ("label", "longer_than", "older_ns", "reason", "search", "source", "value")

    def __init__(self, config: DropConfig, label: str) -> None:
        self.label = label
        self.search = re.compile(config.expression).search if config.expression else None
        self.source = config.source
        self.value = config.value
        self.older_ns = int(config.older_than * NS)
        self.longer_than = config.longer_than
        self.reason = config.reason()

    def _drops(self, batch: LineBatch, i: int) -> bool:
        if self.search is not None or self.value is not None:
            text = batch.value(i, self.source)
            if text is None:
                return False
            if self.search is not None and self.search(text) is None:
                return False
            if self.value is not None and text != self.value:
                return False
        if self.older_ns and batch.read_ns + i - batch.timestamps[i] <= self.older_ns:
            return False
        if self.longer_than:
            line = batch.lines[i]
            if len(line) <= self.longer_than and (line.isascii() or
                                                  len(line.encode()) <= self.longer_than):
                return False
        return True

    def __call__(self, batch: LineBatch) -> None:
        kept = [i for i in range(len(batch)) if not self._drops(batch, i)]
        batch.keep(kept, self.label, self.reason)


@attrs.frozen
class RateLimitConfig(Section):
    """Options of ``rate_limit``."""

    rate: int = integer(1, minimum=1, required=True)
    burst: int = integer(0, minimum=0)
    mode: str = choice("drop", ("drop", "block"))



class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now_s: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now_s

    def _refill(self, now_s: float) -> None:
        if now_s > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now_s - self.stamp) * self.rate)
            self.stamp = now_s

    def take(self, wanted: int, now_s: float) -> int:
        """Take up to ``wanted`` whole tokens at ``now_s``; returns how many were taken."""
        self._refill(now_s)
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def wait_s(self, lines: int, now_s: float) -> float:
        """Seconds from ``now_s`` until the bucket holds ``lines`` tokens (at most ``burst``);
        0: it does now."""
        self._refill(now_s)
        lacking = min(lines, self.burst) - self.tokens
        return 0.0 if lacking <= _EPSILON else lacking / self.rate

    def available(self, now_s: float) -> int:
        """Whole tokens in the bucket at ``now_s``."""
        self._refill(now_s)
        return int(self.tokens + _EPSILON)

    def spend(self, lines: int, now_s: float) -> None:
        """Take ``lines`` tokens at ``now_s`` (the caller took no more than
        :meth:`available`)."""
        self._refill(now_s)
        self.tokens -= lines


_EPSILON = 1e-6
"""Tokens lacking that count as none (float rounding of the refill)."""


@dataclass(frozen=True, slots=True)
class Demand:
    """What a ``rate_limit`` stage in block mode asks of the caller: hold the batch's lines
    until ``bucket`` has a token for each (:mod:`logcap.pipeline.throttle`). ``pipeline`` and
    ``stage`` name it in the metrics."""

    bucket: TokenBucket
    pipeline: str
    stage: str


MAX_BUCKETS = 100_000
"""Streams with a bucket before the idle ones are forgotten (a forgotten stream starts full)."""


class RateLimitStage:
    """A token bucket per stream; lines beyond it are dropped, or in block mode the batch is
    held by the caller (module docstring)."""

    __slots__ = ("block", "buckets", "burst", "label", "rate")

    def __init__(self, config: RateLimitConfig, label: str) -> None:
        self.label = label
        self.rate = config.rate
        self.burst = config.burst or config.rate
        self.block = config.mode == "block"
        self.buckets: dict[str, TokenBucket] = {}

    def __call__(self, batch: LineBatch) -> None:
        bucket = self.buckets.get(batch.stream)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full(batch.now_s)
            bucket = self.buckets[batch.stream] = TokenBucket(self.rate, self.burst,
                                                              batch.now_s)
        if self.block:
            batch.demand = (bucket, self.label)
            return
        granted = bucket.take(len(batch), batch.now_s)
        batch.keep(range(granted), self.label, "rate_limit")

    def _forget_full(self, now_s: float) -> None:
        """Forget the buckets that have refilled (they behave as new ones)."""
        for stream, bucket in list(self.buckets.items()):
            if bucket.tokens + (now_s - bucket.stamp) * bucket.rate >= bucket.burst:
                del self.buckets[stream]
        if len(self.buckets) >= MAX_BUCKETS:
            self.buckets.clear()
