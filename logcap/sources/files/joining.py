"""A file reader whose lines are whole multi-line entries, with positions at entry boundaries.

:class:`JoiningReader` wraps a :class:`~logcap.sources.files.reader.LineReader` (which keeps
reading physical lines, with their byte offsets) and a
:class:`~logcap.sources.multiline.LineJoiner`, and answers like a ``LineReader``, so the tailer
reads, rewinds and drains it the same way:

* :meth:`read_batch` returns the *entries* closed by the lines read; its ``start_offset`` /
  ``end_offset`` are entry boundaries, and ``line_offsets`` each entry's start. The open
  entry is treated like an incomplete line: its lines are held in memory, **not** part of
  any returned range, and :attr:`offset` (where to resume, what the committed position can
  reach) stops at its start. So a read token never covers part of an entry, and after a
  crash the entry is read again whole from its first line.
* The open entry is closed when the rule closes it, when it is *due* (no new line for the
  rule's timeout: :func:`entry_due`, checked by the tailer on every poll even when the file
  did not grow), and at the end of a file that will not grow any more (``final=True``, the
  last read of a rotated-away generation: reason ``end_of_stream``).
* :meth:`reset` (a rewind) forgets the open entry with the reader's pending bytes: it is read
  again from the file. When the file was cut in place (its old content is gone), the tailer
  closes the open entry as it is instead (:func:`held_entry`): it was read, so it is sent.

A stop of the agent (SIGTERM) does not close the open entry: the committed position stays at
its start, and the next run reads it again whole (never sent, so never a duplicate).

Close reasons are counted in a :class:`~logcap.sources.multiline.JoinCounts` shared by a
source's readers; the source turns them into ``logcap_source_multiline_entries_total`` once
per read.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from logcap.sources.files.reader import CHUNK_BYTES, LineReader, Pread, ReadResult
from logcap.sources.multiline import (
    COMPLETE,
    END_OF_STREAM,
    TIMEOUT,
    JoinCounts,
    JoinedEntries,
    LineJoiner,
    MultilineRule,
)

__all__ = ["JoinCounts", "JoiningReader", "ReaderFactory", "entry_due", "held_entry",
           "reader_factory"]

class ReaderFactory(Protocol):
    """``(path, fd, offset, pread=None) -> reader``: how a tailer makes the reader of a file
    generation (``pread``: read through it instead of ``fd``, a compressed file's
    decompressed stream)."""

    def __call__(self, path: str, fd: int, offset: int,
                 pread: Pread | None = None) -> LineReader | JoiningReader: ...


class JoiningReader:
    """A :class:`LineReader` (built with ``track_offsets``) joined by ``rule`` (module
    docstring); ``clock`` is monotonic seconds (the timeout's)."""

    def __init__(self, reader: LineReader, rule: MultilineRule, counts: JoinCounts | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not reader.tracks_offsets:
            raise ValueError("a JoiningReader needs a LineReader with track_offsets=True")
        self._reader = reader
        self._joiner = LineJoiner(rule)
        self._counts = counts if counts is not None else JoinCounts()
        self._clock = clock
        self._offset = reader.offset

    @property
    def fd(self) -> int:
        return self._reader.fd

    @property
    def offset(self) -> int:
        """Just past the last entry returned: where to resume (the open entry's start)."""
        return self._offset

    @property
    def read_position(self) -> int:
        """Byte offset up to which the file has been read (open entry and pending bytes
        included)."""
        return self._reader.read_position

    @property
    def pending_bytes(self) -> int:
        """Bytes read past :attr:`offset`: the open entry's and the partial line's."""
        return self._reader.read_position - self._offset

    @property
    def nul_dropped(self) -> int:
        """NUL bytes the reader cut from overlong lines (:attr:`LineReader.nul_dropped`)."""
        return self._reader.nul_dropped

    @property
    def holding(self) -> bool:
        """Whether an entry is open."""
        return self._joiner.holding

    def due(self, now: float) -> bool:
        """Whether the open entry waited the rule's timeout without a new line."""
        return self._joiner.due(now)

    def reset(self, offset: int = 0) -> None:
        """Forget the open entry and pending bytes; resume from ``offset``."""
        self._reader.reset(offset)
        self._joiner.reset()
        self._offset = offset

    def prefix_hash(self) -> str:
        """Hash of the bytes before :attr:`offset`, read from the file now (as
        :meth:`LineReader.prefix_hash`)."""
        return self._reader.hash_before(self._offset)

    def read_batch(self, max_bytes: int = CHUNK_BYTES, max_lines: int | None = None, *,
                   final: bool = False) -> ReadResult:
        """Read up to ``max_bytes`` of lines and return the entries they closed (at most
        ``max_lines`` physical lines are read). Reaching end of file closes the open entry
        too with ``final``, or when it is due: the timeout counts only once the file has
        nothing more to give (a read held back by backpressure does not cut an entry whose
        next lines wait in the file)."""
        now = self._clock()
        start = self._offset
        joiner = self._joiner
        result = self._reader.read_batch(max_bytes, max_lines, final=final)
        closed = joiner.feed_lines(result.lines, result.line_offsets or [], result.end_offset,
                                   now)
        if final and result.eof:
            self._close(closed, END_OF_STREAM)
        elif result.eof and joiner.due(now):
            self._close(closed, TIMEOUT)
        if closed:
            reasons = closed.reasons
            complete = reasons.count(COMPLETE)  # most often all of them: no Counter
            if complete == len(reasons):
                self._counts.add(COMPLETE, complete)
            else:
                self._counts.add_all(Counter(reasons))
            self._offset = closed.ends[-1]
        return ReadResult(
            lines=closed.texts,
            start_offset=start,
            end_offset=self._offset,
            bytes_read=result.bytes_read,
            truncated_count=result.truncated_count,
            line_offsets=closed.starts,
            eof=result.eof,
        )

    def close_held(self) -> ReadResult | None:
        """Close the open entry without reading (its file's content is gone: cut in place);
        None when nothing is open."""
        entry = self._joiner.flush(END_OF_STREAM)
        if entry is None:
            return None
        self._counts.add(END_OF_STREAM)
        start, self._offset = self._offset, entry.end
        return ReadResult(lines=[entry.text], start_offset=start, end_offset=entry.end,
                          bytes_read=0, eof=True)

    def _close(self, closed: JoinedEntries, reason: str) -> None:
        entry = self._joiner.flush(reason)
        if entry is not None:
            closed.append(entry)


def held_entry(reader: LineReader | JoiningReader) -> ReadResult | None:
    """The entry ``reader`` holds open, closed (see :meth:`JoiningReader.close_held`): for a
    generation whose file was cut in place, so what was read is still sent."""
    return reader.close_held() if isinstance(reader, JoiningReader) else None


def entry_due(reader: LineReader | JoiningReader, now: float) -> bool:
    """Whether ``reader`` holds an entry whose timeout passed (a plain reader holds none):
    the tailer reads such a file even when it did not grow."""
    return isinstance(reader, JoiningReader) and reader.due(now)


def reader_factory(
    max_line_bytes: int, encoding: str,
    rule_for: Callable[[str], MultilineRule | None] = lambda path: None,
    counts: JoinCounts | None = None, clock: Callable[[], float] = time.monotonic,
) -> ReaderFactory:
    """Readers for a source's files: a :class:`JoiningReader` for a path ``rule_for`` gives a
    rule, a plain :class:`LineReader` otherwise (the rule is asked at each new generation, so
    a rotated file keeps its path's rule)."""
    def make(path: str, fd: int, offset: int,
             pread: Pread | None = None) -> LineReader | JoiningReader:
        rule = rule_for(path)
        if rule is None:
            return LineReader(fd, offset, max_line_bytes=max_line_bytes, encoding=encoding,
                              pread=pread)
        reader = LineReader(fd, offset, max_line_bytes=max_line_bytes, encoding=encoding,
                            track_offsets=True, pread=pread)
        return JoiningReader(reader, rule, counts, clock)
    return make
