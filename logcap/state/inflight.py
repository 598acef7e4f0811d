"""Persisted in-flight batches: what each sink has been sent from the disk buffer and not yet
acknowledged, with its attempts and last error (the batch persistence seed).

A batch is a buffer record, named by its sink and seq (``"loki:1042"``); the seq is stable
across restarts, so a batch's history survives them. The rules:

- :meth:`InflightBatches.sent` is called as a batch goes to its sink: it creates the record
  (attempt 1) or counts one more attempt (a resend after a failure or after the sink restarted);
- :meth:`InflightBatches.done` removes it (delivered, or rejected for good and dead-lettered);
- :meth:`InflightBatches.failed` records the error and the next retry time and says whether to
  retry (:data:`RETRY`) or give the batch up to the DLQ: :data:`EXHAUSTED` once it failed
  ``max_recovery_retries + 1`` times (so 0 means "no resend"), :data:`EXPIRED` once its first
  failure is ``batch_ttl`` old;
- :meth:`InflightBatches.overdue` lists batches sent and unanswered for ``batch_timeout``.

The records are kept in memory and written to ``<directory>/inflight.json`` by
:meth:`InflightBatches.persist` (crash-safe replace, see :mod:`logcap.state.atomic`) when they
changed; the buffer calls it at each group commit and once a second, so after a crash the
attempts counted are at most about a second behind. A missing file is an empty set; a corrupt
one is set aside (``inflight.json.corrupt-<time>``), reported, and the set starts empty:
attempts restart from zero, no line is lost (the lines are in the buffer, behind the sink's
cursor).

File format (version 1): ``{"version": 1, "written_at": <unix s>, "batches": [record, ...]}``
with each record ``{"sink", "seq", "lines", "attempts", "first_sent", "last_sent", "failures",
"first_failure", "last_failure", "last_error", "next_retry_at"}`` (times in unix seconds, null
when not yet).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from logcap.state.atomic import atomic_write_bytes, move_aside, remove_stale_temp_files

__all__ = [
    "EXHAUSTED",
    "EXPIRED",
    "FORMAT_VERSION",
    "INFLIGHT_FILE",
    "RETRY",
    "InflightBatch",
    "InflightBatches",
]

FORMAT_VERSION = 1
INFLIGHT_FILE = "inflight.json"
CORRUPT_INFIX = ".corrupt-"
RETRY = "retry"
EXHAUSTED = "retries_exhausted"
EXPIRED = "expired"
MAX_ERROR_CHARS = 300


@dataclass(slots=True)
class InflightBatch:
    """One batch sent (or to be resent) to ``sink``; times are unix seconds."""

    sink: str
    seq: int
    lines: int
    attempts: int
    first_sent: float
    last_sent: float
    failures: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    last_error: str = ""
    next_retry_at: float | None = None

    @property
    def id(self) -> str:
        return f"{self.sink}:{self.seq}"


class InflightBatches:
    """The in-flight batches of every sink (module docstring), persisted in ``directory``."""

    def __init__(self, directory: str, *, max_recovery_retries: int, batch_ttl_s: float,
                 batch_timeout_s: float) -> None:
        self.directory = directory
        self.path = os.path.join(directory, INFLIGHT_FILE)
        self.max_recovery_retries = max_recovery_retries
        self.batch_ttl_s = batch_ttl_s
        self.batch_timeout_s = batch_timeout_s
        self._batches: dict[tuple[str, int], InflightBatch] = {}
        self._dirty = False
        self._reported_overdue: set[tuple[str, int]] = set()

    # -- loading and saving ----------------------------------------------------------------

    def load(self, now: float) -> list[str]:
        """Read the file (creating ``directory``); return the problems found (each names the
        file). Raises OSError when the directory cannot be created or read."""
        os.makedirs(self.directory, exist_ok=True)
        remove_stale_temp_files(self.path)
        self._batches.clear()
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        try:
            for batch in _parse(data):
                self._batches[(batch.sink, batch.seq)] = batch
        except ValueError as exc:
            aside = move_aside(self.path, CORRUPT_INFIX, now)
            return [f"{self.path}: {exc}; set aside as {aside}, attempts start from zero"]
        return []

    def persist(self, now: float) -> bool:
        """Write the records if they changed since the last write; True if written.
        Raises OSError (the records stay dirty and are written next time)."""
        if not self._dirty:
            return False
        doc = {"version": FORMAT_VERSION, "written_at": now,
               "batches": [asdict(b) for b in sorted(self._batches.values(),
                                                     key=lambda b: (b.sink, b.seq))]}
        atomic_write_bytes(self.path, json.dumps(doc, separators=(",", ":")).encode())
        self._dirty = False
        return True

    # -- the rules -------------------------------------------------------------------------

    def sent(self, sink: str, seq: int, lines: int, now: float) -> InflightBatch:
        """Record that ``sink``'s batch ``seq`` is being sent; returns its record."""
        batch = self._batches.get((sink, seq))
        if batch is None:
            batch = InflightBatch(sink, seq, lines, 0, now, now)
            self._batches[(sink, seq)] = batch
        batch.attempts += 1
        batch.last_sent = now
        batch.next_retry_at = None
        self._dirty = True
        return batch

    def failed(self, sink: str, seq: int, error: str, retry_in_s: float, now: float) -> str:
        """Record a failed attempt; return :data:`RETRY`, :data:`EXHAUSTED` or :data:`EXPIRED`."""
        batch = self._batches.get((sink, seq))
        if batch is None:  # not recorded as sent (e.g. the file was corrupt): count it now
            batch = self.sent(sink, seq, 0, now)
        if batch.first_failure is None:
            batch.first_failure = now
        batch.failures += 1
        batch.last_failure = now
        batch.last_error = error[:MAX_ERROR_CHARS]
        batch.next_retry_at = now + retry_in_s
        self._dirty = True
        self._reported_overdue.discard((sink, seq))
        if batch.failures > self.max_recovery_retries:
            return EXHAUSTED
        if now - batch.first_failure >= self.batch_ttl_s:
            return EXPIRED
        return RETRY

    def done(self, sink: str, seq: int) -> InflightBatch | None:
        """Remove the record (delivered, or handed to the DLQ); returns it if there was one."""
        self._reported_overdue.discard((sink, seq))
        batch = self._batches.pop((sink, seq), None)
        if batch is not None:
            self._dirty = True
        return batch

    def get(self, sink: str, seq: int) -> InflightBatch | None:
        return self._batches.get((sink, seq))

    def forget_settled(self, acked: Mapping[str, int]) -> int:
        """Keep only the records of the sinks in ``acked`` (sink -> its acknowledged cursor)
        above that cursor; return how many were dropped."""
        gone = [key for key in self._batches if key[0] not in acked or key[1] <= acked[key[0]]]
        for key in gone:
            del self._batches[key]
        self._dirty = self._dirty or bool(gone)
        return len(gone)

    def overdue(self, now: float) -> list[InflightBatch]:
        """Batches sent and unanswered for ``batch_timeout`` not reported before (each batch
        is reported once per attempt)."""
        out = []
        for key, batch in self._batches.items():
            waiting = batch.next_retry_at is None and now - batch.last_sent >= self.batch_timeout_s
            if waiting and key not in self._reported_overdue:
                self._reported_overdue.add(key)
                out.append(batch)
        return out

    def pending(self, sinks: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """Per sink with records (and per sink of ``sinks``, even without): batches, lines,
        how many are failing, the most attempts, and the records."""
        out: dict[str, dict[str, Any]] = {sink: _empty_row() for sink in sinks}
        for batch in sorted(self._batches.values(), key=lambda b: (b.sink, b.seq)):
            row = out.setdefault(batch.sink, _empty_row())
            row["batches"] += 1
            row["lines"] += batch.lines
            row["failing"] += batch.next_retry_at is not None
            row["max_attempts"] = max(row["max_attempts"], batch.attempts)
            row["records"].append({"id": batch.id, **asdict(batch)})
        return out

    def __len__(self) -> int:
        return len(self._batches)


def _empty_row() -> dict[str, Any]:
    return {"batches": 0, "lines": 0, "failing": 0, "max_attempts": 0, "records": []}


def _parse(data: bytes) -> list[InflightBatch]:
    """The records of a version-1 file; ValueError naming what is wrong."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"not an in-flight batches file of version {FORMAT_VERSION}")
    rows = doc.get("batches")
    if not isinstance(rows, list):
        raise ValueError("'batches' is not a list")
    out = []
    for i, row in enumerate(rows):
        try:
            batch = InflightBatch(**row)
        except TypeError as exc:
            raise ValueError(f"record {i}: {exc}") from exc
        if not (isinstance(batch.sink, str) and isinstance(batch.seq, int)
                and isinstance(batch.attempts, int) and batch.attempts >= 0):
            raise ValueError(f"record {i}: bad sink, seq or attempts")
        out.append(batch)
    return out
