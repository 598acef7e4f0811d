"""Record framing of disk-buffer segment files: the header, its checksum, and the recovery scan.

A segment file is a plain sequence of records, nothing before, between or after them. Record
layout (little-endian; an open format, version 1)::

    offset  size  field
    0       4     magic b"LCR1"
    4       1     flags: bit 0 = payload encrypted (AES-256-GCM, see crypto.py); others must be 0
    5       4     u32 length of the payload in bytes
    9       4     u32 count: lines in the batch
    13      8     u64 seq: the record's sequence number (one per batch, see segments.py)
    21      8     i64 min_ts_ns: lowest line timestamp in the batch (0 when it has no lines)
    29      8     i64 max_ts_ns: highest line timestamp in the batch
    37      8     checksum: BLAKE2b, 8-byte digest, personalisation b"logcap-record",
                  over bytes 0..36 of the header followed by the payload
    45      n     payload: one zstd frame (no content checksum: this checksum covers it;
                  older frames have one), sealed when encrypted

The checksum covers every header field and the whole payload, so a torn write, a bit flip or a
stray overwrite anywhere in a record is detected (a 64-bit BLAKE2b, stronger than CRC32 against
both random and structured damage). The timestamp range lets selective reads skip a record
without decompressing it.

Scanning (:func:`scan_segment`) walks a file from the start: a valid record is taken whole; at
an invalid one the scan looks for the next offset holding the magic *and* a record whose
checksum verifies. If one exists, the bytes in between are a corrupt region (skipped, counted);
if none does, everything from the invalid offset to the end of the file is the torn tail (what
a crash left half-written, or a damaged last record) and ``valid_end`` is where a writer must
cut the file back to. Scanning never raises for bad data, only for I/O errors.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field

__all__ = [
    "CHECKSUM_BYTES",
    "FLAG_ENCRYPTED",
    "HEADER_BYTES",
    "MAGIC",
    "MAX_PAYLOAD_BYTES",
    "RecordCorrupt",
    "RecordHeader",
    "ScannedRecord",
    "SegmentScan",
    "frame_record",
    "parse_header",
    "parse_record",
    "read_record",
    "scan_segment",
]

MAGIC = b"LCR1"
FLAG_ENCRYPTED = 0x01
_KNOWN_FLAGS = FLAG_ENCRYPTED
CHECKSUM_BYTES = 8
_CHECKED = struct.Struct("<4sBIIQqq")
_HEADER = struct.Struct(f"<4sBIIQqq{CHECKSUM_BYTES}s")
HEADER_BYTES = _HEADER.size
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
_PERSON = b"logcap-record"
_SCAN_CHUNK_BYTES = 1024 * 1024


class RecordCorrupt(Exception):
    """The bytes at an offset are not a valid record (reason in the message)."""


@dataclass(frozen=True, slots=True)
class RecordHeader:
    """The decoded header of one record."""

    flags: int
    length: int
    count: int
    seq: int
    min_ts_ns: int
    max_ts_ns: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def size(self) -> int:
        """Bytes the whole record takes in the file (header + payload)."""
        return HEADER_BYTES + self.length


def _checksum(checked_header: bytes, payload: bytes | memoryview) -> bytes:
    digest = hashlib.blake2b(checked_header, digest_size=CHECKSUM_BYTES, person=_PERSON)
    digest.update(payload)
    return digest.digest()


def frame_record(
    *, seq: int, count: int, min_ts_ns: int, max_ts_ns: int, payload: bytes, encrypted: bool
) -> bytes:
    """The bytes of one record holding ``payload``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    flags = FLAG_ENCRYPTED if encrypted else 0
    checked = _CHECKED.pack(MAGIC, flags, len(payload), count, seq, min_ts_ns, max_ts_ns)
    return b"".join((checked, _checksum(checked, payload), payload))


def parse_header(data: bytes) -> tuple[RecordHeader, bytes]:
    """Decode a header (its first bytes suffice); return it and the stored checksum."""
    if len(data) < HEADER_BYTES:
        raise RecordCorrupt(f"short header ({len(data)} of {HEADER_BYTES} bytes)")
    magic, flags, length, count, seq, low, high, checksum = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise RecordCorrupt(f"bad magic {magic!r}")
    if flags & ~_KNOWN_FLAGS:
        raise RecordCorrupt(f"unknown flags {flags:#04x}")
    if length > MAX_PAYLOAD_BYTES:
        raise RecordCorrupt(f"implausible payload length {length}")
    return RecordHeader(flags, length, count, seq, low, high), checksum


def parse_record(data: bytes) -> tuple[RecordHeader, bytes]:
    """Validate a whole record (exactly its bytes); return its header and payload."""
    header, checksum = parse_header(data)
    if len(data) != header.size:
        raise RecordCorrupt(f"record is {len(data)} bytes, its header says {header.size}")
    payload = data[HEADER_BYTES:]
    if _checksum(data[:_CHECKED.size], payload) != checksum:
        raise RecordCorrupt("checksum mismatch")
    return header, payload


def read_record(fd: int, offset: int, size: int) -> tuple[RecordHeader, bytes]:
    """Read and validate the ``size``-byte record at ``offset`` of ``fd``."""
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise RecordCorrupt(f"short read at offset {offset} ({len(data)} of {size} bytes)")
    return parse_record(data)


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """A valid record found by a scan."""

    offset: int
    header: RecordHeader

    @property
    def end(self) -> int:
        return self.offset + self.header.size


@dataclass(slots=True)
class SegmentScan:
    """What :func:`scan_segment` found: valid records in file order, corrupt regions
    ``(offset, length)`` between them, and where the valid data ends."""

    file_size: int
    records: list[ScannedRecord] = field(default_factory=list)
    corrupt: list[tuple[int, int]] = field(default_factory=list)
    valid_end: int = 0

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last valid record (0 for a clean file)."""
        return self.file_size - self.valid_end


def _try_record(fd: int, offset: int, file_size: int) -> RecordHeader | None:
    head = os.pread(fd, HEADER_BYTES, offset)
    try:
        header, _ = parse_header(head)
    except RecordCorrupt:
        return None
    if offset + header.size > file_size:
        return None
    try:
        read_record(fd, offset, header.size)
    except RecordCorrupt:
        return None
    return header


def _next_valid(fd: int, start: int, file_size: int) -> tuple[int, RecordHeader] | None:
    """The first offset >= start holding a valid record, by a search for the magic."""
    position = start
    while position < file_size:
        chunk = os.pread(fd, _SCAN_CHUNK_BYTES, position)
        if not chunk:
            return None
        hit = chunk.find(MAGIC)
        while hit != -1:
            header = _try_record(fd, position + hit, file_size)
            if header is not None:
                return position + hit, header
            hit = chunk.find(MAGIC, hit + 1)
        position += max(1, len(chunk) - len(MAGIC) + 1)
    return None


def scan_segment(fd: int, file_size: int | None = None) -> SegmentScan:
    """Scan an open segment file (see the module docstring); reads, never writes."""
    size = os.fstat(fd).st_size if file_size is None else file_size
    scan = SegmentScan(file_size=size)
    position = 0
    while position < size:
        header = _try_record(fd, position, size)
        if header is None:
            found = _next_valid(fd, position + 1, size)
            if found is None:
                break
            next_offset, header = found
            scan.corrupt.append((position, next_offset - position))
            position = next_offset
        record = ScannedRecord(position, header)
        scan.records.append(record)
        position = record.end
        scan.valid_end = position
    return scan
