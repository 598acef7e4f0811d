"""The chaos scenarios: what is written, which faults are applied, and the bounds of a pass.

A :class:`Scenario` is data; :mod:`chaos.schedule` turns it into timed faults and
:mod:`chaos.run` runs it. :data:`SCENARIOS` holds the named ones; the CLI can override the
rate, duration, counts and the disk buffer of any of them (:func:`dataclasses.replace`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_SUITE_SCENARIO", "SCENARIOS", "Bounds", "LokiFault", "Scenario"]

LOKI_FAULT_KINDS = ("unavailable", "refused", "slow")
"""``unavailable``: every push answers 503; ``refused``: the receiver is stopped (connection
refused) and started again on the same port; ``slow``: every answer waits ``latency_s``."""


@dataclass(frozen=True, slots=True)
class LokiFault:
    """Loki misbehaves from ``at`` (a share of the writing time, 0..1) for ``seconds``."""

    kind: str
    at: float
    seconds: float
    latency_s: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in LOKI_FAULT_KINDS:
            raise ValueError(f"Loki fault kind {self.kind!r}; known: {LOKI_FAULT_KINDS}")
        if not 0 <= self.at <= 1 or self.seconds <= 0:
            raise ValueError("a Loki fault starts at a share 0..1 of the run and lasts > 0 s")


@dataclass(frozen=True, slots=True)
class Bounds:
    """What a scenario must keep to pass."""

    max_missing: int = 0
    max_duplicate_share: float = 0.00001
    """Duplicates kept by Loki (same stream, timestamp and line counted once), over lines."""
    order_kept: bool = True
    """Per stream, by timestamp, each line's first copy comes after the lines written before."""
    tree_alive: bool = True
    """At the end every actor runs and ``/health`` answers 200."""
    no_leaks: bool = True
    """Threads and descriptors of the (last) process back to their values before the faults."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float = 35.0
    """How long lines are written; faults are spread over this time."""
    rate: float = 3000.0
    """Lines per second, over all files."""
    files: int = 4
    """Files written round-robin (each one a stream; they spread over the shards)."""
    disk_buffer: bool = True
    crashes: int = 0
    """Actor crashes through ``POST /chaos/crash``, spread evenly (with jitter) over the run."""
    crash_groups: tuple[str, ...] = ()
    """Groups a random crash picks from (empty: the endpoint's default, all but admin)."""
    crash_actors: tuple[str, ...] = ()
    """Named actors crashed in turn instead of random ones."""
    process_kills: int = 0
    """kill -9 of the logcap process, each followed by a restart on the same state."""
    loki_faults: tuple[LokiFault, ...] = ()
    shards: int = 2
    line_bytes: int = 120
    delivery_timeout_s: float = 120.0
    bounds: Bounds = field(default_factory=Bounds)


DEFAULT_SUITE_SCENARIO = "actor-kills"

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("actor-kills", "100 random actor crashes over 30 s at 3,000 lines/s, disk buffer on "
             "(the default suite's form)", duration_s=30, rate=3000, crashes=100),
    Scenario("actor-kills-long", "1,000 random actor crashes over 10 minutes at 10,000 lines/s, "
             "disk buffer on", duration_s=600, rate=10_000, crashes=1000,
             delivery_timeout_s=300),
    Scenario("actor-kills-no-buffer", "100 random actor crashes over 35 s at 3,000 lines/s, "
             "disk buffer off", duration_s=35, rate=3000, crashes=100, disk_buffer=False),
    Scenario("supervisor-kills", "40 crashes of the group supervisors (each takes its "
             "children down) over 30 s at 3,000 lines/s, disk buffer on", duration_s=30,
             rate=3000, crashes=40, crash_groups=("supervisors",)),
    Scenario("sigkill", "kill -9 and restart x20 over 60 s at 10,000 lines/s, disk buffer off",
             duration_s=60, rate=10_000, process_kills=20, disk_buffer=False,
             bounds=Bounds(max_duplicate_share=0.0001)),
    Scenario("sigkill-short", "kill -9 and restart x3 over 12 s at 3,000 lines/s, disk buffer "
             "off (the default suite's form)", duration_s=12, rate=3000, process_kills=3,
             disk_buffer=False, bounds=Bounds(max_duplicate_share=0.0001)),
    Scenario("sigkill-buffer", "kill -9 and restart x20 over 60 s at 10,000 lines/s, disk "
             "buffer on", duration_s=60, rate=10_000, process_kills=20),
    Scenario("loki-faults", "Loki answers 503 for 5 s, refuses connections for 5 s, answers "
             "0.5 s late for 5 s, with 30 random actor crashes, over 40 s at 3,000 lines/s, "
             "disk buffer on", duration_s=40, rate=3000, crashes=30,
             loki_faults=(LokiFault("unavailable", 0.15, 5), LokiFault("refused", 0.45, 5),
                          LokiFault("slow", 0.75, 5, latency_s=0.5))),
)}
