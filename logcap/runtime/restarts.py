"""Restart policy arithmetic for the supervisor: backoff and restart intensity.

Plain synchronous code with an injected clock, so it is tested without threads.

* :class:`Backoff` gives the delay before the n-th consecutive restart of one child:
  ``min(max_s, min_s * 2**n)``, scaled by a jitter factor drawn from ``[1 - jitter, 1]``.
  The count resets when the child has run for ``reset_after_s`` without crashing.
* :class:`RestartIntensity` is OTP's restart intensity: more than ``intensity`` restarts within
  ``period_s`` seconds means the supervisor gives up and escalates to its parent.
"""

from __future__ import annotations

import random
from collections import deque

__all__ = [
    "DEFAULT_BACKOFF_JITTER",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_BACKOFF_MIN_S",
    "DEFAULT_BACKOFF_RESET_S",
    "DEFAULT_INTENSITY",
    "DEFAULT_PERIOD_S",
    "Backoff",
    "RestartIntensity",
]

DEFAULT_INTENSITY = 10
DEFAULT_PERIOD_S = 60.0
DEFAULT_BACKOFF_MIN_S = 0.1
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_BACKOFF_RESET_S = 60.0
DEFAULT_BACKOFF_JITTER = 0.2
"""Fraction of the delay that jitter may remove (0 = no jitter)."""


class Backoff:
    """Exponential backoff with jitter for the restarts of one child."""

    __slots__ = ("_rng", "attempts", "jitter", "last_restart_at", "max_s", "min_s", "reset_after_s")

    def __init__(
        self,
        min_s: float = DEFAULT_BACKOFF_MIN_S,
        max_s: float = DEFAULT_BACKOFF_MAX_S,
        reset_after_s: float = DEFAULT_BACKOFF_RESET_S,
        jitter: float = DEFAULT_BACKOFF_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if min_s < 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 <= min ({min_s}) <= max ({max_s})")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.min_s = min_s
        self.max_s = max_s
        self.reset_after_s = reset_after_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0
        self.last_restart_at: float | None = None

    def next_delay(self, now: float) -> float:
        """The delay before the next restart, given a crash at ``now``; counts the attempt."""
        if self.last_restart_at is not None and now - self.last_restart_at >= self.reset_after_s:
            self.attempts = 0
        base = min(self.max_s, self.min_s * (2.0 ** min(self.attempts, 62)))
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def restarted(self, now: float) -> None:
        """Record that the child was (re)started at ``now`` (starts the quiet period)."""
        self.last_restart_at = now


class RestartIntensity:
    """Counts restarts in a sliding window of ``period_s`` seconds."""

    __slots__ = ("_times", "intensity", "period_s")

    def __init__(self, intensity: int = DEFAULT_INTENSITY, period_s: float = DEFAULT_PERIOD_S):
        if intensity < 0 or period_s <= 0:
            raise ValueError("intensity must be >= 0 and period > 0")
        self.intensity = intensity
        self.period_s = period_s
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; False if that exceeds the intensity (give up)."""
        self._times.append(now)
        while self._times and now - self._times[0] > self.period_s:
            self._times.popleft()
        return len(self._times) <= self.intensity

    def recent(self, now: float) -> int:
        return sum(1 for t in self._times if now - t <= self.period_s)
