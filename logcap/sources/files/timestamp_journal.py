"""The timestamp journal of one file source: the timestamps each read's lines were sent with,
so that lines read again after a crash are sent again with the same ones.

Why
    A file line's Loki timestamp is its read's time (line ``i`` of a read at ``ts_ns`` has
    ``ts_ns + i``). Lines read but not committed when logcap is killed are read again by the
    next process; with new timestamps, Loki keeps both copies. With the timestamps the first
    process used, Loki's exact-duplicate check (same stream, timestamp and line) absorbs them.

Records (:class:`JournalRecord`)
    One per read sent: the stream (``dev``, ``ino``, the fingerprint at read time), the byte
    range ``[start, end)``, the line count and ``ts_ns``. Line ``i`` of the read had timestamp
    ``ts_ns + i``. A record is appended *before* the read's lines are handed on, so no line
    reaches a sink with a timestamp the journal does not hold.

Replay (:meth:`TimestampJournal.stamp`)
    Each new read asks for its lines' timestamps. Where the read starts at a recorded read's
    start (a committed offset always is one: commits stop at read ends), or where the previous
    replayed read of the stream stopped, its lines are walked in order through the records
    from there: line after line gets its recorded timestamp, crossing records as their line
    counts say. The chunks need not align with the first reads; the answer is per-line
    timestamps. Lines past the last record get fresh timestamps (``now_ns + j``), and that part
    is recorded. The walk is checked: consecutive records must be contiguous, a record's lines
    must all lie inside the read that consumed them, a read ending on a record's end must have
    consumed exactly its lines, and with ``line_starts`` (joined multi-line entries) each
    record's first line must start at its start. On any mismatch (the file's content or the
    joining differs from the first read) the whole read gets fresh timestamps and the stream's
    records from its start on are replaced by it: a wrong timestamp costs at most a kept
    duplicate, never a line (two different lines at one timestamp are both kept by Loki).
    A record whose fingerprint differs from the read's is used only when ``same_file`` says
    the file still starts with the bytes it fingerprinted (a short fingerprint refreshed as
    the file grew). A read starting below the stream's last commit is never a re-read (a
    re-read starts at the committed offset): the file was cut and this is new content, so it
    gets fresh timestamps and replaces the records.

Commits and size
    :meth:`TimestampJournal.commit` is told each committed position: records ending at or
    below the commit *before* it are dropped (one commit of slack: a commit still on its way
    to the positions keeper when the file is rewritten keeps its records). :meth:`forget`
    drops a stream (a rotated file drained and closed). Live records are bounded by the read
    windows; at most :data:`MAX_RECORDS` are kept in any case (the oldest streams' dropped
    first: duplicates, not loss). The file is rewritten with the live records when it grows
    past :data:`REWRITE_MIN_BYTES` and four times their size, and at each load.

File (``timestamps-<source>.journal`` in the positions directory)
    A header line ``logcap-timestamps 1`` then one checked line per record
    (:mod:`logcap.state.checked_lines`: ``<crc32 hex> <text>``), the text
    ``<dev> <ino> <fingerprint> <start> <end> <lines> <ts_ns>``, or ``- <dev> <ino>`` for a
    stream forgotten. Appended with ``O_APPEND``,
    never fsynced: a process crash keeps the page cache; a power loss may lose the journal,
    which costs duplicates only. Loading keeps
    the valid prefix: a torn or corrupt line and everything after it is ignored and reported
    (:attr:`LoadResult.problems`), never raised. A write that fails (disk full) is reported
    once and the journal goes on in memory; it never stops reading.

Not thread-safe: one owner (the source's tailer) calls it.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from logcap.state.checked_lines import (
    ValidPrefix,
    append_whole,
    checked_line,
    read_valid_prefix,
)

__all__ = [
    "HEADER",
    "MAX_RECORDS",
    "REWRITE_MIN_BYTES",
    "JournalRecord",
    "LoadResult",
    "TimestampJournal",
    "decode_journal",
    "encode_forget",
    "encode_record",
    "journal_path",
]

HEADER = b"logcap-timestamps 1\n"
MAX_RECORDS = 65_536
"""Live records kept at most (each ~100 bytes on disk and in memory)."""
REWRITE_MIN_BYTES = 1024 * 1024
"""The file is not rewritten below this size."""
REWRITE_FACTOR = 4
"""... nor below this many times the size of its live records."""
RECORD_BYTES = 100
"""About the size of one record's line (for the rewrite threshold)."""

StreamKey = tuple[int, int]
"""``(dev, ino)``."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One read sent: line ``i`` of ``[start, end)`` had timestamp ``ts_ns + i``."""

    dev: int
    ino: int
    fingerprint: str
    start: int
    end: int
    lines: int
    ts_ns: int

    @property
    def key(self) -> StreamKey:
        return (self.dev, self.ino)


def journal_path(directory: str, source: str) -> str:
    """Where the journal of the file source ``source`` lives (a source name is letters,
    digits, ``_``, ``.`` and ``-``, so it is a safe file name)."""
    return os.path.join(directory, f"timestamps-{source}.journal")


def encode_record(rec: JournalRecord) -> bytes:
    """The record's line in the file (module docstring)."""
    return checked_line(f"{rec.dev} {rec.ino} {rec.fingerprint} {rec.start} {rec.end} "
                        f"{rec.lines} {rec.ts_ns}".encode("ascii"))


def encode_forget(key: StreamKey) -> bytes:
    """The line that says the stream ``key`` was forgotten (module docstring)."""
    return checked_line(b"- %d %d" % key)


def _decode_text(text: bytes) -> JournalRecord | StreamKey:
    """A record (or a forgotten stream's key) from its line's text; ValueError if it is not
    one."""
    fields = text.split(b" ")
    if len(fields) == 3 and fields[0] == b"-":
        return (int(fields[1]), int(fields[2]))
    if len(fields) != 7:
        raise ValueError("wrong number of fields")
    dev, ino, start, end, lines, ts_ns = (int(fields[i]) for i in (0, 1, 3, 4, 5, 6))
    if min(dev, ino, start, lines, ts_ns) < 0 or end <= start or lines < 1:
        raise ValueError("impossible values")
    return JournalRecord(dev, ino, fields[2].decode("ascii"), start, end, lines, ts_ns)


LoadResult = ValidPrefix[JournalRecord | StreamKey]
"""What :func:`decode_journal` found: the records of the valid prefix, and problems."""


def decode_journal(raw: bytes, name: str = "journal") -> LoadResult:
    """The records of a journal file's valid prefix (module docstring); never raises."""
    return read_valid_prefix(raw, HEADER, name, _decode_text)


@dataclass(slots=True)
class _Stream:
    """One stream's live records (in read order, contiguous) and where a replay stopped."""

    records: deque[JournalRecord] = field(default_factory=deque)
    committed: int = 0
    floor: int = 0
    """Records ending at or below this are dropped (the commit before ``committed``)."""
    cursor: tuple[int, int, int] | None = None
    """``(offset, index of the record in records, its next line)`` after a replayed read
    that stopped inside a record."""


class TimestampJournal:
    """The journal (module docstring); ``path`` None keeps it in memory only."""

    def __init__(self, path: str | None = None, *, max_records: int = MAX_RECORDS,
                 rewrite_min_bytes: int = REWRITE_MIN_BYTES) -> None:
        self.path = path
        self.max_records = max_records
        self.rewrite_min_bytes = rewrite_min_bytes
        self._streams: dict[StreamKey, _Stream] = {}
        self._count = 0
        self._fd: int | None = None
        self._file_bytes = 0
        self.problems: list[str] = []
        """Problems met (load, writes), for the owner to log; see :meth:`take_problems`."""
        self.replayed_lines = 0
        """Lines given their recorded timestamps so far."""
        self.mismatches = 0
        """Reads whose walk through the records did not check out (fresh timestamps)."""

    # -- file ------------------------------------------------------------------------------

    def load(self) -> int:
        """Read the file (if any), keep its valid prefix, rewrite it compacted and open it for
        appending; returns how many records were loaded. Problems go to :attr:`problems`."""
        if self.path is None:
            return 0
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            self.problems.append(f"{self.path}: cannot be read ({exc.strerror or exc}): "
                                 "starting without recorded timestamps")
            raw = b""
        found = decode_journal(raw, self.path)
        self.problems.extend(found.problems)
        for rec in found.records:
            if isinstance(rec, JournalRecord):
                self._add(rec)
            else:
                self._drop(rec)
        self._rewrite()
        return len(found.records)

    def _rewrite(self) -> None:
        """Replace the file by the header and the live records, and reopen it to append."""
        if self.path is None:
            return
        self._close_fd()
        data = b"".join([HEADER, *(encode_record(rec) for stream in self._streams.values()
                                   for rec in stream.records)])
        temp = f"{self.path}.tmp"  # one writer per journal: a leftover is overwritten
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._file_bytes = len(data)
        except OSError as exc:
            self._write_failed(exc)
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            return
        try:
            append_whole(self._fd, line)
        except OSError as exc:
            self._write_failed(exc)
            return
        self._file_bytes += len(line)
        live = REWRITE_FACTOR * RECORD_BYTES * self._count
        if self._file_bytes > max(self.rewrite_min_bytes, live):
            self._rewrite()

    def _write_failed(self, exc: OSError) -> None:
        self.problems.append(f"{self.path}: cannot be written ({exc.strerror or exc}): "
                             "timestamps are kept in memory only until the next start; lines "
                             "read again after a crash may be kept twice by Loki")
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_fd()

    def take_problems(self) -> list[str]:
        problems, self.problems = self.problems, []
        return problems

    # -- records ---------------------------------------------------------------------------

    @property
    def record_count(self) -> int:
        return self._count

    def records(self, key: StreamKey) -> list[JournalRecord]:
        stream = self._streams.get(key)
        return list(stream.records) if stream else []

    def _add(self, rec: JournalRecord) -> None:
        """Append ``rec`` to its stream in memory, replacing what overlaps from its start on."""
        stream = self._streams.setdefault(rec.key, _Stream())
        if rec.end <= stream.floor:
            return
        self._cut(stream, rec.start)
        stream.records.append(rec)
        self._count += 1
        while self._count > self.max_records:
            self._evict()

    def _cut(self, stream: _Stream, offset: int) -> None:
        """Drop the stream's records that end past ``offset`` (they are being replaced)."""
        records = stream.records
        while records and records[-1].end > offset:
            records.pop()
            self._count -= 1
        stream.cursor = None

    def _evict(self) -> None:
        """Drop the oldest record of the stream whose first record is oldest."""
        key = min((k for k, s in self._streams.items() if s.records),
                  key=lambda k: self._streams[k].records[0].ts_ns)
        stream = self._streams[key]
        stream.records.popleft()
        stream.cursor = None
        self._count -= 1

    def commit(self, key: StreamKey, offset: int, *, durable: bool = False) -> None:
        """``offset`` of the stream ``key`` is committed: drop records below the commit
        before it (see *Commits and size*), or below ``offset`` itself when it is known to
        be on disk already (``durable``: the positions loaded at a start)."""
        stream = self._streams.get(key)
        if stream is None:
            return
        if durable:
            stream.floor = stream.committed = offset
        elif offset != stream.committed:
            stream.floor, stream.committed = min(stream.committed, offset), offset
        records = stream.records
        dropped = 0
        while records and records[0].end <= stream.floor:
            records.popleft()
            dropped += 1
        if dropped:
            self._count -= dropped
            stream.cursor = None
        if not records:
            del self._streams[key]

    def commit_all(self, positions: Iterable[tuple[StreamKey, int]], *,
                   durable: bool = False) -> None:
        for key, offset in positions:
            self.commit(key, offset, durable=durable)

    def forget(self, key: StreamKey) -> None:
        """The stream is closed for good (drained after a rotation): drop its records, and
        say so in the file (its inode may be reused by a file that starts with the same
        bytes, which must not get its timestamps after a restart)."""
        self._drop(key)
        self._append(encode_forget(key))  # the file may hold records memory dropped

    def _drop(self, key: StreamKey) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            self._count -= len(stream.records)

    # -- replay ----------------------------------------------------------------------------

    def stamp(self, dev: int, ino: int, fingerprint: str, start: int, end: int, count: int,
              now_ns: int, *, line_starts: list[int] | None = None, replay: bool = True,
              same_file: Callable[[str], bool] = lambda fp: False) -> list[int] | None:
        """The timestamps of a read's ``count`` lines, recording the read (module docstring).

        None when every line gets a fresh timestamp (line ``j`` at ``now_ns + j``: the caller
        needs no per-line list); else one timestamp per line. ``replay=False`` records the
        read with fresh timestamps without looking (lines the caller cannot match)."""
        key = (dev, ino)
        stamps = None
        stream = self._streams.get(key)
        if replay and stream is not None and stream.records:
            stamps = self._walk(stream, fingerprint, start, end, count, now_ns, line_starts,
                                same_file)
        if stamps is None:
            rec = JournalRecord(dev, ino, fingerprint, start, end, count, now_ns)
            self._add(rec)
            self._append(encode_record(rec))
        return stamps

    def _walk(self, stream: _Stream, fingerprint: str, start: int, end: int, count: int,
              now_ns: int, line_starts: list[int] | None,
              same_file: Callable[[str], bool]) -> list[int] | None:
        """Per-line timestamps from the records, or None (no record here, or a mismatch)."""
        records = stream.records
        if start < stream.committed:
            return None  # not a re-read: the file was cut, and this is new content
        found = self._find(stream, start)
        if found is None:
            return None
        index, line = found
        rec = records[index]
        if rec.fingerprint != fingerprint and not same_file(rec.fingerprint):
            return None
        stamps: list[int] = []
        replayed = 0
        while True:
            rec = records[index]
            if line_starts is not None and line == 0 and line_starts[len(stamps)] != rec.start:
                return self._mismatch(stream, start)
            take = min(rec.lines - line, count - len(stamps))
            first = rec.ts_ns + line
            stamps.extend(range(first, first + take))
            replayed += take
            line += take
            if line < rec.lines:  # the read ended inside this record
                if end >= rec.end:
                    return self._mismatch(stream, start)
                stream.cursor = (end, index, line)
                break
            if rec.end > end:  # all its lines, but its end is past the read's
                return self._mismatch(stream, start)
            stream.cursor = None
            if len(stamps) == count:
                if rec.end != end:
                    return self._mismatch(stream, start)
                break
            if index + 1 == len(records):  # past the last record: fresh from here
                fresh = JournalRecord(rec.dev, rec.ino, fingerprint, rec.end, end,
                                      count - len(stamps), now_ns)
                stamps.extend(range(now_ns, now_ns + fresh.lines))
                self._add(fresh)
                self._append(encode_record(fresh))
                break
            index, line = index + 1, 0
            if records[index].start != rec.end:
                return self._mismatch(stream, start)
        self.replayed_lines += replayed
        return stamps

    @staticmethod
    def _find(stream: _Stream, start: int) -> tuple[int, int] | None:
        """Where a read at ``start`` begins in the records: ``(record index, line)``."""
        cursor = stream.cursor
        if cursor is not None and cursor[0] == start:
            return cursor[1], cursor[2]
        for index, rec in enumerate(stream.records):
            if rec.start == start:
                return index, 0
            if rec.start > start:
                break
        return None

    def _mismatch(self, stream: _Stream, start: int) -> list[int] | None:
        """The records from ``start`` on do not describe this read: they are replaced (the
        answer is None: fresh timestamps)."""
        self.mismatches += 1
        self._cut(stream, start)
        return None
