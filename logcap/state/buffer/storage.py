"""The segment files of a disk buffer: append records, rotate, seal, read one record, unlink.

:class:`SegmentFiles` owns the ordered list of :class:`~logcap.state.buffer.ledger.SegmentIndex`
(oldest first), the descriptor of the *active* segment (the last one, unsealed, opened with
``O_APPEND``) and a few cached read descriptors. It knows nothing of sinks or limits: the store
(segments.py) decides what to write and what to delete.

* :meth:`~SegmentFiles.write` appends one framed record to the active segment; when the record
  would take a non-empty active segment past ``max_file_size``, that segment is sealed first
  (fsync, then its ``.idx`` written atomically) and a new one is created (``O_EXCL``, then the
  directory fsynced). A single record larger than ``max_file_size`` gets a segment of its own.
* If a write fails (ENOSPC, EIO), the partial record is cut back (``ftruncate``) at once or, if
  that fails too, before the next write; the error propagates unchanged and the ledger is not
  changed. A failed seal leaves the segment active; the next write tries again.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable

from logcap.messages import Entries
from logcap.state.atomic import atomic_write_bytes, create_for_append, fsync_directory
from logcap.state.buffer.codec import EncodedBatch, PayloadCodec
from logcap.state.buffer.ledger import SegmentIndex, index_path, segment_name
from logcap.state.buffer.record import RecordCorrupt, read_record

__all__ = ["READER_FDS", "SegmentFiles"]

READER_FDS = 8
FILE_MODE = 0o644


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class SegmentFiles:
    """The files of one buffer directory (see the module docstring). Not thread-safe."""

    def __init__(self, directory: str, codec: PayloadCodec, *, max_file_size: int,
                 clock: Callable[[], float]) -> None:
        self.directory = directory
        self.codec = codec
        self.max_file_size = max_file_size
        self._clock = clock
        self.segments: list[SegmentIndex] = []
        self.total_bytes = 0
        self._active_fd: int | None = None
        self._tail_dirty = False
        self._readers: OrderedDict[str, int] = OrderedDict()

    def adopt(self, segments: list[SegmentIndex]) -> None:
        """Take over recovered segments; open the last one for appending if it is unsealed
        (and fsync it: what a crash left in the page cache becomes durable)."""
        self.segments = segments
        self.total_bytes = sum(segment.size for segment in segments)
        if segments and not segments[-1].sealed:
            self._active_fd = os.open(segments[-1].path,
                                      os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.fsync(self._active_fd)

    @property
    def active(self) -> SegmentIndex | None:
        """The segment the next record goes to, if it can still take records."""
        if self.segments and not self.segments[-1].sealed:
            return self.segments[-1]
        return None

    def needs_new_segment(self, size: int) -> bool:
        """Would a record of ``size`` bytes start a new segment file?"""
        active = self.active
        if active is None:
            return True
        return active.records > 0 and active.size + size > self.max_file_size

    def repair_tail(self) -> None:
        """Cut back what a failed write left after the last record (raises if it still fails)."""
        if self._tail_dirty and self._active_fd is not None:
            os.ftruncate(self._active_fd, self.segments[-1].size)
        self._tail_dirty = False

    def discard_misnamed_empty(self, seq: int) -> None:
        """Remove an empty active segment whose name is not ``seq`` (a repair emptied it)."""
        active = self.active
        if active is not None and not active.records and active.first_seq != seq:
            self.unlink(active)
            fsync_directory(self.directory)

    def write(self, seq: int, record: bytes, encoded: EncodedBatch) -> None:
        """Append the framed ``record`` numbered ``seq`` (module docstring)."""
        self.repair_tail()
        self.discard_misnamed_empty(seq)
        if self.needs_new_segment(len(record)):
            if self.active is not None:
                self.seal()
            self._create(seq)
        segment = self.segments[-1]
        assert self._active_fd is not None
        offset = segment.size
        try:
            _write_all(self._active_fd, record)
        except OSError:
            self._tail_dirty = True
            with contextlib.suppress(OSError):
                self.repair_tail()
            raise
        segment.add(seq, offset, len(record), encoded.lines, encoded.min_ts_ns,
                    encoded.max_ts_ns)
        segment.last_write_at = self._clock()
        self.total_bytes += len(record)

    def _create(self, seq: int) -> None:
        path = os.path.join(self.directory, segment_name(seq))
        self._active_fd = create_for_append(path, FILE_MODE)
        now = self._clock()
        self.segments.append(SegmentIndex(path, seq, created_at=now, last_write_at=now))

    def seal(self) -> None:
        """Fsync the active segment, write its ``.idx``, stop appending to it."""
        segment = self.active
        if segment is None or self._active_fd is None:
            return
        os.fsync(self._active_fd)
        segment.sealed = True
        try:
            atomic_write_bytes(index_path(segment.path), segment.encode())
        except BaseException:
            segment.sealed = False
            raise
        os.close(self._active_fd)
        self._active_fd = None

    def sync(self) -> None:
        """Make every appended record durable (the sealed ones already are)."""
        if self._active_fd is not None:
            os.fdatasync(self._active_fd)

    def _reader(self, path: str) -> int:
        fd = self._readers.pop(path, None)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if len(self._readers) >= READER_FDS:
                os.close(self._readers.popitem(last=False)[1])
        self._readers[path] = fd
        return fd

    def load(self, segment: SegmentIndex, position: int) -> list[Entries]:
        """Read, verify and decode the record at ``position`` of ``segment``. Raises
        RecordCorrupt / CodecError for damage, DecryptionError for a key problem."""
        seq = segment.seqs[position]
        header, payload = read_record(self._reader(segment.path), segment.offsets[position],
                                      segment.sizes[position])
        if header.seq != seq:
            raise RecordCorrupt(f"holds seq {header.seq}, the ledger says {seq}")
        return self.codec.decode(
            payload, encrypted=header.encrypted, seq=seq, lines=header.count,
            min_ts_ns=header.min_ts_ns, max_ts_ns=header.max_ts_ns,
            where=os.path.basename(segment.path))

    def unlink(self, segment: SegmentIndex) -> int:
        """Delete a segment and its ledger (the caller fsyncs the directory); return its size."""
        if segment is self.active and self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
            self._tail_dirty = False
        reader = self._readers.pop(segment.path, None)
        if reader is not None:
            os.close(reader)
        for path in (segment.path, index_path(segment.path)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.segments.remove(segment)
        self.total_bytes -= segment.size
        return segment.size

    def close_readers(self) -> None:
        """Close the descriptors opened for reading (the next load opens its file again)."""
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()

    def close(self) -> None:
        """Close every descriptor (no sync)."""
        for fd in [self._active_fd, *self._readers.values()]:
            if fd is not None:
                os.close(fd)
        self._active_fd = None
        self._readers.clear()
