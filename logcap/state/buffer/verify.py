"""A read-only integrity check of a disk-buffer directory (``logcap buffer verify DIR``).

:func:`verify_directory` scans every segment record by record, exactly as start-up recovery would,
but changes nothing: no truncation, no ledger rewrite, no lock taken (so it can run beside a
live agent; the active segment may then show a record being written as a torn tail). For each
segment it reports valid records, corrupt regions, the torn tail, and whether the ledger
(``.idx``) agrees with the data. With ``decode=True`` (the default) every valid record is also
decompressed (and its zstd content checksum checked, in frames written with one) and decoded;
with a ``cipher`` encrypted records are authenticated and decrypted too, and a record the key
cannot open is reported with its file (encrypted records are otherwise only checksum-verified,
and counted as such).

The report's ``ok`` is true when nothing at all was found; the caller picks the exit status.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from logcap.state.buffer.codec import CodecError, PayloadCodec
from logcap.state.buffer.crypto import Cipher, DecryptionError
from logcap.state.buffer.cursors import CURSORS_FILE, parse_cursors
from logcap.state.buffer.ledger import (
    IndexCorrupt,
    SegmentIndex,
    index_path,
    parse_segment_name,
)
from logcap.state.buffer.record import RecordCorrupt, read_record, scan_segment

__all__ = ["LEDGER_STATES", "SegmentVerdict", "VerifyReport", "verify_directory"]

LEDGER_STATES = ("ok", "active", "missing", "corrupt", "stale")
MAX_LISTED_PER_SEGMENT = 5


@dataclass(frozen=True, slots=True)
class SegmentVerdict:
    """One segment's check. ``ledger`` is one of :data:`LEDGER_STATES` (``active``: the last
    segment, which has no ledger until it is sealed)."""

    name: str
    first_seq: int
    last_seq: int
    bytes: int
    records_ok: int
    corrupt_regions: tuple[tuple[int, int], ...]
    torn_tail_bytes: int
    undecodable: int
    encrypted_unchecked: int
    ledger: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class VerifyReport:
    directory: str
    segments: tuple[SegmentVerdict, ...]
    cursors: str
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems and all(verdict.ok for verdict in self.segments)

    def format(self) -> str:
        """Human-readable lines: one per segment, then every problem."""
        lines = [f"{self.directory}: {len(self.segments)} segments, cursors {self.cursors}"]
        for v in self.segments:
            lines.append(
                f"  {v.name}: seq {v.first_seq}..{v.last_seq}, {v.records_ok} records ok, "
                f"{len(v.corrupt_regions)} corrupt regions, torn tail {v.torn_tail_bytes} B, "
                f"{v.undecodable} undecodable, ledger {v.ledger}")
            lines.extend(f"    ! {problem}" for problem in v.problems)
        lines.extend(f"  ! {problem}" for problem in self.problems)
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def _ledger_state(path: str, first_seq: int, scanned: SegmentIndex, is_last: bool) -> str:
    try:
        with open(index_path(path), "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return "active" if is_last else "missing"
    try:
        ledger = SegmentIndex.decode(path, data)
    except IndexCorrupt:
        return "corrupt"
    same = (ledger.first_seq == first_seq and ledger.size == scanned.size
            and ledger.seqs == scanned.seqs and ledger.offsets == scanned.offsets)
    return "ok" if same else "stale"


def _check_segment(path: str, first_seq: int, *, is_last: bool, codec: PayloadCodec | None,
                   ) -> SegmentVerdict:
    name = os.path.basename(path)
    problems: list[str] = []
    undecodable = unchecked = 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        scan = scan_segment(fd)
        index, rejected = SegmentIndex.from_scan(path, first_seq, scan, created_at=0.0,
                                                 last_write_at=0.0)
        for found in scan.records:
            head = found.header
            if codec is None:
                continue
            if head.encrypted and codec.cipher is None:
                unchecked += 1
                continue
            try:
                _, payload = read_record(fd, found.offset, head.size)
                codec.decode(payload, encrypted=head.encrypted, seq=head.seq, lines=head.count,
                             min_ts_ns=head.min_ts_ns, max_ts_ns=head.max_ts_ns, where=name)
            except (RecordCorrupt, CodecError, DecryptionError) as exc:
                undecodable += 1
                if undecodable <= MAX_LISTED_PER_SEGMENT:
                    problems.append(str(exc) if isinstance(exc, DecryptionError)
                                    else f"{name}: record {head.seq}: {exc}")
    finally:
        os.close(fd)
    if undecodable > MAX_LISTED_PER_SEGMENT:
        problems.append(f"{name}: ... and {undecodable - MAX_LISTED_PER_SEGMENT} more "
                        "undecodable records")
    problems += [f"{name}: {length} corrupt bytes at offset {offset}"
                 for offset, length in scan.corrupt]
    problems += [f"{name}: record at offset {offset} has a seq out of order"
                 for offset in rejected]
    if scan.torn_bytes:
        problems.append(f"{name}: torn tail of {scan.torn_bytes} bytes after offset "
                        f"{scan.valid_end}")
    ledger = _ledger_state(path, first_seq, index, is_last)
    if ledger not in ("ok", "active"):
        problems.append(f"{name}: ledger {ledger}")
    return SegmentVerdict(name, first_seq, index.last_seq, scan.file_size, index.records,
                          tuple(scan.corrupt), scan.torn_bytes, undecodable, unchecked, ledger,
                          tuple(problems))


def _check_cursors(directory: str) -> tuple[str, list[str]]:
    path = os.path.join(directory, CURSORS_FILE)
    try:
        with open(path, "rb") as handle:
            parse_cursors(handle.read())
    except FileNotFoundError:
        return "missing", []
    except ValueError as exc:
        return "corrupt", [f"{CURSORS_FILE}: {exc}"]
    return "ok", []


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # reported when it is opened


def verify_directory(
    directory: str | os.PathLike[str], *, cipher: Cipher | None = None, decode: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check every segment of ``directory`` without modifying anything (module docstring).
    ``progress(bytes_checked, total_bytes)`` is called after each segment. Raises OSError
    only if the directory itself cannot be listed."""
    where = os.fspath(directory)
    names = sorted((first, os.path.join(where, name)) for name in os.listdir(where)
                   if (first := parse_segment_name(name)) is not None)
    codec = PayloadCodec(cipher=cipher) if decode else None
    verdicts = []
    problems: list[str] = []
    sizes = [_size(path) for _, path in names]
    checked = 0
    for position, (first, path) in enumerate(names):
        try:
            verdicts.append(_check_segment(path, first, is_last=position == len(names) - 1,
                                           codec=codec))
        except OSError as exc:
            problems.append(f"{os.path.basename(path)}: unreadable: {exc.strerror or exc}")
        checked += sizes[position]
        if progress is not None:
            progress(checked, sum(sizes))
    cursors, cursor_problems = _check_cursors(where)
    return VerifyReport(where, tuple(verdicts), cursors, tuple(problems + cursor_problems))
