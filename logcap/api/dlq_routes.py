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

import json
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request

from logcap.api.dlq_filters import FilterError, parse_reprocess_filters
from logcap.api.errors import BackendTimeout

__all__ = ["DlqBackend", "register_dlq_routes"]

class DlqBackend(Protocol):
    """What the DLQ endpoints need from the running agent; each call is bounded in time and
    raises :class:`~logcap.api.errors.BackendTimeout` past it."""

    def dlq_stats(self) -> dict[str, Any]: ...

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]: ...


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
