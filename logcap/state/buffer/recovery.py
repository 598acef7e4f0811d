"""Start-up recovery of a disk-buffer directory: load the segments' ledgers, repair crash damage.

:func:`load_segment` gives the :class:`~logcap.state.buffer.ledger.SegmentIndex` of one segment:

* a sealed segment whose ``.idx`` is intact and agrees with the file (same first seq, same size)
  is loaded from the ``.idx`` alone, without reading its data;
* otherwise the segment is scanned (:func:`~logcap.state.buffer.record.scan_segment`): corrupt
  regions in the middle are skipped and reported; a torn tail is cut off (the file is truncated
  back to its last valid record and fsynced) and reported; a segment that is not the last one
  is then sealed and its ``.idx`` rewritten, so the next start-up need not scan it again;
* the last segment without an ``.idx`` is the active one: scanned every start-up, left open.

:func:`recover_segments` does it for a whole directory: it also deletes temporaries a crash
left (``*.tmp-*``), ledgers whose segment is gone, and empty segments other than the last, and
lists unknown files (left alone).

:func:`lock_directory` creates the directory if needed and takes an exclusive ``flock`` on
``buffer.lock``: two agents never write one buffer.

Nothing here raises for bad data: every repair is written into the :class:`RecoveryReport`,
whose ``problems`` the caller logs loudly. Only I/O errors (EIO, EACCES) propagate.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from logcap.state import dirlock
from logcap.state.atomic import TEMP_INFIX, atomic_write_bytes
from logcap.state.buffer.crypto import KEY_ID_BYTES, Cipher
from logcap.state.buffer.ledger import (
    INDEX_SUFFIX,
    IndexCorrupt,
    SegmentIndex,
    index_path,
    parse_segment_name,
)
from logcap.state.buffer.record import HEADER_BYTES, RecordCorrupt, parse_header, scan_segment

__all__ = [
    "LOCK_FILE",
    "BufferDirectoryError",
    "RecoveryReport",
    "check_keys",
    "load_segment",
    "lock_directory",
    "missing_seqs",
    "recover_segments",
]

LOCK_FILE = "buffer.lock"
KNOWN_PREFIXES = ("cursors.json", LOCK_FILE)


class BufferDirectoryError(Exception):
    """The buffer directory cannot be used (the message names it and says why)."""


def lock_directory(directory: str) -> int:
    """Create ``directory`` if needed and lock it (:func:`logcap.state.dirlock.lock_directory`:
    ``buffer.lock`` holds our PID); return the lock's descriptor (keep it open)."""
    try:
        return dirlock.lock_directory(directory, LOCK_FILE, "disk buffer directory")
    except dirlock.DirectoryLockError as exc:
        raise BufferDirectoryError(str(exc)) from exc


def missing_seqs(segments: list[SegmentIndex], first_seq: int, last_seq: int) -> set[int]:
    """Seqs in ``[first_seq, last_seq]`` that no segment holds: records lost to corruption or
    cut with a torn tail (their seqs were persisted as assigned)."""
    missing: set[int] = set()
    expected = first_seq
    for segment in segments:
        for seq in segment.seqs:
            missing.update(range(expected, seq))
            expected = max(expected, seq + 1)
    missing.update(range(expected, last_seq + 1))
    return missing


@dataclass(slots=True)
class RecoveryReport:
    """What :meth:`SegmentStore.open` found and repaired; ``clean`` when nothing was wrong."""

    directory: str
    segments: int = 0
    records: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    indexes_used: int = 0
    indexes_rebuilt: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    torn_tails: list[tuple[str, int]] = field(default_factory=list)
    corrupt_regions: list[tuple[str, int, int]] = field(default_factory=list)
    lost_seqs: int = 0
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    cursors: str = "missing"
    key_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.problems


def _read_index(path: str, first_seq: int, size: int) -> SegmentIndex:
    with open(index_path(path), "rb") as handle:
        index = SegmentIndex.decode(path, handle.read())
    if index.first_seq != first_seq:
        raise IndexCorrupt(f"first seq {index.first_seq} does not match the file name")
    if index.size != size:
        raise IndexCorrupt(f"records end at {index.size}, the file has {size} bytes")
    if not index.sealed:
        raise IndexCorrupt("not marked sealed")
    return index


def load_segment(
    path: str, first_seq: int, *, is_last: bool, report: RecoveryReport
) -> SegmentIndex:
    """Load (and repair, see the module docstring) the segment at ``path``."""
    name = os.path.basename(path)
    stat = os.stat(path)
    had_index = os.path.exists(index_path(path))
    if had_index:
        try:
            index = _read_index(path, first_seq, stat.st_size)
        except (IndexCorrupt, OSError) as exc:
            report.problems.append(f"{name}: ledger {os.path.basename(index_path(path))} "
                                   f"unusable ({exc}); rebuilt by scanning the segment")
        else:
            report.indexes_used += 1
            return index
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        scan = scan_segment(fd, stat.st_size)
        index, rejected = SegmentIndex.from_scan(
            path, first_seq, scan, created_at=stat.st_mtime, last_write_at=stat.st_mtime
        )
        for offset, length in scan.corrupt:
            report.corrupt_regions.append((name, offset, length))
            report.problems.append(f"{name}: {length} corrupt bytes at offset {offset} skipped")
        for offset in rejected:
            report.problems.append(f"{name}: record at offset {offset} has a seq out of order; "
                                   "skipped")
        if scan.torn_bytes:
            os.ftruncate(fd, scan.valid_end)
            os.fsync(fd)
            report.torn_tails.append((name, scan.torn_bytes))
            report.problems.append(f"{name}: torn tail of {scan.torn_bytes} bytes cut back to "
                                   f"offset {scan.valid_end}")
    finally:
        os.close(fd)
    report.scanned.append(name)
    if is_last:
        if had_index:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index_path(path))
        return index
    index.sealed = True
    if index.records:
        atomic_write_bytes(index_path(path), index.encode())
        report.indexes_rebuilt.append(name)
        if not had_index:
            report.problems.append(f"{name}: sealed segment had no ledger; rebuilt")
    return index


def _key_id_at(fd: int, offset: int) -> tuple[bool, bytes | None]:
    data = os.pread(fd, HEADER_BYTES + KEY_ID_BYTES, offset)
    header, _ = parse_header(data)
    return header.encrypted, (data[HEADER_BYTES:] if header.encrypted else None)


def check_keys(index: SegmentIndex, cipher: Cipher | None, report: RecoveryReport) -> None:
    """Check that the first and last records of a segment can be opened with ``cipher``
    (reads two record headers; the full authentication happens at read time)."""
    if not index.records:
        return
    name = os.path.basename(index.path)
    fd = os.open(index.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for position in sorted({0, index.records - 1}):
            try:
                encrypted, key_id = _key_id_at(fd, index.offsets[position])
            except RecordCorrupt:
                continue
            problem = None
            if encrypted and cipher is None:
                problem = f"{name}: records are encrypted but no key is configured"
            elif encrypted and cipher is not None and key_id != cipher.key_id:
                problem = (f"{name}: records written with key id {key_id.hex() if key_id else '?'}"
                           f", the configured key has id {cipher.key_id.hex()}")
            if problem and problem not in report.key_problems:
                report.key_problems.append(problem)
                report.problems.append(problem)
    finally:
        os.close(fd)


def _segment_paths(directory: str, report: RecoveryReport) -> list[tuple[int, str]]:
    found, ledgers = [], set()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        first = parse_segment_name(name)
        if first is not None:
            found.append((first, path))
        elif name.endswith(INDEX_SUFFIX):
            ledgers.add(path)
        elif TEMP_INFIX in name:
            os.unlink(path)
            report.removed.append(name)
        elif not name.startswith(KNOWN_PREFIXES):
            report.ignored.append(name)
    for orphan in sorted(ledgers - {index_path(path) for _, path in found}):
        os.unlink(orphan)
        report.removed.append(os.path.basename(orphan))
    return found


def recover_segments(
    directory: str, cipher: Cipher | None, report: RecoveryReport
) -> list[SegmentIndex]:
    """Load and repair every segment of ``directory``, oldest first (module docstring)."""
    paths = _segment_paths(directory, report)
    segments = []
    for position, (first, path) in enumerate(paths):
        is_last = position == len(paths) - 1
        index = load_segment(path, first, is_last=is_last, report=report)
        if not index.records and not is_last:
            os.unlink(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(index_path(path))
            report.removed.append(os.path.basename(path))
            continue
        check_keys(index, cipher, report)
        segments.append(index)
    return segments
