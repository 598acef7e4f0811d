"""Reprocess filters of the DLQ: the body of ``POST /dlq/reprocess`` and of ``logcap dlq
reprocess``, checked and normalised (plain logic: no web framework, so the command line does
not import one).

Every key is optional: ``sink``, ``reason`` (non-empty strings), ``ids`` (at most
:data:`MAX_IDS` entry ids of 32 hex digits), ``since``/``until`` (unix seconds, or RFC 3339 with
a time zone; inclusive bounds of when an entry was dead-lettered), ``dry_run`` (a boolean).
Unknown keys, wrong types, a malformed id or time, ``since`` after ``until``:
:class:`FilterError` with the reason.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from logcap.state.dlq import is_entry_id

__all__ = ["MAX_IDS", "REPROCESS_KEYS", "FilterError", "parse_reprocess_filters"]

REPROCESS_KEYS = ("sink", "reason", "ids", "since", "until", "dry_run")
MAX_IDS = 100_000


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
