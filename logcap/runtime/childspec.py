"""The vocabulary of supervision: child specs, flags, strategies and supervisor messages.

Names follow Erlang/OTP's ``supervisor``: a :class:`ChildSpec` describes one child, a
:class:`SupFlags` the supervisor's strategy, restart intensity, backoff and hang detection.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykka import ActorRef

from logcap.runtime.actor import ExitLink
from logcap.runtime.directory import Directory
from logcap.runtime.restarts import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_MIN_S,
    DEFAULT_BACKOFF_RESET_S,
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD_S,
)
from logcap.runtime.timers import Scheduler

__all__ = [
    "DEFAULT_PING_INTERVAL_S",
    "DEFAULT_PING_TIMEOUT_S",
    "DEFAULT_SHUTDOWN_S",
    "DEFAULT_START_TIMEOUT_S",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "CountChildren",
    "Restart",
    "StartChild",
    "StartContext",
    "Strategy",
    "SupFlags",
    "TerminateChild",
    "WhichChildren",
]

DEFAULT_SHUTDOWN_S = 10.0
DEFAULT_START_TIMEOUT_S = 30.0
DEFAULT_PING_INTERVAL_S = 5.0
DEFAULT_PING_TIMEOUT_S = 30.0


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildStatus(enum.Enum):
    RUNNING = "running"
    RESTARTING = "restarting"  # waiting for its backoff timer
    STOPPED = "stopped"  # ended and not to be restarted
    FAILED = "failed"  # the supervisor gave up


@dataclass(frozen=True, slots=True)
class StartContext:
    """What a child's ``start`` function gets: its link, qualified name and the runtime."""

    link: ExitLink
    name: str
    directory: Directory
    scheduler: Scheduler


@dataclass(frozen=True, slots=True)
class ChildSpec:
    id: str
    start: Callable[[StartContext], ActorRef[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = DEFAULT_SHUTDOWN_S
    supervisor: bool = False
    """True if the child is itself a :class:`Supervisor` (reported in ``which_children``)."""
    ping_timeout_s: float | None = None
    """Hang-detection deadline; None uses the supervisor's, 0 disables it for this child."""


@dataclass(frozen=True, slots=True)
class SupFlags:
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period_s: float = DEFAULT_PERIOD_S
    backoff_min_s: float = DEFAULT_BACKOFF_MIN_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    backoff_reset_s: float = DEFAULT_BACKOFF_RESET_S
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of ``which_children``."""

    id: str
    name: str
    status: str
    supervisor: bool
    restarts: int
    crashes: int
    last_error: str
    ref: ActorRef[Any] | None


@dataclass(frozen=True, slots=True)
class WhichChildren:
    """Ask: the children, in start order, as :class:`ChildInfo` rows."""


@dataclass(frozen=True, slots=True)
class CountChildren:
    """Ask: ``{"specs", "active", "supervisors", "workers"}`` as OTP's count_children."""


@dataclass(frozen=True, slots=True)
class StartChild:
    """Ask: add ``spec`` at the end and start it; answers True if it started."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Ask: stop the child ``child_id`` and remove its spec; answers True if it existed."""

    child_id: str


@dataclass(frozen=True, slots=True)
class ReplaceChild:
    """Ask: stop the child ``spec.id`` (within its shutdown timeout), put ``spec`` in its place
    (same position in the start order) and start it; answers True if it started, False if it
    did not (it is then restarted by the usual rules), None if there is no such child."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class UpdateChildSpec:
    """Ask: use ``spec`` for the child ``spec.id`` from its next (re)start on, without
    restarting it now; answers True if the child exists."""

    spec: ChildSpec
