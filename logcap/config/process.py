"""Config sections for the agent itself: admin server, supervision and logcap's own log.

- ``server`` (:class:`ServerConfig`): the admin HTTP API on ``host:port`` (mutating endpoints
  need ``admin_token``) and the Prometheus exposition on ``metrics_port``, a different port;
  ``chaos: true`` (with a token) serves ``POST /chaos/crash``.
- ``supervision`` (:class:`SupervisionConfig`): OTP-style restart intensity (at most
  ``intensity`` restarts within ``period``), the restart backoff between ``backoff_min`` and
  ``backoff_max`` (reset after ``backoff_reset`` of good health), liveness pings
  (``ping_interval`` shorter than ``ping_timeout``) and the shutdown timeout.
- ``logging`` (:class:`LoggingConfig`): level, and format (``text`` for people, ``json`` for
  collectors).

Sections and their invariants follow :mod:`logcap.config.section`.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from logcap.config.section import Problem, Section, check_not_empty
from logcap.config.values import (
    choice,
    duration,
    flag,
    format_duration,
    integer,
    tcp_port,
    text,
)
from logcap.runtime.childspec import DEFAULT_PING_INTERVAL_S, DEFAULT_PING_TIMEOUT_S
from logcap.runtime.childspec import DEFAULT_SHUTDOWN_S as DEFAULT_SHUTDOWN_TIMEOUT_S
from logcap.runtime.restarts import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_MIN_S,
    DEFAULT_BACKOFF_RESET_S,
)
from logcap.runtime.restarts import DEFAULT_INTENSITY as DEFAULT_RESTART_INTENSITY
from logcap.runtime.restarts import DEFAULT_PERIOD_S as DEFAULT_RESTART_PERIOD_S

__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_BACKOFF_MIN_S",
    "DEFAULT_BACKOFF_RESET_S",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PING_INTERVAL_S",
    "DEFAULT_PING_TIMEOUT_S",
    "DEFAULT_RESTART_INTENSITY",
    "DEFAULT_RESTART_PERIOD_S",
    "DEFAULT_SERVER_HOST",
    "DEFAULT_SHUTDOWN_TIMEOUT_S",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LoggingConfig",
    "ServerConfig",
    "SupervisionConfig",
]

DEFAULT_SERVER_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 8401
DEFAULT_METRICS_PORT = 8001
DEFAULT_SINK_DEGRADED_AFTER_S = 30.0


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class ServerConfig(Section):
    """The admin HTTP API and the Prometheus exposition. ``sink_degraded_after``: a sink whose
    requests have all failed for this long is ``degraded`` in ``/health``."""

    host: str = text(DEFAULT_SERVER_HOST, check=check_not_empty)
    port: int = tcp_port(DEFAULT_ADMIN_PORT)
    metrics_port: int = tcp_port(DEFAULT_METRICS_PORT)
    admin_token: str = text()
    sink_degraded_after: float = duration(DEFAULT_SINK_DEGRADED_AFTER_S, allow_zero=True)
    chaos: bool = flag(False)
    """``POST /chaos/crash`` (crash an actor on purpose, :mod:`logcap.api.chaos_routes`) is
    served only when true; it needs ``admin_token``."""

    def problems(self) -> Iterator[Problem]:
        if self.port == self.metrics_port:
            reason = f"must differ from port (both are {self.port})"
            yield Problem("metrics_port", reason, ("port", "metrics_port"))
        if self.chaos and not self.admin_token:
            yield Problem("chaos", "needs admin_token: POST /chaos/crash is a mutating endpoint "
                          "and is refused without a token", ("chaos", "admin_token"))


@attrs.frozen
class SupervisionConfig(Section):
    """OTP-style restart intensity, restart backoff, liveness pings and shutdown timeout."""

    intensity: int = integer(DEFAULT_RESTART_INTENSITY, minimum=0)
    period: float = duration(DEFAULT_RESTART_PERIOD_S)
    backoff_min: float = duration(DEFAULT_BACKOFF_MIN_S, allow_zero=True)
    backoff_max: float = duration(DEFAULT_BACKOFF_MAX_S)
    backoff_reset: float = duration(DEFAULT_BACKOFF_RESET_S)
    ping_interval: float = duration(DEFAULT_PING_INTERVAL_S)
    ping_timeout: float = duration(DEFAULT_PING_TIMEOUT_S)
    shutdown_timeout: float = duration(DEFAULT_SHUTDOWN_TIMEOUT_S)

    def problems(self) -> Iterator[Problem]:
        if self.backoff_min > self.backoff_max:
            yield Problem(
                "backoff_min",
                f"{format_duration(self.backoff_min)} must not exceed backoff_max "
                f"({format_duration(self.backoff_max)})",
                ("backoff_min", "backoff_max"),
            )
        if self.ping_interval >= self.ping_timeout:
            yield Problem(
                "ping_interval",
                f"{format_duration(self.ping_interval)} must be shorter than ping_timeout "
                f"({format_duration(self.ping_timeout)})",
                ("ping_interval", "ping_timeout"),
            )


@attrs.frozen
class LoggingConfig(Section):
    """logcap's own log: level and format (``text`` for people, ``json`` for collectors)."""

    level: str = choice("info", LOG_LEVELS)
    format: str = choice("text", LOG_FORMATS)
