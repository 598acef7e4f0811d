"""``GET /health`` and ``GET /ready``: pure functions over what the actors answered.

Each component gets ``health`` (``ok | degraded | failing``, :mod:`logcap.runtime.health`),
``reason`` and ``since`` beside its actor ``status`` and ``last_error``:

- an actor that is not ``running`` (restarting, crashed, hung, stopped) is **failing**, the
  reason its status and last error;
- a component that reports its own health (:class:`~logcap.runtime.health.CheckHealth`: the
  sinks, the positions keeper) has that report;
- the disk buffer is **degraded** while it cannot take data (a full buffer or disk), the
  reason its own;
- a source is **degraded** while some paths cannot be read (``problems``, also the
  ``max_open_files`` cap), an include selects no file (``unmatched_includes``), or its status
  says ``degraded`` (its reason);
- the DLQ is **degraded** while it is growing: an entry was added in the last
  :data:`DLQ_GROWING_WINDOW_S` (the ``LogcapDlqGrowing`` alert's window).

The overall ``status`` is the worst component's. **HTTP**: ``/health`` answers 200 for ``ok``
and ``degraded`` (logcap runs and keeps every line safe; a restart would not help) and 503 for
``failing`` (a part of it is down); ``/ready`` 200 once the tree has started and every
component is running, 503 before and while one is not.

``since`` is the component's own when it reports one (the first failed request or write);
otherwise the first time this agent saw the component in that state (:class:`SinceTracker`),
or for the DLQ the newest entry's time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from logcap.runtime.health import DEGRADED, FAILING, OK, Health, worst

__all__ = ["DLQ_GROWING_WINDOW_S", "SinceTracker", "component_health", "http_status",
           "readiness"]

DLQ_GROWING_WINDOW_S = 15 * 60.0
PROBLEMS_IN_REASON = 3
"""Unreadable paths named in a source's reason (all of them are in ``problems``)."""


class SinceTracker:
    """When each component entered its current state, as seen by this agent."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[str, float]] = {}

    def since(self, name: str, state: str, now: float) -> float | None:
        """The first time ``name`` was seen in ``state`` since it left another one; None
        for ok."""
        if state == OK:
            self._since.pop(name, None)
            return None
        seen = self._since.get(name)
        if seen is None or seen[0] != state:
            self._since[name] = (state, now)
            return now
        return seen[1]


def _source_health(status: Mapping[str, Any]) -> Health:
    reasons = []
    flagged = status.get("degraded")  # a source's own word (its reason, or True)
    if flagged:
        reasons.append(flagged if isinstance(flagged, str) else "degraded")
    errors = status.get("errors", {})
    if errors:
        named = "; ".join(f"{p}: {why}" for p, why in list(errors.items())[:PROBLEMS_IN_REASON])
        more = f" (+{len(errors) - PROBLEMS_IN_REASON} more)" \
            if len(errors) > PROBLEMS_IN_REASON else ""
        reasons.append(f"{len(errors)} path{'' if len(errors) == 1 else 's'} cannot be "
                       f"read: {named}{more}")
    unmatched = status.get("unmatched_includes", [])
    if unmatched:
        reasons.append(f"include matches no file: {', '.join(unmatched)}")
    return Health(DEGRADED, "; ".join(reasons)) if reasons else Health()


def _dlq_health(stats: Mapping[str, Any], now: float) -> Health:
    newest = stats.get("newest_entry_time")
    if newest is None or now - newest > DLQ_GROWING_WINDOW_S:
        return Health()
    by_reason = ", ".join(f"{r}={row['entries']}" for r, row in
                          sorted(stats.get("by_reason", {}).items()))
    return Health(DEGRADED, f"lines refused for good were dead-lettered in the last "
                            f"{DLQ_GROWING_WINDOW_S / 60:.0f} min: {stats.get('entries', 0)} "
                            f"entries ({by_reason}); fix the cause, then reprocess", newest)


def component_health(*, now: float, rows: Sequence[Mapping[str, Any]],
                     reports: Mapping[str, Health], buffer: tuple[str, str] | None,
                     sources: Mapping[str, Mapping[str, Any]],
                     dlq: tuple[str, Mapping[str, Any]] | None,
                     tracker: SinceTracker) -> tuple[str, dict[str, dict[str, Any]]]:
    """The overall status and every component's entry (module docstring). ``rows``: the
    tree's rows; ``reports``: the components' own answers by actor name; ``buffer``: the
    buffer's actor name and why it cannot take data ("" if it can); ``sources``: each running
    source's status by actor name; ``dlq``: its actor name and stats."""
    components: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = row["name"]
        entry: dict[str, Any] = {"status": row["status"], "last_error": row["last_error"]}
        if row["status"] != "running":
            error = f": {row['last_error']}" if row["last_error"] else ""
            health = Health(FAILING, f"{row['status']}{error}")
        elif name in reports:
            health = reports[name]
        elif buffer is not None and name == buffer[0] and buffer[1]:
            health = Health(DEGRADED, buffer[1])
        elif name in sources:
            status = sources[name]
            entry["problems"] = [f"{path}: {why}" for path, why in
                                 status.get("errors", {}).items()]
            entry.update({k: v for k, v in status.items() if k not in ("errors", "source")})
            health = _source_health(status)
        elif dlq is not None and name == dlq[0]:
            health = _dlq_health(dlq[1], now)
        else:
            health = Health()
        since = health.since if health.since is not None \
            else tracker.since(name, health.state, now)
        entry.update(health=health.state, reason=health.reason, since=since)
        components[name] = entry
    return worst([c["health"] for c in components.values()]), components


def http_status(state: str) -> int:
    """``/health``'s HTTP status for the overall ``state``."""
    return 503 if state == FAILING else 200


def readiness(started: bool, rows: Sequence[Mapping[str, Any]]) -> tuple[bool, dict[str, Any]]:
    """``/ready``: ready once the tree has started and every component runs; the body names
    those that do not."""
    waiting = sorted(r["name"] for r in rows if r["status"] != "running")
    ready = started and not waiting
    body: dict[str, Any] = {"ready": ready, "started": started, "not_running": waiting}
    return ready, body
