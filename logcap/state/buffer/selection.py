"""Selective recovery: read stored batches by time range and source, without touching cursors.

The seed's ``ReadAll`` returned everything; :func:`select_batches` returns only what is asked
for, and reads only what it must. A segment whose ledger time range misses the window is not
opened; a record whose header time range misses it is not read or decompressed. Within a record,
entries are kept whole (an entry is one stream's run of lines): those of the wanted sources with
at least one line in ``[since_ns, until_ns]`` (line ``i`` of an entry has timestamp
:meth:`~logcap.messages.Entries.timestamp`: its own, or ``ts_ns + i``). Unreadable records are
skipped and described in ``problems``; a record the key cannot decrypt raises
:class:`~logcap.state.buffer.crypto.DecryptionError`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from logcap.messages import Entries
from logcap.state.buffer.codec import CodecError
from logcap.state.buffer.ledger import SegmentIndex
from logcap.state.buffer.record import RecordCorrupt
from logcap.state.buffer.storage import SegmentFiles

__all__ = ["MAX_TS_NS", "MIN_TS_NS", "select_batches"]

MIN_TS_NS = -(2**63)
MAX_TS_NS = 2**63 - 1


def _overlaps(low: int, high: int, first: int, last: int) -> bool:
    return first <= high and last >= low


def _has_line_in(entries: Entries, low: int, high: int) -> bool:
    if entries.timestamps is None:
        return _overlaps(low, high, entries.ts_ns, entries.ts_ns + len(entries.lines) - 1)
    return any(low <= ts <= high for ts in entries.timestamps)


def _positions(segment: SegmentIndex, low: int, high: int) -> Iterator[int]:
    span = segment.time_range()
    if span is None or not _overlaps(low, high, *span):
        return
    for position in range(segment.records):
        if segment.line_counts[position] and _overlaps(
                low, high, segment.min_ts[position], segment.max_ts[position]):
            yield position


def select_batches(
    files: SegmentFiles, problems: list[str], *, since_ns: int | None = None,
    until_ns: int | None = None, sources: Collection[str] | None = None,
) -> Iterator[tuple[int, list[Entries]]]:
    """``(seq, entries)`` for every stored batch with wanted entries, oldest first."""
    low = MIN_TS_NS if since_ns is None else since_ns
    high = MAX_TS_NS if until_ns is None else until_ns
    for segment in list(files.segments):
        for position in _positions(segment, low, high):
            seq = segment.seqs[position]
            try:
                batch = files.load(segment, position)
            except (RecordCorrupt, CodecError) as exc:
                problems.append(f"{os.path.basename(segment.path)}: record {seq} unreadable "
                                f"({exc})")
                continue
            kept = [entries for entries in batch
                    if entries.lines and (sources is None or entries.source in sources)
                    and _has_line_in(entries, low, high)]
            if kept:
                yield seq, kept
