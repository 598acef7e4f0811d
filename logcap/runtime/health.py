"""The health vocabulary of ``/health``, and a run of failures with when to log it.

A component's health is :class:`Health`: ``state`` one of :data:`OK`, :data:`DEGRADED`,
:data:`FAILING`, the ``reason`` (empty when ok) and ``since`` (unix seconds the state began,
None when ok or not known):

- **ok**: doing its work;
- **degraded**: running, but part of its work waits or is skipped, and it needs attention;
  every line stays safe (in the source files, the disk buffer or the DLQ) and the component
  resumes by itself when the cause goes away: a sink whose requests have all failed for longer
  than ``server.sink_degraded_after``, positions that cannot be written, a source with
  unreadable paths or an include that matches nothing, a full disk under the buffer, a DLQ
  taking entries;
- **failing**: not running: crashed and restarting, hung, or stopped.

:func:`worst` is the overall state. :class:`CheckHealth` is the ask a component answers with
its :class:`Health`.

:class:`FailureStreak` is plain code with the time passed in: it follows a run of failed
attempts (sink requests, positions writes) from the first failure to the next success, and
says what to log: the first failure at once (:data:`FIRST`), a summary at most every
``summary_interval_s`` while it lasts (:data:`STILL`), one line at the recovery
(:data:`RECOVERED`), nothing otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEGRADED", "FAILING", "FIRST", "OK", "RECOVERED", "STATES", "STILL", "CheckHealth",
           "FailureStreak", "Health", "worst"]

OK = "ok"
DEGRADED = "degraded"
FAILING = "failing"
STATES = (OK, DEGRADED, FAILING)
"""In order of severity."""

FIRST = "first"
STILL = "still"
RECOVERED = "recovered"
"""What :class:`FailureStreak` says to log."""

DEFAULT_SUMMARY_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class CheckHealth:
    """Ask: the component's :class:`Health`."""


@dataclass(frozen=True, slots=True)
class Health:
    """One component's health (module docstring)."""

    state: str = OK
    reason: str = ""
    since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"health": self.state, "reason": self.reason, "since": self.since}


def worst(states: list[str]) -> str:
    """The most severe of ``states`` (ok for none)."""
    return max(states, key=STATES.index, default=OK)


@dataclass(slots=True)
class FailureStreak:
    """A run of failures since the last success (module docstring). ``since`` is the wall
    time of its first failure (None while succeeding)."""

    summary_interval_s: float = DEFAULT_SUMMARY_INTERVAL_S
    since: float | None = None
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    _logged_at: float = 0.0

    def failed(self, now: float, reason: str, error: str) -> str | None:
        """Count one failure; :data:`FIRST` for the first of a run, :data:`STILL` when a
        summary is due, else None."""
        self.failures += 1
        self.reasons[reason] += 1
        self.last_error = error
        if self.since is None:
            self.since = self._logged_at = now
            return FIRST
        if now - self._logged_at >= self.summary_interval_s:
            self._logged_at = now
            return STILL
        return None

    def succeeded(self) -> str | None:
        """End the run; :data:`RECOVERED` if there was one (read :meth:`summary` first)."""
        if self.since is None:
            return None
        self.since = None
        self.failures = 0
        self.reasons.clear()
        self.last_error = ""
        return RECOVERED

    def duration(self, now: float) -> float:
        """How long the run has lasted (0 while succeeding)."""
        return 0.0 if self.since is None else max(0.0, now - self.since)

    def summary(self) -> str:
        """``"12 failed (connection=10, timeout=2)"``."""
        by_reason = ", ".join(f"{r}={n}" for r, n in self.reasons.most_common())
        return f"{self.failures} failed ({by_reason})"

    def health(self, now: float, degraded_after_s: float, what: str) -> Health:
        """Degraded once the run has lasted ``degraded_after_s`` (0: at the first failure),
        with ``what`` (``"requests to http://loki/..."``) and the last error in the reason."""
        if self.since is None or self.duration(now) < degraded_after_s:
            return Health()
        return Health(DEGRADED, f"{what} failing for {self.duration(now):.0f}s, "
                                f"{self.summary()}; last: {self.last_error}", self.since)
