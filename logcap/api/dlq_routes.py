"""The admin API's DLQ endpoints.

* ``GET /dlq/stats``: the DLQ's entries, lines and bytes by sink and by reason, oldest and
  newest entry, the reprocessing under way (``backend.dlq_stats()``). Read-only: no token.
* ``POST /dlq/reprocess``: re-send DLQ entries; idempotent (an entry is re-sent at most once,
  however often or concurrently this is called). Needs the admin token (401 without or with a
  wrong one, 403 when none is configured). The body is a JSON object, every key optional::

      {"sink": "loki", "reason": "bad_request", "ids": ["<32 hex>", ...],
       "since": 1700000000 | "2023-11-14T22:13:20Z", "until": ..., "dry_run": false}

  ``since``/``until`` (unix seconds, or RFC 3339 with a time zone) bound, inclusively, when an
  entry was dead-lettered. An empty body selects every entry. Unknown keys, wrong types, a
  malformed id or time, ``since`` after ``until``: 400 with the reason. The answer (200) is the
  backend's: ``queued`` ids, ``skipped_already_reprocessed`` ids, and so on.

A backend that does not answer in time (:class:`~logcap.api.errors.BackendTimeout`) gives 503.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request

from logcap.api.errors import BackendTimeout
from logcap.state.dlq import is_entry_id

__all__ = ["REPROCESS_KEYS", "DlqBackend", "FilterError", "parse_reprocess_filters",
           "register_dlq_routes"]

REPROCESS_KEYS = ("sink", "reason", "ids", "since", "until", "dry_run")
MAX_IDS = 100_000


class DlqBackend(Protocol):
    """What the DLQ endpoints need from the running agent; each call is bounded in time and
    raises :class:`~logcap.api.errors.BackendTimeout` past it."""

    def dlq_stats(self) -> dict[str, Any]: ...

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]: ...


class FilterError(ValueError):
    """A reprocess filter is invalid; the message says which and why."""


def _time(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise FilterError(f"{key}: must be a non-negative finite number of unix seconds")
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise FilterError(f"{key}: {value!r} is not an RFC 3339 time") from None
        if parsed.tzinfo is None:
            raise FilterError(f"{key}: {value!r} has no time zone (add Z or an offset)")
        return parsed.timestamp()
    raise FilterError(f"{key}: expected unix seconds or an RFC 3339 string")


def _name(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise FilterError(f"{key}: expected a non-empty string")
    return value


def parse_reprocess_filters(body: Any) -> dict[str, Any]:
    """Validate a reprocess body; return the normalised filters (every key of
    :data:`REPROCESS_KEYS`, times as unix seconds, ids as a list or None)."""
    if not isinstance(body, dict):
        raise FilterError("the body must be a JSON object")
    unknown = sorted(set(body) - set(REPROCESS_KEYS))
    if unknown:
        raise FilterError(f"unknown keys {unknown}; allowed: {', '.join(REPROCESS_KEYS)}")
    ids = body.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or len(ids) > MAX_IDS:
            raise FilterError(f"ids: expected a list of at most {MAX_IDS} entry ids")
        bad = [i for i in ids if not isinstance(i, str) or not is_entry_id(i)]
        if bad:
            raise FilterError(f"ids: {str(bad[0])[:80]!r} is not an entry id (32 hex digits)")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise FilterError("dry_run: expected true or false")
    since, until = _time("since", body.get("since")), _time("until", body.get("until"))
    if since is not None and until is not None and since > until:
        raise FilterError("since: must not be after until")
    return {"sink": _name("sink", body.get("sink")), "reason": _name("reason", body.get("reason")),
            "ids": ids, "since": since, "until": until, "dry_run": dry_run}


def _error(status: int, detail: str) -> Response:
    resp = jsonify({"error": detail})
    resp.status_code = status
    return resp


def _timeout(exc: BackendTimeout) -> Any:
    return jsonify({"error": "timeout", "detail": str(exc)}), 503


def register_dlq_routes(app: Flask, backend: DlqBackend,
                        authorized: Callable[[], Response | None]) -> None:
    """Add ``GET /dlq/stats`` and ``POST /dlq/reprocess`` to ``app`` (module docstring);
    ``authorized()`` returns None for a request with the admin token, else the response."""

    @app.get("/dlq/stats")
    def dlq_stats() -> Any:
        try:
            return jsonify(backend.dlq_stats())
        except BackendTimeout as exc:
            return _timeout(exc)

    @app.post("/dlq/reprocess")
    def dlq_reprocess() -> Any:
        refused = authorized()
        if refused is not None:
            return refused
        raw = request.get_data()
        try:
            filters = parse_reprocess_filters(json.loads(raw) if raw.strip() else {})
        except (ValueError, UnicodeDecodeError) as exc:  # FilterError, JSONDecodeError
            reason = str(exc) if isinstance(exc, FilterError) else "the body is not valid JSON"
            return _error(400, reason)
        try:
            return jsonify(backend.dlq_reprocess(filters))
        except BackendTimeout as exc:
            return _timeout(exc)
