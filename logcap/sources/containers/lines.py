"""Rejoin the pieces of container log lines, per stream, with the engine's timestamps.

Input: the :class:`~logcap.sources.containers.framing.Frame`\\ s of ``logs(timestamps=True)``.
Output: :class:`LogLine`\\ s, each a whole line as the container wrote it, with its stream and
the engine's timestamp in nanoseconds.

Semantics
    - **A piece starts with the engine's timestamp and a space.** Docker writes RFC3339Nano
      (``2024-05-01T10:00:00.123456789Z``, trailing zeros trimmed), podman RFC3339 with whole
      seconds (``2024-05-01T10:00:00Z`` or ``...+02:00``); both parse, to integer nanoseconds
      since the epoch (:func:`parse_timestamp`).
    - **A line ends only at ``b"\\n"``.** Engines cut long lines into pieces (Docker at 16 KiB,
      podman at 8 KiB) and podman cuts even short lines at its read boundaries; a piece without
      a trailing newline is continued by the next piece **of the same stream** (stderr pieces
      may arrive between the pieces of a stdout line, so there is one pending line per stream).
      The joined line is byte-exact: the pieces' text without their timestamps, concatenated,
      without the ``b"\\n"``. Its timestamp is its first piece's.
    - **Multiplexed streams** (no TTY): one frame is one piece. Should a piece hold several
      newlines (engines do not send that), each line after the first takes the piece's
      timestamp.
    - **TTY streams**: there are no frames, only stdout bytes in arbitrary chunks: the text is
      read as records ``timestamp SP text``, a record ending at ``b"\\n"``, and a trailing
      ``b"\\r"`` (the terminal's CRLF) is removed. When the engine cut a TTY line into pieces
      (podman does, at its read boundaries), the next piece starts with its own timestamp; a
      TTY stream has no lengths to tell it from the line's text, so the rule is: a chunk that
      arrives while a line is open, *after* some of its text, and starts with a parsable
      timestamp and a space, is a continuation piece, and that timestamp is removed (engines
      send one log entry per HTTP chunk). Known limit: a line whose own text has such a
      timestamp exactly where the transport cut it loses that timestamp.
    - **Nothing is lost.** A piece whose start is not a parsable timestamp is kept whole as text
      and counted in ``untimed_pieces``; a line whose first piece had no timestamp has
      ``timestamp_ns`` None (the caller chooses one).
    - **Overlong lines are truncated, with bounded memory**, as files are
      (:mod:`logcap.sources.files.reader`): a line longer than ``max_line_bytes`` is emitted cut
      to its first ``max_line_bytes`` bytes (backed off to a UTF-8 character boundary,
      :func:`~logcap.sources.text.cut_utf8`) and counted in ``truncated_lines``; at most
      ``max_line_bytes + 1`` bytes of a pending line are held.
    - **The end of a stream** leaves a partial last line pending; :meth:`LineAssembler.finish`
      emits it as a line once the caller knows nothing will complete it (the container is gone).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass

from logcap.sources.containers.framing import Frame, Stream
from logcap.sources.text import cut_utf8

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_TIMESTAMP_BYTES",
    "LineAssembler",
    "LogLine",
    "parse_timestamp",
    "split_timestamp",
]

MAX_LINE_BYTES = 256 * 1024
"""Default longest line kept whole, in bytes (256 KiB, as for files: Loki's default limit)."""

MAX_TIMESTAMP_BYTES = 40
"""Longest timestamp looked for at the start of a piece (RFC3339Nano with an offset is 35)."""

_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    rb"(?:([Zz])|([+-])(\d{2}):(\d{2}))")
_NS_PER_S = 1_000_000_000


def parse_timestamp(text: bytes) -> int:
    """Nanoseconds since the epoch of an RFC3339 timestamp with 0 to 9 fractional digits and a
    ``Z`` or ``±hh:mm`` offset. Raises ValueError for anything else (a date that does not
    exist included)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {text[:MAX_TIMESTAMP_BYTES]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"not a valid date and time: {text.decode('ascii')!r}")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == b"+" else -offset
    fraction = match.group(7) or b""
    return seconds * _NS_PER_S + (int(fraction.ljust(9, b"0")) if fraction else 0)


def split_timestamp(piece: bytes) -> tuple[int | None, bytes]:
    """``(timestamp_ns, text)`` of a piece ``timestamp SP text``; ``(None, piece)`` when the piece
    does not start with a parsable timestamp and a space."""
    space = piece.find(b" ", 0, MAX_TIMESTAMP_BYTES + 1)
    if space < 0:
        return None, piece
    try:
        return parse_timestamp(piece[:space]), piece[space + 1:]
    except ValueError:
        return None, piece


@dataclass(frozen=True, slots=True)
class LogLine:
    """One whole line: its bytes as the container wrote them (without ``b"\\n"``, truncated if
    over the limit), its stream, and its first piece's engine timestamp (None: it had none)."""

    stream: Stream
    timestamp_ns: int | None
    data: bytes


class _Pending:
    """The line being joined on one stream: its head (at most limit + 1 bytes), its full length,
    whether its last byte is ``b"\\r"``, its timestamp and its number of pieces."""

    __slots__ = ("head", "last_cr", "length", "pieces", "timestamp_ns")

    def __init__(self, timestamp_ns: int | None) -> None:
        self.timestamp_ns = timestamp_ns
        self.head = bytearray()
        self.length = 0
        self.last_cr = False
        self.pieces = 0


class LineAssembler:
    """Joins the frames of one container's log stream into :class:`LogLine`\\ s (see the module
    docstring). ``tty``: the frames are a TTY stream's chunks (records split by newlines, not by
    frames). Counters (totals since creation): ``lines``, ``truncated_lines``,
    ``reassembled_lines`` (lines made of more than one piece),
    ``untimed_pieces``."""

    def __init__(self, *, tty: bool = False, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._tty = tty
        self._max = max_line_bytes
        self._pending: dict[Stream, _Pending] = {}
        self._record_head = b""  # TTY: the start of a record, until its timestamp is whole
        self._in_record = False  # TTY: the current record's timestamp has been read
        self.lines = 0
        self.truncated_lines = 0
        self.reassembled_lines = 0
        self.untimed_pieces = 0

    def pending_streams(self) -> list[Stream]:
        """The streams with a partial line waiting for its end."""
        return list(self._pending)

    def add(self, frames: Iterable[Frame]) -> list[LogLine]:
        """Take the next frames of the stream; returns the lines they completed, in order."""
        out: list[LogLine] = []
        for frame in frames:
            if self._tty:
                self._add_tty(frame.payload, out)
            else:
                self._add_piece(frame.stream, frame.payload, out)
        return out

    def finish(self) -> list[LogLine]:
        """Emit every partial line as a line (nothing will complete them) and reset."""
        out: list[LogLine] = []
        if self._record_head:  # TTY: a record cut inside its timestamp: keep its bytes
            self.untimed_pieces += 1
            pending = self._pending[Stream.STDOUT] = _Pending(None)
            self._append(pending, self._record_head, 0, len(self._record_head))
            self._record_head = b""
        for stream in list(self._pending):
            out.append(self._emit(stream))
        self._in_record = False
        return out

    def _add_piece(self, stream: Stream, piece: bytes, out: list[LogLine]) -> None:
        """One frame of a multiplexed stream: a timestamp, then text for ``stream``'s line."""
        timestamp_ns, text = split_timestamp(piece)
        if timestamp_ns is None:
            self.untimed_pieces += 1
        pending = self._pending.get(stream)
        if pending is None:
            pending = self._pending[stream] = _Pending(timestamp_ns)
        pending.pieces += 1
        start, size = 0, len(text)
        while True:
            newline = text.find(b"\n", start)
            self._append(pending, text, start, size if newline < 0 else newline)
            if newline < 0:
                return
            out.append(self._emit(stream))
            start = newline + 1
            if start == size:
                return
            pending = self._pending[stream] = _Pending(timestamp_ns)
            pending.pieces = 1

    def _add_tty(self, data: bytes, out: list[LogLine]) -> None:
        """TTY bytes: read each record's timestamp, then its text up to the newline."""
        if self._record_head:
            data = self._record_head + data
            self._record_head = b""
        pos, size = 0, len(data)
        pending = self._pending.get(Stream.STDOUT)
        if self._in_record and pending is not None and pending.length:
            space = data.find(b" ", 0, MAX_TIMESTAMP_BYTES + 1)
            if space > 0:
                try:
                    parse_timestamp(data[:space])
                    pos = space + 1  # a continuation piece: its timestamp is not text
                    pending.pieces = max(pending.pieces, 1) + 1
                except ValueError:
                    pass
        while pos < size:
            if not self._in_record:
                limit = pos + MAX_TIMESTAMP_BYTES + 1
                space = data.find(b" ", pos, limit)
                newline = data.find(b"\n", pos, limit)
                if space < 0 and newline < 0 and size - pos <= MAX_TIMESTAMP_BYTES:
                    self._record_head = data[pos:]  # the timestamp is not whole yet
                    return
                timestamp_ns: int | None = None
                if space >= 0 and (newline < 0 or space < newline):
                    try:
                        timestamp_ns = parse_timestamp(data[pos:space])
                        pos = space + 1
                    except ValueError:
                        pass
                if timestamp_ns is None:
                    self.untimed_pieces += 1
                self._pending[Stream.STDOUT] = _Pending(timestamp_ns)
                self._in_record = True
            newline = data.find(b"\n", pos)
            self._append(self._pending[Stream.STDOUT], data, pos, size if newline < 0 else newline)
            if newline < 0:
                return
            out.append(self._emit(Stream.STDOUT))
            self._in_record = False
            pos = newline + 1

    def _append(self, pending: _Pending, data: bytes, start: int, end: int) -> None:
        """Add ``data[start:end]`` to a pending line, holding at most limit + 1 bytes of it."""
        if end <= start:
            return
        room = self._max + 1 - len(pending.head)
        if room > 0:
            pending.head += data[start:min(end, start + room)]
        pending.length += end - start
        pending.last_cr = data[end - 1] == 0x0D

    def _emit(self, stream: Stream) -> LogLine:
        pending = self._pending.pop(stream)
        head, length = pending.head, pending.length
        if self._tty and pending.last_cr:  # the terminal's CRLF: the \r is not the line's
            length -= 1
            del head[length:]
        data = bytes(head)
        if length > self._max:
            data = cut_utf8(data, self._max)
            self.truncated_lines += 1
        self.lines += 1
        if pending.pieces > 1:
            self.reassembled_lines += 1
        return LogLine(stream, pending.timestamp_ns, data)
