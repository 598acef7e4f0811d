"""The status summary: one JSON document that the status page (``GET /``, refreshing from
``GET /status.json``) and ``logcap status`` both show.

Pure functions, tested without an agent: :func:`counter_totals` reads the lines and requests
counters out of collected Prometheus metric families; :func:`summarize` joins them with what the
actors answered (the tree's rows, each source's status, the disk buffer's and the DLQ's stats)
and the recent warnings and errors; :func:`rates` turns two summaries taken ``dt`` apart into
lines per second, per source and per sink.

The summary (all counts since the agent started; times in unix seconds):

- ``time``, ``uptime_s``, ``version``, ``healthy`` (the overall health is ``ok``), ``health``
  (``ok | degraded | failing``, as ``/health``: :mod:`logcap.api.health`) and ``troubles``
  (each component not ok: ``name``, ``health``, ``reason``, ``since``);
- ``components``: ``name``, ``status``, ``restarts``, ``crashes``, ``last_error``,
  ``mailbox_depth``, ``mailbox_capacity`` (None for actors without a bounded mailbox);
- ``sources``: ``name``, ``status``, ``lines``, ``bytes``, ``lag_bytes``, ``problems`` and
  ``streams``: one per file (``most_lagging[]`` of the source's status: ``path``, ``lag_bytes``) and
  one per container (``stats.containers[]``: ``name``, ``unacked_bytes`` as its lag, and
  ``lag_seconds`` if reported), each ``kind``, ``name``, ``lag_bytes`` (None if unknown); at
  most :data:`STREAMS_SHOWN` per source, the largest lags first, and ``streams_total``;
- ``sinks``: ``name``, ``status``, ``sent``, ``failed``, ``rejected``, ``dropped`` (lines, by
  outcome), ``retries`` (requests by reason other than ``ok``);
- ``buffer``: ``enabled`` and, when on, ``bytes``, ``capacity``, ``oldest_age_s``,
  ``backlog`` (records not yet sent, by sink); the counts are None while it is not running;
- ``dlq``: ``enabled`` and, when on, ``entries``, ``lines``, ``bytes`` (None while it is not
  running);
- ``errors``: the recent warnings and errors of logcap's own log, newest last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import Metric

__all__ = ["STREAMS_SHOWN", "counter_totals", "rates", "summarize"]

_SOURCE_LINES = "logcap_source_lines"
_SOURCE_BYTES = "logcap_source_bytes"
_SINK_LINES = "logcap_sink_lines"
_SINK_REQUESTS = "logcap_sink_requests"
SINK_OUTCOMES = ("sent", "failed", "rejected", "dropped")
STREAMS_SHOWN = 50
"""Streams listed per source (a source may follow thousands of files)."""
OK_REASON = "ok"


def counter_totals(families: Iterable[Metric]) -> dict[str, dict[str, dict[str, float]]]:
    """From collected families: ``sources[name]`` -> ``{lines, bytes}``, ``sinks[name]`` ->
    lines by outcome, ``requests[sink]`` -> requests by reason."""
    out: dict[str, dict[str, dict[str, float]]] = {"sources": {}, "sinks": {}, "requests": {}}
    for family in families:
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # the _created samples
            labels = sample.labels
            if family.name in (_SOURCE_LINES, _SOURCE_BYTES):
                key = "lines" if family.name == _SOURCE_LINES else "bytes"
                out["sources"].setdefault(labels["source"], {})[key] = sample.value
            elif family.name == _SINK_LINES:
                out["sinks"].setdefault(labels["sink"], {})[labels["outcome"]] = sample.value
            elif family.name == _SINK_REQUESTS:
                out["requests"].setdefault(labels["sink"], {})[labels["reason"]] = sample.value
    return out


def _component(row: Mapping[str, Any]) -> dict[str, Any]:
    mailbox = row.get("mailbox") or {}
    return {"name": row["name"], "status": row["status"], "restarts": row["restarts"],
            "crashes": row["crashes"], "last_error": row["last_error"],
            "mailbox_depth": mailbox.get("data_depth"),
            "mailbox_capacity": mailbox.get("capacity")}


def _streams(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    streams = [{"kind": "file", "name": f["path"], "lag_bytes": f.get("lag_bytes")}
               for f in status.get("most_lagging", [])]
    for c in status.get("stats", {}).get("containers", []):
        streams.append({"kind": "container", "name": c.get("name") or c.get("id", "?"),
                        "lag_bytes": c.get("unacked_bytes"),
                        "lag_seconds": c.get("lag_seconds")})
    streams.sort(key=lambda x: (-(x["lag_bytes"] or 0), x["name"]))
    return streams


def _stream_count(status: Mapping[str, Any]) -> int:
    """Files followed (the status's ``files`` count) plus containers."""
    files = status.get("files", 0)
    return (files if isinstance(files, int) else 0) \
        + len(status.get("stats", {}).get("containers", []))


def summarize(*, now: float, uptime_s: float, version: str, healthy: bool,
              rows: Sequence[Mapping[str, Any]], sources: Mapping[str, Mapping[str, Any]],
              sinks: Mapping[str, str], totals: Mapping[str, Mapping[str, Mapping[str, float]]],
              buffer: Mapping[str, Any] | None, buffer_capacity: int,
              dlq: Mapping[str, Any] | None,
              errors: Sequence[Mapping[str, Any]], health: str = "",
              troubles: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The summary (see the module docstring). ``rows`` are the tree's rows (``/stats``),
    ``sources`` each source's status by its actor name (``{}`` for one not running), ``sinks``
    each sink's actor name (in ``rows``) by the sink's name;
    ``buffer``/``dlq`` their stats, ``{}`` when enabled and not running, None when disabled."""
    by_name = {row["name"]: row for row in rows}
    source_rows = []
    for actor, status in sources.items():
        name = status.get("source", actor.rsplit("/", 1)[-1])
        counts = totals["sources"].get(name, {})
        streams = _streams(status)
        source_rows.append({
            "name": name, "status": by_name.get(actor, {}).get("status", "unknown"),
            "lines": int(counts.get("lines", 0)), "bytes": int(counts.get("bytes", 0)),
            "lag_bytes": status.get("lag_bytes"),
            "problems": [f"{path}: {why}" for path, why in status.get("errors", {}).items()],
            "streams": streams[:STREAMS_SHOWN], "streams_total": _stream_count(status)})
    sink_rows = []
    for name, actor in sinks.items():
        lines = totals["sinks"].get(name, {})
        requests = totals["requests"].get(name, {})
        sink_rows.append({
            "name": name, "status": by_name.get(actor, {}).get("status", "unknown"),
            **{outcome: int(lines.get(outcome, 0)) for outcome in SINK_OUTCOMES},
            "retries": {r: int(n) for r, n in sorted(requests.items()) if r != OK_REASON}})
    buffer_view: dict[str, Any] = {"enabled": buffer is not None}
    if buffer is not None:
        age = buffer.get("oldest_age_s")
        buffer_view.update(
            bytes=buffer.get("bytes"), capacity=buffer_capacity,
            oldest_age_s=None if age is None else round(age, 1),
            backlog={s: row["lag_batches"] for s, row in buffer.get("sinks", {}).items()})
    dlq_view: dict[str, Any] = {"enabled": dlq is not None}
    if dlq is not None:
        dlq_view.update(entries=dlq.get("entries"), lines=dlq.get("lines"),
                        bytes=dlq.get("total_bytes"))
    return {"time": now, "uptime_s": round(uptime_s, 1), "version": version,
            "healthy": healthy, "health": health or ("ok" if healthy else "degraded"),
            "troubles": list(troubles), "components": [_component(r) for r in rows],
            "sources": source_rows, "sinks": sink_rows, "buffer": buffer_view,
            "dlq": dlq_view, "errors": list(errors)}


def rates(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Lines per second between two summaries: ``sources[name]`` (lines read) and
    ``sinks[name]`` -> ``{sent, failed}``. Empty when they are not in time order; a counter
    that went down (the agent restarted) counts from zero."""
    dt = float(current["time"]) - float(previous["time"])
    if dt <= 0:
        return {"sources": {}, "sinks": {}}

    def per_s(now: float, before: float) -> float:
        return round((now - before if now >= before else now) / dt, 1)

    before_sources = {s["name"]: s for s in previous["sources"]}
    before_sinks = {s["name"]: s for s in previous["sinks"]}
    return {
        "sources": {s["name"]: per_s(s["lines"], before_sources.get(s["name"], {}).get(
            "lines", 0)) for s in current["sources"]},
        "sinks": {s["name"]: {k: per_s(s[k], before_sinks.get(s["name"], {}).get(k, 0))
                              for k in ("sent", "failed")} for s in current["sinks"]},
    }
