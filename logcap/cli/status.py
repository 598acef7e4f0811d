"""``logcap status``: the status page's summary in a terminal.

Reads ``GET /status.json`` of the running agent (``--url``, or the config's ``server`` section
with ``-c``; see :mod:`logcap.cli.endpoint`) twice, ``--interval`` seconds apart, and prints
the second with the lines per second between the two (:func:`logcap.api.status.rates`):
health, sources (lines/s, totals, lag), sinks (sent/s, failed/s, outcomes, retries by
reason), lag per file and container, disk buffer and DLQ, components that are not running or
have restarted, and the recent warnings and errors. ``--json`` prints the summary and the rates
as one JSON document.

Exit codes: 0 healthy (``ok``); 1 the agent is unreachable, failing or degraded; 2 bad input.
(The container HEALTHCHECK asks ``/health``, which is 200 for ``degraded`` too: a restart
would not help a degraded agent, while an operator asking ``logcap status`` wants to know.)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from logcap.api.status import rates
from logcap.cli.endpoint import DEFAULT_URL, admin_endpoint
from logcap.config import ConfigError

__all__ = ["DEFAULT_INTERVAL_S", "add_subcommand", "format_status", "run"]

DEFAULT_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 10.0
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
RECENT_ERRORS_SHOWN = 10


def add_subcommand(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="summary of the running agent")
    parser.add_argument("-c", "--config", help="config file giving the admin API's address")
    parser.add_argument("--url", help=f"the agent's admin API (default {DEFAULT_URL})")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                        help="seconds between the two samples the rates come from (0: no "
                             "rates)")
    parser.add_argument("--json", action="store_true", help="print JSON")


class _Unreachable(Exception):
    pass


def _fetch(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}/status.json", timeout=REQUEST_TIMEOUT_S) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("detail") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        raise _Unreachable(f"the agent at {url} failed ({exc.code}): {reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Unreachable(f"cannot reach the agent at {url}: "
                           f"{getattr(exc, 'reason', exc)}") from exc


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def format_status(doc: Mapping[str, Any], per_s: Mapping[str, Any] | None) -> str:
    """The summary as text lines; ``per_s`` from :func:`rates` (None: no rates)."""
    source_rates = (per_s or {}).get("sources", {})
    sink_rates = (per_s or {}).get("sinks", {})
    state = doc.get("health") or ("ok" if doc["healthy"] else "degraded")
    out = [f"logcap {doc['version']}: {state if state == 'ok' else state.upper()}, up "
           f"{doc['uptime_s']:.0f}s"]
    for trouble in doc.get("troubles", []):
        since = "" if trouble.get("since") is None else " since " + time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(trouble["since"]))
        out.append(f"  {trouble['name']} {trouble['health']}{since}: {trouble['reason']}")
    out.append("sources:")
    for s in doc["sources"]:
        out.append(f"  {s['name']} [{s['status']}] in {_rate(source_rates.get(s['name']))} "
                   f"lines={s['lines']:,} lag={_size(s['lag_bytes'])}")
        out += [f"    problem: {p}" for p in s["problems"]]
    out.append("sinks:")
    for s in doc["sinks"]:
        r = sink_rates.get(s["name"], {})
        retries = ", ".join(f"{k}={v}" for k, v in s["retries"].items()) or "none"
        out.append(f"  {s['name']} [{s['status']}] sent {_rate(r.get('sent'))} failed "
                   f"{_rate(r.get('failed'))} sent={s['sent']:,} failed={s['failed']:,} "
                   f"rejected={s['rejected']:,} dropped={s['dropped']:,} retries: {retries}")
    streams = [(s["name"], x) for s in doc["sources"] for x in s["streams"]]
    if streams:
        out.append("lag per stream:")
    for source, x in streams:
        seconds = "" if x.get("lag_seconds") is None else f" {x['lag_seconds']:.1f}s"
        out.append(f"  {source} {x['kind']} {x['name']}: {_size(x['lag_bytes'])}{seconds}")
    hidden = sum(s["streams_total"] - len(s["streams"]) for s in doc["sources"])
    if hidden:
        out.append(f"  ... {hidden:,} more (the largest lags are shown)")
    buffer, dlq = doc["buffer"], doc["dlq"]
    if buffer["enabled"]:
        backlog = ", ".join(f"{k}={v}" for k, v in buffer["backlog"].items()) or "-"
        age = "-" if buffer["oldest_age_s"] is None else f"{buffer['oldest_age_s']:.0f}s"
        out.append(f"disk buffer: {_size(buffer['bytes'])} of {_size(buffer['capacity'])}, "
                   f"oldest {age}, records not yet sent: {backlog}")
    else:
        out.append("disk buffer: off")
    out.append(f"dlq: {_count(dlq['entries'])} entries, {_count(dlq['lines'])} lines, "
               f"{_size(dlq['bytes'])}" if dlq["enabled"] else "dlq: disabled")
    troubled = [c for c in doc["components"] if c["status"] != "running" or c["restarts"]]
    out.append(f"components: {len(doc['components'])}, "
               f"{sum(c['status'] == 'running' for c in doc['components'])} running")
    for c in troubled:
        error = f": {c['last_error']}" if c["last_error"] else ""
        out.append(f"  {c['name']} [{c['status']}] restarts={c['restarts']}{error}")
    errors = doc["errors"][-RECENT_ERRORS_SHOWN:]
    out.append(f"recent warnings and errors: {len(doc['errors'])}")
    for e in errors:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["time"]))
        out.append(f"  {when} {e['level']} {e['logger']}: {e['message']}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Run ``logcap status`` as parsed by :func:`add_subcommand`'s parser."""
    if args.interval < 0:
        print("logcap: --interval must not be negative", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        url, _ = admin_endpoint(args.url, None, args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        doc = _fetch(url)
        per_s = None
        if args.interval > 0:
            threading.Event().wait(args.interval)
            first, doc = doc, _fetch(url)
            per_s = rates(first, doc)
    except _Unreachable as exc:
        print(f"logcap: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"status": doc, "rates": per_s}, indent=2))
    else:
        print(format_status(doc, per_s))
    return EXIT_OK if doc["healthy"] else EXIT_FAILED
