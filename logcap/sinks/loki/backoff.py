"""How long to wait before sending a batch again: exponential backoff with full jitter.

``retry_delay(attempt, base_s, max_s, rng, retry_after_s)``:

- ``attempt`` counts the failed attempts before this wait, starting at 1 (the wait after the
  first failure). The ceiling doubles with each attempt, ``base_s * 2 ** (attempt - 1)``, and
  is capped at ``max_s``.
- Full jitter (the "Exponential Backoff And Jitter" scheme): the delay is drawn uniformly from
  ``[0, ceiling]`` with the injected ``rng``, so clients that failed together do not retry in
  step. Tests pass a seeded :class:`random.Random`.
- ``Retry-After`` is honoured: when the server gave one, the delay is at least that long, but
  never more than ``max_retry_after_s`` (default 5 minutes), so a wrong header cannot park a sink
  for hours. The jittered value still applies when it is the longer of the two.

The result is always finite and non-negative.
"""

from __future__ import annotations

import random

__all__ = [
    "DEFAULT_MAX_RETRY_AFTER_S",
    "backoff_ceiling",
    "retry_delay",
]

DEFAULT_MAX_RETRY_AFTER_S = 300.0
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
