"""The dead-letter queue on disk: batches a sink rejected for good.

An open, documented format (full reference, with readers in other languages: ``docs/DLQ.md``).
Files of the DLQ directory:

* ``NNNNNNNNNNNNNNNNNNNN.dlq`` (20 digits: the seq of the file's first entry): append-only
  segments in the disk buffer's record framing (:mod:`logcap.state.buffer.record`), one record
  per entry. Record header (little-endian, 45 bytes): magic ``b"LCR1"``, u8 flags (0), u32
  payload length, u32 line count, u64 entry seq, i64 lowest and highest line timestamp (ns),
  8-byte BLAKE2b (personalisation ``b"logcap-record"``) over the first 37 header bytes and the
  payload. Payload: one zstd frame (content checksum on) of the entry's UTF-8 JSON document::

      {"version": 1, "id": "<uuid4 hex>", "sink": str, "reason": str, "status_code": int|null,
       "attempts": int, "first_failure": unix s, "last_failure": unix s, "detail": str,
       "streams": [{"labels": [[k, v], ...], "source": str, "stream": str,
                    "lines": [["<ts ns>", line], ...]}]}

  (:mod:`logcap.state.dlq_entry` defines the document.)
* ``reprocessed.json`` (+ ``.bak``) and ``reprocessed.lock``: the idempotency ledger of ids
  already re-sent (:mod:`logcap.state.dlq_ledger`).

Writing: :meth:`DeadLetterStore.add` appends to a segment this store created (never to one
found at open), fsyncs, and only then returns; a segment is rotated at ``max_file_size`` or when
its first entry is older than 1/8 of the retention period. Reading (:meth:`~DeadLetterStore.open`)
never modifies a file and never raises for bad data: a file cut short keeps its valid prefix, a
corrupt region or an undecodable record is skipped; each is reported naming the file. Retention
(:meth:`~DeadLetterStore.collect`) drops whole files, oldest first: those whose newest entry is
older than ``retention_period_s``, then as many as needed to fit ``max_total_size``.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zstandard

from logcap.state.atomic import create_for_append, fsync_directory
from logcap.state.buffer.record import RecordCorrupt, frame_record, read_record, scan_segment
from logcap.state.dlq_entry import (
    FORMAT_VERSION,
    DeadLetter,
    DeadStream,
    decode_payload,
    encode_payload,
    is_entry_id,
    payload_compressor,
)
from logcap.state.dlq_ledger import LEDGER_FILE, ReprocessLedger

__all__ = ["FORMAT_VERSION", "LEDGER_FILE", "SEGMENT_SUFFIX", "DeadLetter", "DeadLetterStore",
           "DeadStream", "DlqFilter", "Dropped", "is_entry_id"]

SEGMENT_SUFFIX = ".dlq"
SEQ_DIGITS = 20
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
MIN_SEGMENT_BYTES = 64 * 1024
SEGMENTS_PER_BUDGET = 8
"""A segment is rotated at 1/8 of max_total_size (and of retention_period_s), so retention,
which drops whole files, keeps the DLQ within about 1/8 of its limits."""
_NAME = re.compile(rf"^(\d{{{SEQ_DIGITS}}}){re.escape(SEGMENT_SUFFIX)}$")


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """Which entries: all given fields must match; ``since``/``until`` bound (inclusively)
    the entry's ``last_failure`` (unix seconds), the time it was dead-lettered."""

    sink: str | None = None
    reason: str | None = None
    ids: frozenset[str] | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, item: _Item) -> bool:
        return ((self.sink is None or item.sink == self.sink)
                and (self.reason is None or item.reason == self.reason)
                and (self.ids is None or item.id in self.ids)
                and (self.since is None or item.last_failure >= self.since)
                and (self.until is None or item.last_failure <= self.until))


@dataclass(frozen=True, slots=True)
class Dropped:
    """What retention removed."""

    files: int = 0
    entries: int = 0
    lines: int = 0
    bytes: int = 0

    def __add__(self, other: Dropped) -> Dropped:
        return Dropped(self.files + other.files, self.entries + other.entries,
                       self.lines + other.lines, self.bytes + other.bytes)


@dataclass(frozen=True, slots=True)
class _Item:
    path: str
    offset: int
    size: int
    id: str
    sink: str
    reason: str
    lines: int
    last_failure: float


@dataclass(slots=True)
class _Segment:
    path: str
    size: int
    created_at: float
    items: list[_Item] = field(default_factory=list)

    @property
    def newest(self) -> float:
        return max((item.last_failure for item in self.items), default=self.created_at)


class DeadLetterStore:
    """The DLQ directory (module docstring). Thread-safe."""

    def __init__(self, directory: str | os.PathLike[str], max_total_size: int,
                 retention_period_s: float, clock: Callable[[], float] = time.time,
                 max_file_size: int | None = None) -> None:
        self.directory = os.fspath(directory)
        self.max_total_size = max_total_size
        self.retention_period_s = retention_period_s
        self.max_file_size = max_file_size or min(
            MAX_SEGMENT_BYTES, max(MIN_SEGMENT_BYTES, max_total_size // SEGMENTS_PER_BUDGET))
        self._clock = clock
        self._lock = threading.RLock()
        self._compressor: zstandard.ZstdCompressor | None = None  # made by the first add
        self._segments: list[_Segment] = []
        self._by_id: dict[str, _Item] = {}
        self._fd: int | None = None
        self._next_seq = 1
        self._ledger = ReprocessLedger(self.directory, clock)
        self.dropped = Dropped()

    # -- reading ---------------------------------------------------------------------------

    def open(self) -> list[str]:
        """(Re)load the directory (created if missing); return the problems found."""
        with self._lock:
            self.close()
            os.makedirs(self.directory, exist_ok=True)
            self._segments, self._by_id, self._next_seq = [], {}, 1
            self._ledger.reset()
            problems: list[str] = []
            names = sorted((int(m.group(1)), name) for name in os.listdir(self.directory)
                           if (m := _NAME.match(name)))
            for first_seq, name in names:
                self._next_seq = max(self._next_seq, first_seq + 1)
                self._load_segment(name, problems)
            problems += self._ledger.load()
            return problems

    def _load_segment(self, name: str, problems: list[str]) -> None:
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            problems.append(f"{name}: unreadable: {exc.strerror or exc}")
            return
        try:
            scan = scan_segment(fd)
            segment = _Segment(path, scan.file_size, os.fstat(fd).st_mtime)
            for found in scan.records:
                self._next_seq = max(self._next_seq, found.header.seq + 1)
                try:
                    _, payload = read_record(fd, found.offset, found.header.size)
                    entry = decode_payload(payload)
                except (RecordCorrupt, ValueError) as exc:
                    problems.append(f"{name}: record at offset {found.offset} skipped: {exc}")
                    continue
                if entry.id not in self._by_id:
                    self._index(segment, found.offset, found.header.size, entry)
        finally:
            os.close(fd)
        problems += [f"{name}: {length} corrupt bytes at offset {offset} skipped"
                     for offset, length in scan.corrupt]
        if scan.torn_bytes:
            problems.append(f"{name}: torn tail of {scan.torn_bytes} bytes after offset "
                            f"{scan.valid_end} ignored (the valid prefix is kept)")
        self._segments.append(segment)

    def _index(self, segment: _Segment, offset: int, size: int, entry: DeadLetter) -> None:
        item = _Item(segment.path, offset, size, entry.id, entry.sink, entry.reason,
                     entry.line_count, entry.last_failure)
        segment.items.append(item)
        self._by_id[item.id] = item

    def ids(self, filters: DlqFilter | None = None) -> list[str]:
        """Ids of the matching entries, oldest first (from the index: nothing is read)."""
        wanted = filters or DlqFilter()
        with self._lock:
            return [item.id for seg in self._segments for item in seg.items
                    if wanted.matches(item)]

    def sink_of(self, entry_id: str) -> str | None:
        with self._lock:
            item = self._by_id.get(entry_id)
            return item.sink if item else None

    def entries(self, filters: DlqFilter | None = None) -> Iterator[DeadLetter]:
        """The matching entries, oldest first; entries dropped meanwhile are left out."""
        for entry_id in self.ids(filters):
            entry = self.get(entry_id)
            if entry is not None:
                yield entry

    def get(self, entry_id: str) -> DeadLetter | None:
        """The entry, or None if there is none (or it no longer reads back)."""
        with self._lock:
            item = self._by_id.get(entry_id)
        if item is None:
            return None
        try:
            fd = os.open(item.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return decode_payload(read_record(fd, item.offset, item.size)[1])
        except (RecordCorrupt, ValueError):
            return None
        finally:
            os.close(fd)

    def stats(self) -> dict[str, Any]:
        """Entries, lines and bytes by sink and by reason; oldest/newest entry (unix s)."""
        with self._lock:
            items = [item for seg in self._segments for item in seg.items]
            by: dict[str, dict[str, dict[str, int]]] = {"by_sink": {}, "by_reason": {}}
            for item in items:
                for key, group in (("by_sink", item.sink), ("by_reason", item.reason)):
                    row = by[key].setdefault(group, {"entries": 0, "lines": 0, "bytes": 0})
                    row["entries"] += 1
                    row["lines"] += item.lines
                    row["bytes"] += item.size
            times = [item.last_failure for item in items]
            return {"entries": len(items), "lines": sum(i.lines for i in items),
                    "bytes": sum(i.size for i in items), **by,
                    "oldest_entry_time": min(times, default=None),
                    "newest_entry_time": max(times, default=None),
                    "total_bytes": self.total_bytes, "files": len(self._segments),
                    "reprocessed": len(self._ledger),
                    "dropped": {"entries": self.dropped.entries, "lines": self.dropped.lines,
                                "bytes": self.dropped.bytes}}

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(segment.size for segment in self._segments)

    # -- writing ---------------------------------------------------------------------------

    def add(self, entry: DeadLetter) -> str:
        """Append ``entry`` durably (fsynced before returning); return its id. An id already
        stored is not stored again."""
        with self._lock:
            if entry.id in self._by_id:
                return entry.id
            if self._compressor is None:
                self._compressor = payload_compressor()
            times = [ts for s in entry.streams for ts, _ in s.lines]
            record = frame_record(seq=self._next_seq, count=len(times),
                                  min_ts_ns=min(times, default=0),
                                  max_ts_ns=max(times, default=0),
                                  payload=encode_payload(entry, self._compressor),
                                  encrypted=False)
            if self._needs_new_segment(len(record)):
                self._create_segment()
            assert self._fd is not None
            segment = self._segments[-1]
            view = memoryview(record)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
                os.fdatasync(self._fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, segment.size)
                raise
            self._index(segment, segment.size, len(record), entry)
            segment.size += len(record)
            self._next_seq += 1
            return entry.id

    def _needs_new_segment(self, size: int) -> bool:
        if self._fd is None:
            return True
        active = self._segments[-1]
        too_old = self._clock() - active.created_at > self.retention_period_s / SEGMENTS_PER_BUDGET
        return bool(active.items) and (active.size + size > self.max_file_size or too_old)

    def _create_segment(self) -> None:
        self._close_fd()
        path = os.path.join(self.directory, f"{self._next_seq:0{SEQ_DIGITS}d}{SEGMENT_SUFFIX}")
        self._fd = create_for_append(path)
        self._segments.append(_Segment(path, 0, self._clock()))

    def collect(self, now: float) -> dict[str, Dropped]:
        """Retention: drop whole files, oldest first, by age then by total size. Returns what
        was dropped by cause (``"age"``, ``"size"``), empty when nothing was."""
        with self._lock:
            dropped: dict[str, Dropped] = {}
            horizon = now - self.retention_period_s
            while self._segments and self._segments[0].newest < horizon:
                dropped["age"] = self._drop_oldest(dropped.get("age", Dropped()))
            while self._segments and self.total_bytes > self.max_total_size:
                dropped["size"] = self._drop_oldest(dropped.get("size", Dropped()))
            if dropped:
                fsync_directory(self.directory)
            return dropped

    def _drop_oldest(self, so_far: Dropped) -> Dropped:
        segment = self._segments.pop(0)
        if not self._segments:
            self._close_fd()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)
        for item in segment.items:
            self._by_id.pop(item.id, None)
        self._ledger.forget(item.id for item in segment.items)
        gone = Dropped(1, len(segment.items), sum(item.lines for item in segment.items),
                       segment.size)
        self.dropped += gone
        return so_far + gone

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Write pending ledger changes and close the file being appended to."""
        with self._lock:
            self.flush_ledger()
            self._close_fd()

    # -- the idempotency ledger (see logcap.state.dlq_ledger) ------------------------------

    def claimed(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` already claimed (no change)."""
        return self._ledger.claimed(ids)

    def claim(self, ids: Iterable[str]) -> list[str]:
        """Claim stored entries for a resend; return only the ids no one claimed before,
        recorded durably before returning (an id is never claimed twice, across threads,
        processes and restarts)."""
        with self._lock:
            return self._ledger.claim(ids, self._by_id.keys())

    def finish(self, ids: Iterable[str], outcome: str) -> None:
        """Record the outcome of claimed resends (written by :meth:`flush_ledger`)."""
        self._ledger.finish(ids, outcome)

    def release(self, ids: Iterable[str]) -> None:
        """Drop claims (resends given up), durably, so a later reprocess may try again."""
        with self._lock:
            self._ledger.release(ids, self._by_id.keys())

    def unfinished(self) -> list[str]:
        """Claimed ids of stored entries whose resend has no recorded outcome, oldest first."""
        return self._ledger.unfinished(self.ids())

    def flush_ledger(self) -> None:
        """Write the outcomes recorded by :meth:`finish` (no-op when there are none)."""
        with self._lock:
            self._ledger.flush(self._by_id.keys())
