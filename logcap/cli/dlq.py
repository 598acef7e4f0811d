"""The ``logcap dlq ...`` and ``logcap buffer verify`` commands.

``logcap dlq stats|list|show ID`` read the DLQ directory offline (``--dir``, by default the
``dlq.directory`` of the config given with ``-c``, ``$LOGCAP_CONFIG`` or the default path); they
never modify it and can run beside a live agent. ``logcap dlq reprocess`` asks the running
agent (``POST /dlq/reprocess`` on ``--url``, with ``--token`` or ``$LOGCAP_ADMIN_TOKEN``),
because only the agent can send. ``logcap buffer verify DIR`` checks a disk-buffer directory
(read-only) and prints the report.

Long work shows its progress on stderr when stderr is a terminal, and nothing in a pipe
(:class:`~logcap.cli.progress.Progress`): ``buffer verify`` (bytes checked), ``dlq list``
(entries read; only when stdout is not that terminal, since the listing is then the progress)
and ``dlq reprocess --wait`` (entries sent back, polling ``GET /dlq/stats``).

Exit codes: 0 success (for ``buffer verify``: nothing found); 1 failure (problems found, the
agent unreachable or failing); 2 bad input (a missing directory, a malformed or unknown id,
bad filters, an invalid config, a refused token), as one clear line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from logcap.api.dlq_routes import FilterError, parse_reprocess_filters
from logcap.cli.endpoint import DEFAULT_URL, TOKEN_ENV, admin_endpoint
from logcap.cli.progress import Progress
from logcap.config import ConfigError, load_config, resolve_config_path
from logcap.state.buffer.crypto import Cipher, KeyLoadError, load_key
from logcap.state.buffer.verify import verify_directory
from logcap.state.dlq import DeadLetterStore, DlqFilter, is_entry_id

__all__ = ["COMMANDS", "DEFAULT_URL", "add_subcommands", "run"]

COMMANDS = ("dlq", "buffer")
REQUEST_TIMEOUT_S = 30.0
DEFAULT_WAIT_TIMEOUT_S = 600.0
WAIT_POLL_S = 0.5
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_DETAIL_CHARS = 100


class _BadInput(Exception):
    """One line for stderr; exit 2."""


def add_subcommands(subparsers: Any) -> None:
    """Add ``dlq`` and ``buffer`` to the ``logcap`` command's subparsers."""
    dlq = subparsers.add_parser("dlq", help="inspect and reprocess the dead-letter queue")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)

    def offline(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = dsub.add_parser(name, help=help_text)
        parser.add_argument("-c", "--config", help="config file giving dlq.directory")
        parser.add_argument("--dir", help="the DLQ directory (overrides the config)")
        return parser

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sink", help="only entries for this sink")
        parser.add_argument("--reason", help="only entries with this reason")
        parser.add_argument("--since", help="dead-lettered at or after (unix s or RFC 3339)")
        parser.add_argument("--until", help="dead-lettered at or before (unix s or RFC 3339)")

    offline("stats", "entries, lines and bytes by sink and reason").add_argument(
        "--json", action="store_true", help="print JSON")
    listing = offline("list", "one line per entry, oldest first")
    filters(listing)
    listing.add_argument("--json", action="store_true", help="one JSON summary per line")
    offline("show", "print one entry's JSON document").add_argument("id", help="entry id")
    again = dsub.add_parser("reprocess", help="ask the running agent to re-send entries")
    filters(again)
    again.add_argument("--id", action="append", dest="ids", metavar="ID",
                       help="only this entry (repeatable)")
    again.add_argument("--dry-run", action="store_true", help="only say what would be sent")
    again.add_argument("-c", "--config", help="config file giving the API port and token")
    again.add_argument("--url", help=f"the agent's admin API (default {DEFAULT_URL})")
    again.add_argument("--token", help=f"admin token (default ${TOKEN_ENV})")
    again.add_argument("--json", action="store_true", help="print the agent's JSON answer")
    again.add_argument("--wait", action="store_true",
                       help="wait until the agent has sent every queued entry (progress on a "
                            "terminal)")
    again.add_argument("--wait-timeout", type=float, default=DEFAULT_WAIT_TIMEOUT_S,
                       metavar="SECONDS", help="give up waiting after this long (exit 1; "
                       f"default {DEFAULT_WAIT_TIMEOUT_S:.0f})")

    buffer = subparsers.add_parser("buffer", help="disk-buffer tools")
    bsub = buffer.add_subparsers(dest="buffer_command", required=True)
    verify = bsub.add_parser("verify", help="check a disk-buffer directory (read-only)")
    verify.add_argument("directory", metavar="DIR")
    verify.add_argument("--key-file", help="key file, for an encrypted buffer")
    verify.add_argument("--key-env", help="environment variable holding the key")
    verify.add_argument("--no-decode", action="store_true",
                        help="check framing and checksums only, not the payloads")


def run(args: argparse.Namespace) -> int:
    """Run a ``dlq`` or ``buffer`` command parsed by a parser from :func:`add_subcommands`."""
    try:
        if args.command == "buffer":
            return _verify(args)
        if args.dlq_command == "reprocess":
            return _reprocess(args)
        store = _open_store(args)
        if args.dlq_command == "stats":
            return _stats(store, args.json)
        if args.dlq_command == "list":
            return _list(store, args)
        return _show(store, args.id)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except _BadInput as exc:
        print(f"logcap: {exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _open_store(args: argparse.Namespace) -> DeadLetterStore:
    config = None
    if args.dir:
        directory = args.dir
    else:
        config = load_config(resolve_config_path(args.config, os.environ), os.environ)
        directory = config.dlq.directory
    if not os.path.isdir(directory):
        raise _BadInput(f"DLQ directory {directory!r} does not exist")
    store = DeadLetterStore(directory, config.dlq.max_total_size if config else 1 << 62,
                            config.dlq.retention_period if config else float("inf"))
    try:
        problems = store.open()
    except OSError as exc:
        raise _BadInput(f"DLQ directory {directory!r}: {exc.strerror or exc}") from exc
    for problem in problems:
        print(f"logcap: warning: {problem}", file=sys.stderr)
    return store


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _print_json(doc: Any, indent: int | None = None) -> None:
    try:
        print(json.dumps(doc, indent=indent, ensure_ascii=False))
    except UnicodeEncodeError:  # lone surrogates, or a terminal that is not UTF-8
        print(json.dumps(doc, indent=indent))


def _stats(store: DeadLetterStore, as_json: bool) -> int:
    stats = store.stats()
    if as_json:
        _print_json(stats, indent=2)
        return EXIT_OK
    print(f"{store.directory}: {stats['entries']} entries, {stats['lines']} lines, "
          f"{stats['total_bytes']} bytes in {stats['files']} files")
    print(f"oldest {_when(stats['oldest_entry_time'])}, newest "
          f"{_when(stats['newest_entry_time'])}; {stats['reprocessed']} entries reprocessed")
    for key, title in (("by_sink", "by sink"), ("by_reason", "by reason")):
        if stats[key]:
            print(f"{title}:")
        for name, row in sorted(stats[key].items()):
            print(f"  {name}: {row['entries']} entries, {row['lines']} lines, "
                  f"{row['bytes']} bytes")
    return EXIT_OK


def _filters(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {key: getattr(args, key) for key in ("sink", "reason", "since",
                                                                "until")}
    for key in ("since", "until"):
        try:
            body[key] = float(body[key])
        except (TypeError, ValueError):
            pass  # None, or an RFC 3339 string
    try:
        return parse_reprocess_filters({k: v for k, v in {**body, **extra}.items()
                                        if v is not None})
    except FilterError as exc:
        raise _BadInput(str(exc).replace("ids: ", "--id: ", 1)) from exc


def _list(store: DeadLetterStore, args: argparse.Namespace) -> int:
    f = _filters(args)
    filtered = any(f[key] is not None for key in ("sink", "reason", "since", "until"))
    progress = Progress("listing DLQ entries", None if filtered else store.stats()["entries"],
                        unit="entries",
                        enabled=sys.stderr.isatty() and not sys.stdout.isatty())
    for entry in store.entries(DlqFilter(f["sink"], f["reason"], None, f["since"], f["until"])):
        progress.advance()
        summary = {"id": entry.id, "time": entry.last_failure, "sink": entry.sink,
                   "reason": entry.reason, "status_code": entry.status_code,
                   "attempts": entry.attempts, "lines": entry.line_count,
                   "detail": entry.detail[:_DETAIL_CHARS]}
        if args.json:
            _print_json(summary)
        else:
            status = "-" if entry.status_code is None else entry.status_code
            print(f"{entry.id}  {_when(entry.last_failure)}  sink={entry.sink} "
                  f"reason={entry.reason} status={status} attempts={entry.attempts} "
                  f"lines={entry.line_count}  {summary['detail']!r}")
    progress.done()
    return EXIT_OK


def _show(store: DeadLetterStore, entry_id: str) -> int:
    if not is_entry_id(entry_id):
        raise _BadInput(f"{entry_id[:80]!r} is not an entry id (32 hex digits)")
    entry = store.get(entry_id)
    if entry is None:
        raise _BadInput(f"no entry {entry_id} in {store.directory}")
    _print_json(entry.document(), indent=2)
    return EXIT_OK


def _reprocess(args: argparse.Namespace) -> int:
    body = _filters(args, ids=args.ids, dry_run=args.dry_run or None)
    url, token = admin_endpoint(args.url, args.token, args.config)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{url}/dlq/reprocess", json.dumps(body).encode(), headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            reason = exc.reason
        if exc.code in (400, 401, 403):
            raise _BadInput(f"the agent refused the request ({exc.code}): {reason}") from exc
        print(f"logcap: the agent failed ({exc.code}): {reason}", file=sys.stderr)
        return EXIT_FAILED
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"logcap: cannot reach the agent at {url}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(answer, indent=2)
        return EXIT_OK
    verb = "would queue" if answer.get("dry_run") else "queued"
    print(f"{answer.get('matched', 0)} entries matched; {verb} {len(answer.get('queued', []))}; "
          f"{len(answer.get('skipped_already_reprocessed', []))} already reprocessed; "
          f"{len(answer.get('skipped_unknown_sink', []))} for sinks not running")
    for entry_id in answer.get("queued", []):
        print(f"  {entry_id}")
    for entry_id in answer.get("not_found", []):
        print(f"logcap: warning: no entry {entry_id} matches", file=sys.stderr)
    if args.wait and answer.get("queued") and not answer.get("dry_run"):
        return _wait_sent(url, len(answer["queued"]), args.wait_timeout)
    return EXIT_OK


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as resp:
        return json.loads(resp.read())


def _wait_sent(url: str, queued: int, timeout_s: float) -> int:
    """Poll ``/dlq/stats`` until the DLQ's reprocessing is idle (queued and in flight 0)."""
    progress = Progress("sending DLQ entries back", queued, unit="entries")
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    try:
        while True:
            try:
                busy = _get_json(f"{url}/dlq/stats")["reprocessing"]
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                reason = getattr(exc, "reason", exc)
                print(f"logcap: lost the agent at {url} while waiting: {reason}",
                      file=sys.stderr)
                return EXIT_FAILED
            left = busy["queued"] + busy["in_flight"]
            progress.update(queued - min(left, queued))
            if left == 0:
                break
            if time.monotonic() > deadline:
                progress.done()
                print(f"logcap: {left} entries still being sent after {timeout_s:.0f}s "
                      "(they stay in the DLQ's queue; see GET /dlq/stats)", file=sys.stderr)
                return EXIT_FAILED
            pause.wait(WAIT_POLL_S)
    finally:
        progress.done()
    print(f"sent back: the agent's reprocessing queue is empty ({queued} entries queued)")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.directory):
        raise _BadInput(f"buffer directory {args.directory!r} does not exist")
    cipher = None
    if args.key_file or args.key_env:
        try:
            cipher = Cipher(load_key(key_env=args.key_env or "", key_file=args.key_file or ""))
        except KeyLoadError as exc:
            raise _BadInput(str(exc)) from exc
    progress = Progress(f"verifying {args.directory}", unit="bytes")
    try:
        report = verify_directory(args.directory, cipher=cipher, decode=not args.no_decode,
                                  progress=progress.update)
    except OSError as exc:
        raise _BadInput(f"buffer directory {args.directory!r}: {exc.strerror or exc}") from exc
    finally:
        progress.done()
    print(report.format())
    return EXIT_OK if report.ok else EXIT_FAILED
