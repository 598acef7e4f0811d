"""Retry arithmetic: how long to wait before sending a batch again, and the defaults.

``retry_delay(attempt, base_s, max_s, rng, retry_after_s)`` is exponential backoff with full
jitter:

- ``attempt`` counts the failed attempts before this wait, starting at 1 (the wait after the
  first failure). The ceiling doubles with each attempt, ``base_s * 2 ** (attempt - 1)``, and
  is capped at ``max_s`` (:func:`backoff_ceiling`).
- Full jitter (the "Exponential Backoff And Jitter" scheme): the delay is drawn uniformly from
  ``[0, ceiling]`` with the injected ``rng``, so clients that failed together do not retry in
  step. Tests pass a seeded :class:`random.Random`.
- ``Retry-After`` is honoured: when the server gave one, the delay is at least that long, but
  never more than ``max_retry_after_s`` (default :data:`DEFAULT_MAX_RETRY_AFTER_S`, 5 minutes),
  so a wrong header cannot park a sink for hours. The jittered value still applies when it is
  the longer of the two.

The result is always finite and non-negative. This is the only copy of the formula: every
sender (shard, disk buffer, DLQ) gets its delays through :mod:`logcap.dispatch.outbox`.

The constants: :data:`REFUSED_RETRY_S`, the delay before a batch is offered again to a sink
whose mailbox was full (no attempt counted), and the defaults of ``dispatcher.retry_base_delay``
and ``dispatcher.retry_max_delay``.
"""

from __future__ import annotations

import random

__all__ = [
    "DEFAULT_MAX_RETRY_AFTER_S",
    "DEFAULT_RETRY_BASE_DELAY_S",
    "DEFAULT_RETRY_MAX_DELAY_S",
    "REFUSED_RETRY_S",
    "backoff_ceiling",
    "retry_delay",
]

DEFAULT_MAX_RETRY_AFTER_S = 300.0
"""A sink's Retry-After is honoured up to this many seconds."""
DEFAULT_RETRY_BASE_DELAY_S = 0.5
"""Ceiling of the delay after the first failure (``dispatcher.retry_base_delay``)."""
DEFAULT_RETRY_MAX_DELAY_S = 30.0
"""Cap of the ceiling (``dispatcher.retry_max_delay``)."""
REFUSED_RETRY_S = 0.02
"""Delay before offering a batch again to a sink that refused it (full mailbox, restarting),
or that held it behind an older failed batch: no attempt is counted."""
_MAX_EXPONENT = 64  # 2**64 times any sane base is far beyond any max_s


def backoff_ceiling(attempt: int, base_s: float, max_s: float) -> float:
    """The upper bound of the jittered delay after ``attempt`` failures (``attempt >= 1``)."""
    if base_s < 0 or max_s < 0:
        raise ValueError(f"base_s and max_s must be non-negative, got {base_s}, {max_s}")
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return min(max_s, base_s * (2.0**exponent))


def retry_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
    *,
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
) -> float:
    """Seconds to wait before the next attempt (see the module docstring)."""
    delay = rng.uniform(0.0, backoff_ceiling(attempt, base_s, max_s))
    if retry_after_s is not None and retry_after_s > 0:  # NaN compares False: ignored
        delay = max(delay, min(retry_after_s, max_retry_after_s))
    return delay
