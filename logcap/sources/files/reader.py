"""Split a growing file into lines, in large chunks, with exact byte offsets.

:class:`LineReader` reads an open file descriptor with ``os.pread`` (so the descriptor's own
position is irrelevant and never moved) and turns bytes into lines.

Semantics
    - A line ends at ``b"\\n"``. A ``b"\\r"`` right before it (CRLF) is removed; a ``b"\\r"``
      anywhere else is kept.
    - **Offsets are byte offsets in the file.** ``offset`` (and a result's ``end_offset``) is
      always just past the ``b"\\n"`` of the last line emitted: a position never points inside a
      line, so resuming from a stored offset starts on a line boundary.
    - **The partial last line waits.** Bytes after the last ``b"\\n"`` are kept in memory, not
      emitted, and ``offset`` does not move past them; they are read only once and are completed
      by the next read. Exception: see *End of a rotated file* below.
    - **Huge lines are truncated, with bounded memory.** A line longer than ``max_line_bytes``
      (counted in raw bytes, without its ``b"\\n"``) is emitted cut to its first
      ``max_line_bytes`` bytes (backed off to a UTF-8 character boundary) and counted in
      ``truncated_count``. A pending line is never held beyond ``max_line_bytes``: once it
      exceeds the limit the reader keeps the head, discards the rest as it arrives, and still
      tracks offsets exactly until the newline. A 50 MB line costs at most one chunk plus
      ``max_line_bytes`` of memory.
    - **Nothing is lost to decoding.** Bytes are decoded with the source's ``encoding``
      (UTF-8 by default; any codec that writes ``\\n`` as the single byte 0x0A, e.g.
      latin-1, cp1252, shift_jis) with ``errors="backslashreplace"``: invalid bytes become
      ``\\xNN`` escapes; NUL and other control bytes pass through. Binary files never raise.
    - **max_lines.** A batch cut short by ``max_lines`` discards the bytes it read past the last
      emitted line; they are read again by the next call. So that little is read twice, a read
      with ``max_lines`` asks for about ``max_lines`` times the bytes per line of the last read
      that emitted lines (:data:`READ_MARGIN` more, at least :data:`MIN_READ_BYTES`, at most
      ``max_bytes``; all of ``max_bytes`` for the first read, and while a line longer than
      ``max_line_bytes`` is being skipped). A read that asked for fewer bytes than
      ``max_bytes`` reaches end of file only when the file gave fewer than it asked.

NUL bytes in long lines (a crash region, a sparse hole)
    Runs of NUL bytes do not count toward ``max_line_bytes``: in a line longer than the limit,
    and in the pending bytes of a line not yet complete, each run is cut to a single NUL before
    the limit applies (the bytes cut counted in :attr:`LineReader.nul_dropped`), so a 1 MiB
    hole in front of a line does not push that line's text out. The NULs left (and those of
    shorter lines) are the caller's to remove (:mod:`logcap.sources.files.binary_runs`).
    Offsets are unaffected.

End of a rotated file (:meth:`LineReader.drain_to_eof`, ``read_batch(final=True)``)
    When a file has been rotated away (renamed, deleted, or it is the rotated copy after
    copytruncate), nothing will ever complete its partial last line: the writer has moved on.
    Draining reads to end of file and then **emits a final partial line as a line** and moves
    ``offset`` past it, rather than losing it. The caller must drain only once writers have
    switched to the new file (after the rotation is seen), or a late write to the old file
    would arrive as a separate line.

Speed
    Each chunk is decoded once and split once (``str.split``); no per-line Python work. A chunk
    of ASCII text with one kind of line end has one byte per character, so its cut (``max_lines``)
    and its line offsets (``track_offsets``) come from the decoded lines' lengths; other chunks
    are split a second time as bytes for them, and so are chunks that contain a line long
    enough to need truncation. ``bench/file_reader.py`` measures it.
"""

from __future__ import annotations

import codecs
import itertools
import operator
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from logcap.sources.text import cut_utf8
from logcap.state.file_identity import PREFIX_HASH_BYTES, digest_bytes, hash_prefix

__all__ = [
    "CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "LineReader",
    "Pread",
    "ReadResult",
]

Pread = Callable[[int, int], bytes]
"""``pread(size, offset)``: up to ``size`` bytes of a file's content at ``offset`` (fewer at
its end). A plain file's is ``os.pread`` on its descriptor; a compressed file's reads its
decompressed stream (:class:`~logcap.sources.files.decompress.DecompressedStream`)."""

CHUNK_BYTES = 1024 * 1024
"""Default size of one read, in bytes (1 MiB)."""

MAX_LINE_BYTES = 256 * 1024
"""Default longest line kept whole, in bytes (256 KiB: Loki's default line size limit)."""

_NUL_RUN = re.compile(b"\x00{2,}")
_MAX_UTF8_CHAR_BYTES = 4
"""A decoded character stands for at most 4 bytes (a ``\\xNN`` escape stands for 1 byte)."""
MIN_READ_BYTES = 16 * 1024
"""The smallest read a ``max_lines`` estimate asks for (module docstring, *max_lines*)."""
READ_MARGIN = 1.25
"""A read with ``max_lines`` asks for this much more than the last read's bytes per line
times ``max_lines``: a cut (and a re-read of the rest) rather than a second small read."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one read produced.

    ``lines`` are decoded, without their line terminator. ``start_offset`` is the reader's
    ``offset`` before the read; ``end_offset`` is just past the last line emitted.
    ``bytes_read`` counts bytes taken from the file by this read (some may be a pending partial
    line, not yet emitted). ``line_offsets`` (only with ``track_offsets``) holds the byte offset
    where each line starts. ``eof``: the read reached the end of the file.
    """

    lines: list[str]
    start_offset: int
    end_offset: int
    bytes_read: int
    truncated_count: int = 0
    line_offsets: list[int] | None = None
    eof: bool = False


DEFAULT_ENCODING = "utf-8"


def _line_starts(parts: list[str] | list[bytes], ending: int, offset: int) -> Iterator[int]:
    """Where each of ``parts`` starts when each is followed by ``ending`` bytes and the first
    starts at ``offset`` (a line under 256 bytes makes one new int: its length plus ``ending``
    is a cached small int)."""
    return itertools.accumulate(map(operator.add, map(len, parts[:-1]), itertools.repeat(ending)),
                                initial=offset)


class LineReader:
    """Reads lines from an open binary file descriptor, starting at ``offset``.

    The reader does not own ``fd``: the caller opens and closes it. See the module docstring
    for the semantics of offsets, partial lines and truncation. ``pread`` reads the content
    instead of ``os.pread`` on ``fd`` (a compressed file's decompressed stream: offsets are
    then offsets in that stream, and so is the prefix hash).
    """

    def __init__(
        self,
        fd: int,
        offset: int = 0,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        track_offsets: bool = False,
        encoding: str = DEFAULT_ENCODING,
        pread: Pread | None = None,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        if offset < 0:
            raise ValueError("offset must not be negative")
        self._fd = fd
        self._pread = pread
        self._encoding = encoding
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        self._max_line = max_line_bytes
        self._track = track_offsets
        self._offset = offset
        self._read_pos = offset
        self._pending = bytearray()
        self._skipping = False
        self._line_bytes = 0.0  # bytes per line of the last read that emitted lines; 0: none yet
        self.nul_dropped = 0
        """NUL bytes removed from long lines and pending bytes so far (module docstring)."""

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def tracks_offsets(self) -> bool:
        """Whether results carry each line's start offset (``track_offsets``)."""
        return self._track

    @property
    def offset(self) -> int:
        """Byte offset just past the last line emitted: where to resume from."""
        return self._offset

    @property
    def read_position(self) -> int:
        """Byte offset up to which the file has been read (``offset`` + pending bytes)."""
        return self._read_pos

    @property
    def pending_bytes(self) -> int:
        """Bytes read past ``offset`` that belong to a line not yet complete."""
        return self._read_pos - self._offset

    def reset(self, offset: int = 0) -> None:
        """Forget pending bytes and resume from ``offset`` (after truncation: 0)."""
        if offset < 0:
            raise ValueError("offset must not be negative")
        self._offset = offset
        self._read_pos = offset
        self._pending.clear()
        self._skipping = False

    def prefix_hash(self) -> str:
        """Hash of the bytes before ``offset``, read from the file now (what a position at
        ``offset`` records; a read does not compute it: positions are hashed when
        committed)."""
        return self.hash_before(self._offset)

    def hash_before(self, offset: int) -> str:
        """:func:`~logcap.state.file_identity.hash_prefix` of the content (through ``pread``
        when given)."""
        if self._pread is None:
            return hash_prefix(self._fd, offset)
        start = max(0, offset - PREFIX_HASH_BYTES)
        return digest_bytes(self._pread(offset - start, start))

    def read_batch(
        self,
        max_bytes: int = CHUNK_BYTES,
        max_lines: int | None = None,
        *,
        final: bool = False,
    ) -> ReadResult:
        """Read up to ``max_bytes`` and return the complete lines found (at most ``max_lines``).

        With ``final=True``, reaching end of file also emits the pending partial line (see
        *End of a rotated file* in the module docstring).
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if max_lines is not None and max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        start = self._offset
        lines: list[str] = []
        offsets: list[int] | None = [] if self._track else None
        truncated = 0
        base = self._read_pos
        size = max_bytes
        if max_lines is not None and self._line_bytes and not self._skipping:
            size = min(max_bytes, max(MIN_READ_BYTES,
                                      int(self._line_bytes * max_lines * READ_MARGIN)))
        data = (os.pread(self._fd, size, base) if self._pread is None
                else self._pread(size, base))
        nread = len(data)
        eof = nread < size
        self._read_pos = base + nread
        pos = 0
        cut = False

        if nread and (self._pending or self._skipping):
            newline = data.find(b"\n")
            if newline < 0:
                self._append_pending(data)
                pos = nread
            else:
                self._append_pending(data[:newline])
                line_start = self._offset
                truncated += self._emit_pending(lines)
                if offsets is not None:
                    offsets.append(line_start)
                self._offset = base + newline + 1
                pos = newline + 1
                if max_lines is not None and len(lines) >= max_lines and pos < nread:
                    cut = True

        if pos < nread and not cut:
            last = data.rfind(b"\n", pos)
            if last < 0:
                self._append_pending(data[pos:] if pos else data)
            else:
                block = data[pos : last + 1] if (pos or last + 1 < nread) else data
                room = None if max_lines is None else max_lines - len(lines)
                used, cut_lines = self._split_block(block, base + pos, lines, offsets, room)
                truncated += cut_lines
                cut = used < len(block)
                self._offset = base + pos + used
                if not cut and last + 1 < nread:
                    self._append_pending(data[last + 1 :])

        if cut:
            # Bytes read past the last emitted line are dropped and read again next time.
            self._read_pos = self._offset
            self._pending.clear()
            self._skipping = False
            eof = False

        if final and eof and (self._pending or self._skipping):
            line_start = self._offset
            truncated += self._emit_pending(lines)
            if offsets is not None:
                offsets.append(line_start)
            self._offset = self._read_pos

        if lines and self._offset > start:
            self._line_bytes = (self._offset - start) / len(lines)
        return ReadResult(
            lines=lines,
            start_offset=start,
            end_offset=self._offset,
            bytes_read=nread,
            truncated_count=truncated,
            line_offsets=offsets,
            eof=eof,
        )

    def drain_to_eof(
        self, max_bytes: int = CHUNK_BYTES, max_lines: int | None = None
    ) -> Iterator[ReadResult]:
        """Read everything left, batch by batch; the last batch ends with the partial line.

        For a file that will not grow any more (rotated away). Lazy: memory stays bounded by
        one batch. Each yielded batch has lines or bytes; the generator ends at end of file.
        """
        while True:
            result = self.read_batch(max_bytes, max_lines, final=True)
            if result.lines or result.bytes_read:
                yield result
            if result.eof:
                return

    def _without_nul(self, raw: bytes) -> bytes:
        """``raw`` with each run of NULs cut to one NUL (left for the caller to see)."""
        if b"\x00\x00" not in raw:
            return raw
        kept = _NUL_RUN.sub(b"\x00", raw)
        self.nul_dropped += len(raw) - len(kept)
        return kept

    def _append_pending(self, chunk: bytes) -> None:
        if self._skipping or not chunk:
            return
        chunk = self._without_nul(chunk)
        room = self._max_line - len(self._pending)
        if len(chunk) > room:
            self._pending += chunk[:room]
            self._skipping = True
        else:
            self._pending += chunk

    def _emit_pending(self, lines: list[str]) -> int:
        """Append the pending line to ``lines``; return 1 if it was truncated."""
        raw = bytes(self._pending)
        self._pending.clear()
        if self._skipping:
            self._skipping = False
            lines.append(self._decode(cut_utf8(raw, self._max_line)))
            return 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        lines.append(self._decode(raw))
        return 0

    def _decode(self, raw: bytes) -> str:
        return raw.decode(self._encoding, "backslashreplace")

    def _split_block(
        self, block: bytes, block_offset: int, lines: list[str], offsets: list[int] | None,
        room: int | None,
    ) -> tuple[int, int]:
        """Append the lines of ``block`` (which ends with a newline), at most ``room`` of them
        (None: all); return how many bytes of ``block`` they took, and how many were cut."""
        limit = self._max_line
        text = self._decode(block)
        if b"\r" not in block:
            parts = text.split("\n")
            ending = 1
        elif block.count(b"\r\n") == block.count(b"\n"):
            parts = text.split("\r\n")  # every line is CRLF: one split does both jobs
            ending = 2
        else:
            parts = text.replace("\r\n", "\n").split("\n")
            ending = 0  # mixed: a line's bytes are not its text's length plus a fixed ending
        parts.pop()
        # UTF-8 decoded to as many ASCII characters as bytes (no multi-byte character, no
        # \xNN escape), with one kind of line end: a line's bytes are its characters and its
        # ending.
        by_length = bool(ending) and self._utf8 and text.isascii() and len(text) == len(block)
        used = len(block)
        if room is not None and len(parts) > room:
            del parts[room:]
            if by_length:
                used = sum(map(len, parts)) + ending * room
            else:
                used -= len(block.split(b"\n", room)[room])
            block = block[:used]
        may_be_long = (
            used > limit and _MAX_UTF8_CHAR_BYTES * (max(map(len, parts)) + 1) > limit
        )
        if not may_be_long and (offsets is None or by_length):
            if offsets is not None:
                offsets.extend(_line_starts(parts, ending, block_offset))
            lines.extend(parts)
            return used, 0
        raw_parts = block.split(b"\n")
        raw_parts.pop()
        if offsets is not None:
            offsets.extend(_line_starts(raw_parts, 1, block_offset))
        if not may_be_long or max(map(len, raw_parts)) <= limit:
            lines.extend(parts)
            return used, 0
        truncated = 0
        for raw in raw_parts:
            if len(raw) > limit:
                raw = self._without_nul(raw)
            if len(raw) > limit:
                lines.append(self._decode(cut_utf8(raw, limit)))
                truncated += 1
            else:
                lines.append(self._decode(raw[:-1] if raw.endswith(b"\r") else raw))
        return used, truncated
