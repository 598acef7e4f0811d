"""A scenario's faults as a timeline: pure, seeded, tested without processes.

:func:`build_schedule` spreads each kind of fault evenly over the writing time, with jitter
(slot *i* of *n* gets one moment drawn uniformly inside it), so a hundred crashes are a hundred
distinct moments and never a burst. Loki faults become a start and an end event.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from chaos.scenarios import Scenario

__all__ = ["CrashActor", "Event", "KillProcess", "LokiBegin", "LokiEnd", "build_schedule",
           "spread"]

WARMUP_S = 1.0
"""No fault in the first second of writing: the first lines show the pipeline works."""


@dataclass(frozen=True, slots=True)
class CrashActor:
    """``POST /chaos/crash`` for ``actor``, or a random actor of ``groups`` (empty: default)."""

    actor: str | None = None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KillProcess:
    """kill -9 the logcap process and start it again on the same config and state."""


@dataclass(frozen=True, slots=True)
class LokiBegin:
    """Loki starts to misbehave (``kind`` of :data:`chaos.scenarios.LOKI_FAULT_KINDS`)."""

    kind: str
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LokiEnd:
    """Loki behaves again after a ``kind`` fault."""

    kind: str


Fault = CrashActor | KillProcess | LokiBegin | LokiEnd


@dataclass(frozen=True, slots=True)
class Event:
    at_s: float
    """Seconds after writing started."""
    fault: Fault


def spread(count: int, start_s: float, end_s: float, rng: random.Random) -> list[float]:
    """``count`` moments in ``[start_s, end_s)``, one drawn uniformly in each of ``count``
    equal slots (sorted)."""
    if count <= 0 or end_s <= start_s:
        return []
    slot = (end_s - start_s) / count
    return [start_s + (i + rng.random()) * slot for i in range(count)]


def build_schedule(scenario: Scenario, rng: random.Random) -> list[Event]:
    """Every fault of ``scenario``, ordered by time (ties keep kind order)."""
    end = scenario.duration_s
    start = min(WARMUP_S, end / 10)
    events: list[Event] = []
    crash_times = spread(scenario.crashes, start, end, rng)
    for i, at in enumerate(crash_times):
        if scenario.crash_actors:
            fault = CrashActor(actor=scenario.crash_actors[i % len(scenario.crash_actors)])
        else:
            fault = CrashActor(groups=scenario.crash_groups)
        events.append(Event(at, fault))
    events.extend(Event(at, KillProcess())
                  for at in spread(scenario.process_kills, start, end, rng))
    for loki in scenario.loki_faults:
        begin = max(start, loki.at * end)
        latency = loki.latency_s if loki.kind == "slow" else 0.0
        events.append(Event(begin, LokiBegin(loki.kind, latency)))
        events.append(Event(begin + loki.seconds, LokiEnd(loki.kind)))
    return sorted(events, key=lambda e: e.at_s)
