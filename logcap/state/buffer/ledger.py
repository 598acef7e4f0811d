"""The per-segment ledger: what a segment holds, in memory and in its ``.idx`` file.

Each segment ``<first seq, 16 decimal digits>.seg`` has a :class:`SegmentIndex` in memory: for
every record its seq, file offset, size, line count and timestamp range, so a read seeks
straight to a record and holds one record in memory at a time. The index of a *sealed* segment
(one that will never be appended to again) is also written, atomically, next to it as
``<same name>.idx``; start-up then reads that small file instead of the segment's data. Only
the last, unsealed segment is scanned at start-up (its tail may be torn). A missing or damaged
``.idx``, or one that disagrees with its segment (size, first seq), is rebuilt by scanning.

``.idx`` layout (little-endian, version 1)::

    offset  size  field
    0       4     magic b"LCX1"
    4       1     flags: bit 0 = sealed
    5       8     u64 first_seq (the segment file's name)
    13      4     u32 record count
    17      8     u64 line count
    25      8     u64 byte length of the segment file
    33      8     f64 created_at (unix seconds)
    41      8     f64 last_write_at (unix seconds): when the newest record was appended
    49      8     i64 min_ts_ns over the segment's lines
    57      8     i64 max_ts_ns
    65      40*n  per record: u64 seq, u64 offset, u32 size, u32 lines, i64 min_ts_ns, i64 max_ts_ns
    ...     8     BLAKE2b-64 (personalisation b"logcap-ledger") of all the bytes before it
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import struct
from dataclasses import dataclass, field

from logcap.state.buffer.record import SegmentScan

__all__ = [
    "INDEX_SUFFIX",
    "SEGMENT_SUFFIX",
    "IndexCorrupt",
    "SegmentIndex",
    "SegmentInfo",
    "index_path",
    "parse_segment_name",
    "segment_name",
]

SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"
SEQ_DIGITS = 16
_NAME = re.compile(rf"^(\d{{{SEQ_DIGITS}}}){re.escape(SEGMENT_SUFFIX)}$")
_IDX_MAGIC = b"LCX1"
_IDX_HEAD = struct.Struct("<4sBQIQQddqq")
_IDX_ROW = struct.Struct("<QQIIqq")
_IDX_CHECKSUM_BYTES = 8
_IDX_PERSON = b"logcap-ledger"
_FLAG_SEALED = 0x01


class IndexCorrupt(Exception):
    """An ``.idx`` file that cannot be trusted (reason in the message)."""


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record is ``first_seq``."""
    return f"{first_seq:0{SEQ_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first seq in a segment file name, or None if ``name`` is not a segment's."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def index_path(segment_path: str) -> str:
    """Where the ``.idx`` of a segment lives."""
    return segment_path[: -len(SEGMENT_SUFFIX)] + INDEX_SUFFIX


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment, as the ledger knows it."""

    name: str
    first_seq: int
    last_seq: int
    records: int
    lines: int
    bytes: int
    created_at: float
    last_write_at: float
    sealed: bool


@dataclass(slots=True)
class SegmentIndex:
    """Everything known about one segment without reading its payloads."""

    path: str
    first_seq: int
    created_at: float
    last_write_at: float
    sealed: bool = False
    size: int = 0
    lines: int = 0
    seqs: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    line_counts: list[int] = field(default_factory=list)
    min_ts: list[int] = field(default_factory=list)
    max_ts: list[int] = field(default_factory=list)

    @property
    def records(self) -> int:
        return len(self.seqs)

    @property
    def last_seq(self) -> int:
        """The seq of the newest record (``first_seq - 1`` while empty)."""
        return self.seqs[-1] if self.seqs else self.first_seq - 1

    def time_range(self) -> tuple[int, int] | None:
        """``(min, max)`` line timestamps over the records that hold lines."""
        pairs = [(lo, hi) for lo, hi, n in zip(self.min_ts, self.max_ts, self.line_counts,
                                               strict=True) if n]
        if not pairs:
            return None
        return min(lo for lo, _ in pairs), max(hi for _, hi in pairs)

    def add(self, seq: int, offset: int, size: int, lines: int, min_ts: int, max_ts: int) -> None:
        """Record a record appended at ``offset`` (seqs must increase)."""
        self.seqs.append(seq)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.line_counts.append(lines)
        self.min_ts.append(min_ts)
        self.max_ts.append(max_ts)
        self.lines += lines
        self.size = max(self.size, offset + size)

    def info(self) -> SegmentInfo:
        """What the store's introspection shows of this segment."""
        return SegmentInfo(os.path.basename(self.path), self.first_seq, self.last_seq,
                           self.records, self.lines, self.size, self.created_at,
                           self.last_write_at, self.sealed)

    def position(self, seq: int) -> int:
        """Index of the first record whose seq is >= ``seq``."""
        return bisect.bisect_left(self.seqs, seq)

    @classmethod
    def from_scan(
        cls, path: str, first_seq: int, scan: SegmentScan, *, created_at: float,
        last_write_at: float,
    ) -> tuple[SegmentIndex, list[int]]:
        """Build from a scan; records whose seq is below ``first_seq`` or not above the previous
        one cannot belong here and are left out. Returns the index and their offsets."""
        index = cls(path, first_seq, created_at, last_write_at)
        rejected = []
        for found in scan.records:
            head = found.header
            if head.seq < first_seq or head.seq <= index.last_seq:
                rejected.append(found.offset)
                continue
            index.add(head.seq, found.offset, head.size, head.count, head.min_ts_ns,
                      head.max_ts_ns)
        index.size = scan.valid_end
        return index, rejected

    def encode(self) -> bytes:
        """The ``.idx`` bytes for this segment (see the module docstring)."""
        span = self.time_range() or (0, 0)
        head = _IDX_HEAD.pack(
            _IDX_MAGIC, _FLAG_SEALED if self.sealed else 0, self.first_seq, self.records,
            self.lines, self.size, self.created_at, self.last_write_at, span[0], span[1],
        )
        rows = b"".join(
            _IDX_ROW.pack(*row) for row in zip(self.seqs, self.offsets, self.sizes,
                                               self.line_counts, self.min_ts, self.max_ts,
                                               strict=True)
        )
        body = head + rows
        digest = hashlib.blake2b(body, digest_size=_IDX_CHECKSUM_BYTES, person=_IDX_PERSON)
        return body + digest.digest()

    @classmethod
    def decode(cls, path: str, data: bytes) -> SegmentIndex:
        """Parse ``.idx`` bytes for the segment at ``path``; raise :class:`IndexCorrupt`."""
        body, checksum = data[:-_IDX_CHECKSUM_BYTES], data[-_IDX_CHECKSUM_BYTES:]
        if len(body) < _IDX_HEAD.size:
            raise IndexCorrupt(f"too short ({len(data)} bytes)")
        digest = hashlib.blake2b(body, digest_size=_IDX_CHECKSUM_BYTES, person=_IDX_PERSON)
        if digest.digest() != checksum:
            raise IndexCorrupt("checksum mismatch")
        magic, flags, first, count, lines, size, created, written, _lo, _hi = (
            _IDX_HEAD.unpack_from(body, 0)
        )
        if magic != _IDX_MAGIC:
            raise IndexCorrupt(f"bad magic {magic!r}")
        rows = body[_IDX_HEAD.size:]
        if len(rows) != count * _IDX_ROW.size:
            raise IndexCorrupt(f"{len(rows)} bytes of rows for {count} records")
        index = cls(path, first, created, written, sealed=bool(flags & _FLAG_SEALED))
        previous = first - 1
        for seq, offset, rsize, rlines, low, high in _IDX_ROW.iter_unpack(rows):
            if seq <= previous or offset + rsize > size:
                raise IndexCorrupt(f"inconsistent row for seq {seq}")
            index.add(seq, offset, rsize, rlines, low, high)
            previous = seq
        index.size = size
        if index.lines != lines:
            raise IndexCorrupt("line total does not match the rows")
        return index
