"""The disk buffer's segment store: append batches, read them per sink, release them once acked.

Sequence numbers count *batches*: :meth:`SegmentStore.append` stores one ``list[Entries]`` as
one record and returns its seq, 1, 2, 3, ... Seqs never go back, across restarts too: the
highest seq ever assigned is persisted with the cursors, and after a restart new seqs are above
every seq any sink has acknowledged.

Files in the directory (formats in record.py, ledger.py, cursors.py; I/O in storage.py)::

    0000000000000001.seg   records, in seq order; the name is the segment's first seq
    0000000000000001.idx   the ledger of a sealed segment (absent for the active one)
    cursors.json(.bak)     per-sink acknowledged seqs, and the highest seq assigned
    buffer.lock            flock()ed while a store has the directory open

Writing
    Records are appended to the last segment (the *active* one) with ``write(2)``. A segment is
    *sealed* (fsynced, its ``.idx`` written atomically) when the next record would take it past
    ``max_file_size``, and a new one is created. :meth:`~SegmentStore.sync` fsyncs the active
    segment (group commit) and returns :attr:`~SegmentStore.durable_seq`: every seq up to it
    survives a power loss. Reads see records as soon as they are appended.

Capacity (``max_total_size`` over all segment files, ``max_files``)
    An append that would exceed a limit first releases segments every sink has acknowledged
    (the active one included); then, with ``when_full="block"``, raises :class:`BufferFull`
    (nothing written, the caller applies backpressure and retries), and with
    ``"drop_oldest"`` deletes the oldest segments until the record fits, counting their
    unacknowledged batches and lines as dropped with reason ``"full"``.

Disk errors
    An ``OSError`` from a write (ENOSPC, EIO) propagates unchanged and the seq is not consumed.
    A partially written record is cut back at once, or, if even that fails, before the next
    append (and, after a crash, by the start-up scan). The store stays consistent and usable.
    A failed fsync is different: the kernel may have dropped the unsynced pages and a later
    fsync may report success anyway, so after one the store refuses appends and syncs with
    ``OSError(EIO)`` until it is reopened (the start-up scan then finds what is really there).

Release (:meth:`~SegmentStore.collect`)
    Deletes, oldest first, sealed segments that every sink has acknowledged, and segments whose
    newest record is older than ``retention_period_s`` (their unacknowledged batches counted as
    dropped, reason ``"retention"``; an idle active segment included). With ``"drop_oldest"`` it
    also trims to the capacity limits. Before anything is unlinked the cursors are written and
    fsynced; if that write fails for lack of space the unlink proceeds anyway, which is safe:
    every persisted cursor is at most the persisted ``last_seq``, so no seq a sink acknowledged
    can be reused, and freeing space is the way out of a full disk.

Reading
    Each sink reads from its own position (:meth:`~SegmentStore.read`), one record in memory at a
    time, through the in-memory ledger (seq -> offset). The batches appended last are kept in
    memory (recent.py, :class:`~logcap.state.buffer.recent.RecentBatches`, a few MiB) and read
    from there: at a steady pace a sink reads what was just written, without reading it back
    from the file. A record that fails its checksum is skipped, counted as dropped (reason
    ``"corrupt"``) and settled for every sink. A record the
    configured key cannot decrypt raises :class:`~logcap.state.buffer.crypto.DecryptionError`
    naming the file: nothing is skipped for a key problem. :meth:`~SegmentStore.select` reads
    by time range and source without touching the cursors (selective recovery), skipping
    segments and records by their timestamp ranges without decompressing them.

Sinks and cursors (cursors.py)
    :meth:`~SegmentStore.ack` acknowledges exactly one seq, in any order; each sink's cursor is
    the highest seq below which everything is settled. Only that contiguous cursor is persisted
    (:meth:`~SegmentStore.persist_cursors`, periodically and at :meth:`~SegmentStore.close`):
    after a restart each sink reads again from its cursor + 1, so acks above a gap are resent
    (duplicates, never a loss). A sink that has no cursor yet starts at the oldest stored
    record; the cursor of a sink no longer configured is dropped and holds nothing back. A
    sink added while the store is open (:meth:`~SegmentStore.add_sink`, a reload) reads only
    what is appended from then on; one removed (:meth:`~SegmentStore.remove_sink`) holds
    nothing back from then on.

Time
    Ages come from the injected ``clock``; after a restart the active segment's newest-record
    time is its file's modification time (sealed segments keep theirs in the ``.idx``).

Not thread-safe: one owner (the buffer actor) calls it.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Literal

from logcap.messages import Entries
from logcap.state.atomic import fsync_directory
from logcap.state.buffer.codec import DEFAULT_COMPRESSION_LEVEL, CodecError, PayloadCodec
from logcap.state.buffer.crypto import Cipher
from logcap.state.buffer.cursors import CURSORS_FILE, CursorTable, load_cursors, write_cursors
from logcap.state.buffer.ledger import SegmentIndex, SegmentInfo
from logcap.state.buffer.recent import RecentBatches
from logcap.state.buffer.record import RecordCorrupt, frame_record
from logcap.state.buffer.recovery import (
    BufferDirectoryError,
    RecoveryReport,
    lock_directory,
    missing_seqs,
    recover_segments,
)
from logcap.state.buffer.selection import select_batches
from logcap.state.buffer.storage import SegmentFiles

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "DEFAULT_RETENTION_PERIOD_S",
    "DROP_REASONS",
    "BufferDirectoryError",
    "BufferFull",
    "SegmentStore",
]

MiB = 1024 * 1024
DEFAULT_MAX_FILE_BYTES = 64 * MiB
DEFAULT_MAX_TOTAL_BYTES = 1024 * MiB
DEFAULT_RETENTION_PERIOD_S = 7 * 24 * 3600.0
DROP_REASONS = ("full", "retention", "corrupt")
WhenFull = Literal["block", "drop_oldest"]


class BufferFull(Exception):
    """The record does not fit under the capacity limits (``when_full="block"``)."""


class SegmentStore:
    """Segment files + per-sink cursors (see the module docstring). Call :meth:`open` once
    before anything else, and :meth:`close` at the end; to reopen, make a new store."""

    def __init__(
        self, directory: str | os.PathLike[str], sinks: Sequence[str], *,
        max_file_size: int = DEFAULT_MAX_FILE_BYTES, max_total_size: int = DEFAULT_MAX_TOTAL_BYTES,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        retention_period_s: float = DEFAULT_RETENTION_PERIOD_S, max_files: int | None = None,
        when_full: WhenFull = "block", cipher: Cipher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(set(sinks)) != len(sinks):
            raise ValueError(f"sink names must be unique: {list(sinks)}")
        if when_full not in ("block", "drop_oldest"):
            raise ValueError(f"when_full must be 'block' or 'drop_oldest', not {when_full!r}")
        if not 0 < max_file_size <= max_total_size:
            raise ValueError("need 0 < max_file_size <= max_total_size")
        if max_files is not None and max_files < 1:
            raise ValueError("max_files must be at least 1")
        self.directory = os.fspath(directory)
        self.sinks = tuple(sinks)
        self._max_total = max_total_size
        self._max_files = max_files
        self._retention_s = retention_period_s
        self._when_full = when_full
        self._clock = clock
        self._codec = PayloadCodec(compression_level, cipher)
        self._files = SegmentFiles(self.directory, self._codec, max_file_size=max_file_size,
                                   clock=clock)
        self._cursors = CursorTable(self.sinks)
        self._recent = RecentBatches()
        self._lock_fd: int | None = None
        self._last_seq = 0
        self._durable_seq = 0
        self._dropped = {reason: [0, 0] for reason in DROP_REASONS}
        self._appended = [0, 0, 0, 0]  # batches, lines, raw bytes, stored bytes
        self._unsynced_bytes = 0
        self._problems: list[str] = []
        self._sync_failure: OSError | None = None
        self._opened = False

    # --- open / close ------------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Lock the directory and recover its state (recovery.py). Never raises for bad data:
        only :class:`BufferDirectoryError` for a directory it cannot use, and I/O errors."""
        if self._opened:
            raise RuntimeError("a store is opened once; make a new one to reopen the directory")
        self._opened = True
        started = time.perf_counter()
        self._lock_fd = lock_directory(self.directory)
        report = RecoveryReport(self.directory)
        try:
            self._recover(report)
        except BaseException:
            self._release_files()
            raise
        report.elapsed_s = time.perf_counter() - started
        return report

    def _recover(self, report: RecoveryReport) -> None:
        segments = recover_segments(self.directory, self._codec.cipher, report)
        loaded = load_cursors(os.path.join(self.directory, CURSORS_FILE), self._clock())
        report.cursors = loaded.source
        report.problems.extend(loaded.problems)
        stored_last = max((segment.last_seq for segment in segments), default=0)
        self._last_seq = max(stored_last, loaded.last_seq, *loaded.acked.values(), 0)
        self._durable_seq = self._last_seq
        first = segments[0].first_seq if segments else self._last_seq + 1
        lost = self._cursors.lost
        lost.update(missing_seqs(segments, first, self._last_seq))
        floor = min((loaded.acked.get(sink, first - 1) for sink in self.sinks),
                    default=self._last_seq)
        self._dropped["corrupt"][0] += sum(1 for seq in lost if seq > floor)
        if lost:
            report.problems.append(f"{len(lost)} batches missing (corrupt or torn), settled "
                                   "for every sink")
        self._cursors.start(loaded.acked, first_seq=first, last_seq=self._last_seq)
        self._files.adopt(segments)
        report.segments, report.bytes = len(segments), self._files.total_bytes
        report.records = sum(segment.records for segment in segments)
        report.first_seq, report.last_seq, report.lost_seqs = first, self._last_seq, len(lost)

    def close(self) -> None:
        """Sync, persist the cursors, release the files and the directory lock."""
        if self._lock_fd is None:
            return
        try:
            if self._sync_failure is None:
                self.sync()
            self.persist_cursors()
        finally:
            self._release_files()

    def abandon(self) -> None:
        """Release the files and the directory lock without syncing or persisting the cursors
        (the owner crashed): a new store opens the directory and recovers it, as after kill -9.
        A store not opened, or closed, is left as it is."""
        if self._lock_fd is not None:
            self._release_files()

    def _release_files(self) -> None:
        """Close every descriptor without syncing or persisting (what a crash does)."""
        self._recent.clear()
        self._files.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = None

    def _require_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("the store is not open")

    @property
    def last_seq(self) -> int:
        """The highest seq assigned (0 before the first append)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every seq up to this one is fsynced ("safe": guarantee 1 in docs/ARCHITECTURE.md)."""
        return self._durable_seq

    @property
    def unsynced_bytes(self) -> int:
        """Uncompressed payload bytes (lines and their fields) appended since the last
        :meth:`sync`: about what the sources' unacknowledged reads hold until a group commit
        answers them."""
        return self._unsynced_bytes

    @property
    def first_seq(self) -> int:
        """The oldest seq that may still be stored (``last_seq + 1`` when empty)."""
        segments = self._files.segments
        return segments[0].first_seq if segments else self._last_seq + 1

    @property
    def total_bytes(self) -> int:
        """Bytes in segment files (what ``max_total_size`` limits)."""
        return self._files.total_bytes

    # --- writing -----------------------------------------------------------------------------

    def append(self, batch: Sequence[Entries]) -> int:
        """Store ``batch`` as one record and return its seq. Raises :class:`BufferFull`
        (``block``) or ``OSError`` (ENOSPC...) with nothing stored and the seq not consumed."""
        self._require_writable()
        if not batch:
            raise ValueError("cannot append an empty batch")
        seq = self._last_seq + 1
        encoded = self._codec.encode(batch, seq)
        record = frame_record(seq=seq, count=encoded.lines, min_ts_ns=encoded.min_ts_ns,
                              max_ts_ns=encoded.max_ts_ns, payload=encoded.payload,
                              encrypted=encoded.encrypted)
        self._files.repair_tail()
        self._make_room(len(record))
        sealed_before = self._files.active
        self._files.write(seq, record, encoded)
        if sealed_before is not None and sealed_before.sealed:
            self._durable_seq = max(self._durable_seq, sealed_before.last_seq)
        self._last_seq = seq
        self._recent.keep(seq, batch, encoded.raw_bytes)
        counts = (1, encoded.lines, encoded.raw_bytes, len(record))
        self._appended = [a + b for a, b in zip(self._appended, counts, strict=True)]
        self._unsynced_bytes += encoded.raw_bytes
        return seq

    def _over_capacity(self, size: int) -> bool:
        files = len(self._files.segments) + (1 if self._files.needs_new_segment(size) else 0)
        return self._files.total_bytes + size > self._max_total or (
            self._max_files is not None and files > self._max_files)

    def _make_room(self, size: int) -> None:
        if size > self._max_total:
            raise BufferFull(f"a record of {size} bytes exceeds max_total_size {self._max_total}")
        if not self._over_capacity(size):
            return
        floor = self._cursors.floor(default=self._last_seq)
        released = 0
        for segment in self._files.segments:
            if segment.last_seq > floor:
                break
            released += 1
        if released:
            self._remove_oldest(released, None)
        while self._over_capacity(size):
            if self._when_full == "block" or not self._files.segments:
                raise BufferFull(f"{self._files.total_bytes} bytes in "
                                 f"{len(self._files.segments)} segments; a record of {size} "
                                 "bytes does not fit")
            self._remove_oldest(1, "full")

    def _require_writable(self) -> None:
        self._require_open()
        if self._sync_failure is not None:
            raise OSError(errno.EIO, f"an earlier fsync failed ({self._sync_failure}); records "
                          f"after seq {self._durable_seq} may be lost: reopen the store")

    def sync(self) -> int:
        """Fsync the active segment (group commit); return :attr:`durable_seq`."""
        self._require_writable()
        if self._durable_seq < self._last_seq:
            try:
                self._files.sync()
            except OSError as exc:
                self._sync_failure = exc
                raise
            self._durable_seq = self._last_seq
        self._unsynced_bytes = 0
        return self._durable_seq

    # --- cursors -----------------------------------------------------------------------------

    def ack(self, sink: str, seq: int) -> None:
        """``sink`` delivered exactly the batch ``seq`` (acks may come in any order)."""
        if not 1 <= seq <= self._last_seq:
            raise ValueError(f"seq {seq} was never assigned (last seq {self._last_seq})")
        self._cursors[sink].settle(seq, self._cursors.lost)

    def add_sink(self, sink: str) -> None:
        """A sink joins (a reload added it): it reads the batches appended from now on; the
        ones stored already count as settled for it. Persisted with the cursors."""
        self._require_open()
        self._cursors.add_sink(sink, self._last_seq)
        self.sinks = self._cursors.sinks

    def remove_sink(self, sink: str) -> None:
        """A sink leaves (a reload removed it): what it had not acknowledged no longer holds
        segments back (:meth:`collect` may release them); dropped from the persisted cursors."""
        self._require_open()
        self._cursors.remove_sink(sink)
        self.sinks = self._cursors.sinks

    def acked_seq(self, sink: str) -> int:
        """Every seq up to this one is settled for ``sink``."""
        return self._cursors[sink].acked

    def rewind(self, sink: str) -> None:
        """Read again from ``sink``'s first unacknowledged batch (after the sink restarted)."""
        self._cursors[sink].rewind()

    def persist_cursors(self) -> None:
        """Write ``cursors.json`` crash-safely (fsynced)."""
        self._require_open()
        write_cursors(os.path.join(self.directory, CURSORS_FILE), self._last_seq,
                      self._cursors.acked(), self._clock())

    # --- reading -----------------------------------------------------------------------------

    def _records_from(self, seq: int) -> Iterator[tuple[SegmentIndex, int]]:
        for segment in list(self._files.segments):
            if segment.last_seq >= seq:
                for position in range(segment.position(seq), segment.records):
                    yield segment, position

    def _mark_corrupt(self, segment: SegmentIndex, position: int, reason: str) -> None:
        seq = segment.seqs[position]
        if self._cursors.pending_somewhere(seq):
            self._dropped["corrupt"][0] += 1
            self._dropped["corrupt"][1] += segment.line_counts[position]
        self._cursors.mark_lost(seq)
        self._problems.append(f"{os.path.basename(segment.path)}: record {seq} at offset "
                              f"{segment.offsets[position]} is unreadable ({reason}); skipped")

    def read(self, sink: str, max_batches: int) -> list[tuple[int, list[Entries]]]:
        """Up to ``max_batches`` unacknowledged ``(seq, batch)`` from ``sink``'s read position,
        which moves past them. A key problem raises DecryptionError, after returning the
        batches read before it."""
        self._require_open()
        cursor = self._cursors[sink]
        out: list[tuple[int, list[Entries]]] = []
        for segment, position in self._records_from(cursor.next_read):
            if len(out) >= max_batches:
                break
            seq = segment.seqs[position]
            if seq not in self._cursors.lost and not cursor.is_settled(seq):
                batch = self._recent.get(seq)
                if batch is None:
                    try:
                        batch = self._files.load(segment, position)
                    except (RecordCorrupt, CodecError) as exc:
                        self._mark_corrupt(segment, position, str(exc))
                    except Exception:
                        if out:
                            return out
                        raise
                if batch is not None:
                    out.append((seq, batch))
            cursor.next_read = seq + 1
        behind = min(c.next_read for c in self._cursors.cursors.values())
        self._recent.forget_below(behind)
        if self._recent.covers(behind, self._last_seq):
            self._files.close_readers()  # every sink reads from memory now
        return out

    def select(
        self, *, since_ns: int | None = None, until_ns: int | None = None,
        sources: Collection[str] | None = None,
    ) -> Iterator[tuple[int, list[Entries]]]:
        """Selective recovery (selection.py): stored batches, oldest first, reduced to the
        entries of ``sources`` overlapping ``[since_ns, until_ns]``; cursors untouched. Do not
        append or collect while iterating."""
        self._require_open()
        return select_batches(self._files, self._problems, since_ns=since_ns,
                              until_ns=until_ns, sources=sources)

    # --- release -----------------------------------------------------------------------------

    def _remove_oldest(self, count: int, reason: str | None) -> int:
        """Delete the ``count`` oldest segments: settle their seqs for every sink, counting
        the unsettled ones as dropped for ``reason``, persist the cursors, then unlink."""
        victims = self._files.segments[:count]
        for segment in victims:
            if reason is not None:
                for seq, lines in zip(segment.seqs, segment.line_counts, strict=True):
                    if self._cursors.pending_somewhere(seq):
                        self._dropped[reason][0] += 1
                        self._dropped[reason][1] += lines
            self._cursors.settle_through(segment.last_seq)
        try:
            self.persist_cursors()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        freed = sum(self._files.unlink(segment) for segment in victims)
        fsync_directory(self.directory)
        return freed

    def collect(self) -> int:
        """Delete released segments and apply retention (module docstring); return bytes freed."""
        self._require_open()
        horizon = self._clock() - self._retention_s
        floor = self._cursors.floor(default=self._last_seq)
        count = 0
        for segment in self._files.segments:
            stale = segment.records > 0 and segment.last_write_at < horizon
            if not (stale or (segment.sealed and segment.last_seq <= floor)):
                break
            count += 1
        freed = self._remove_oldest(count, "retention") if count else 0
        if self._when_full == "drop_oldest":
            while self._files.segments and (self._files.total_bytes > self._max_total or (
                    self._max_files is not None and len(self._files.segments) > self._max_files)):
                freed += self._remove_oldest(1, "full")
        self._cursors.prune()
        return freed

    # --- introspection -----------------------------------------------------------------------

    def segments(self) -> list[SegmentInfo]:
        """The ledger, oldest segment first."""
        return [segment.info() for segment in self._files.segments]

    def drain_problems(self) -> list[str]:
        """Problems met since the last call (unreadable records), for the caller to log."""
        problems, self._problems = self._problems, []
        return problems

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for ``/stats`` and the metrics."""
        segments = self._files.segments
        sinks = {}
        for sink, cursor in self._cursors.cursors.items():
            behind = sum(s.records - s.position(cursor.acked + 1) for s in segments)
            sinks[sink] = {"acked_seq": cursor.acked, "read_seq": cursor.next_read,
                           "lag_batches": max(0, behind - len(cursor.pending))}
        oldest = segments[0].created_at if segments else None
        batches, lines, raw, stored = self._appended
        return {
            "segments": len(segments), "bytes": self._files.total_bytes,
            "records": sum(s.records for s in segments), "lines": sum(s.lines for s in segments),
            "first_seq": self.first_seq, "last_seq": self._last_seq,
            "durable_seq": self._durable_seq,
            "oldest_age_s": 0.0 if oldest is None else max(0.0, self._clock() - oldest),
            "sinks": sinks,
            "dropped": {r: {"batches": b, "lines": n} for r, (b, n) in self._dropped.items()},
            "appended": {"batches": batches, "lines": lines, "raw_bytes": raw,
                         "stored_bytes": stored},
        }
