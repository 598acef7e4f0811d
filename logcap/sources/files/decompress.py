"""The decompressed bytes of a compressed log file, read forward in bounded chunks.

With ``decompress: true`` a file source reads a compressed file (gzip, bzip2, xz, zstd: see
:mod:`~logcap.sources.files.compression`) through a :class:`DecompressedStream`, which gives
the :class:`~logcap.sources.files.reader.LineReader` a ``pread(size, offset)`` over the
*decompressed* stream, so lines are cut, decoded, truncated and joined exactly as in a plain
file. Offsets (and so positions) are offsets in the decompressed stream.

Semantics
    - **Bounded memory.** Compressed bytes are read :data:`COMPRESSED_READ_BYTES` at a time and
      decompressed only as far as a ``pread`` asks; the stream keeps what it decompressed from
      the last ``pread``'s offset minus :data:`KEEP_BEHIND_BYTES` (for the hash of the bytes
      before an offset), never the whole file. gzip, bzip2 and xz bound their output per call
      (``max_length``); zstd's decompressor cannot, so it is fed small pieces of input, fewer
      bytes when one piece gave a lot of output (a run of NULs compresses 1:30,000).
    - **Forward only, restart to go back.** A ``pread`` before what the stream still holds
      (a rewind to the committed offset, a resume from a stored position) decompresses the
      file again from its start and skips to the offset (counted in :attr:`restarts`): a
      compressed file has no index to seek with.
    - **Several members.** Concatenated gzip members, bzip2 or xz streams, zstd frames are read
      one after the other (as ``zcat`` does); NUL padding after the last one is ignored; other
      bytes after it are corrupt data.
    - **Complete, incomplete, corrupt.** :attr:`complete` is True once the last member's
      end-of-stream marker was read and the file held nothing after it. A file still being
      written by its compressor (or cut short) reads as far as its bytes go, then like end of
      file with :attr:`complete` False; a later ``pread`` continues if the file grew. Data the
      decompressor rejects raises :class:`CorruptCompressedFile` (from then on, every call).

Nothing here keeps the descriptor's position (``os.pread`` only) or owns the descriptor.
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from typing import Protocol

from logcap.sources.files.compression import MAGIC
from logcap.state.file_identity import PREFIX_HASH_BYTES

__all__ = [
    "COMPRESSED_READ_BYTES",
    "FORMATS",
    "KEEP_BEHIND_BYTES",
    "CorruptCompressedFile",
    "DecompressedStream",
]

COMPRESSED_READ_BYTES = 64 * 1024
"""Compressed bytes read from the file per ``os.pread``."""
KEEP_BEHIND_BYTES = PREFIX_HASH_BYTES
"""Decompressed bytes kept before the last ``pread``'s offset (the prefix hash reads them)."""
_ZSTD_MIN_PIECE = 256
_ZSTD_MAX_PIECE = 16 * 1024
"""zstd input fed per call, adapted between these (see the module docstring)."""
FORMATS = ("gzip", "bzip2", "xz", "zstd")
_MAGIC_OF = {name: magic for magic, name in MAGIC} | {"bzip2": b"BZh"}


class CorruptCompressedFile(Exception):
    """The file's compressed data is not valid; the message says where and why."""


class _Codec(Protocol):
    """One member's decompressor, as the stdlib's ``BZ2Decompressor`` answers."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int) -> bytes: ...


class _Gzip:
    """A gzip member through ``zlib`` (which keeps unconsumed input in ``unconsumed_tail``)."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""

    @property
    def eof(self) -> bool:
        return self._obj.eof

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def unused_data(self) -> bytes:
        return self._obj.unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._obj.decompress(self._tail + data, max_length)
        self._tail = self._obj.unconsumed_tail
        return out


class _Zstd:
    """A zstd frame; input is fed in pieces so that one call's output stays bounded."""

    def __init__(self) -> None:
        import zstandard  # only for zstd files: the agent loads it when one is read

        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._queue = b""
        self._piece = _ZSTD_MIN_PIECE

    @property
    def eof(self) -> bool:
        return bool(self._obj.eof)

    @property
    def needs_input(self) -> bool:
        return not self._queue

    @property
    def unused_data(self) -> bytes:
        return bytes(self._obj.unused_data) + self._queue

    def decompress(self, data: bytes, max_length: int) -> bytes:
        self._queue += data
        piece, self._queue = self._queue[: self._piece], self._queue[self._piece:]
        out = self._obj.decompress(piece) if piece else b""
        if self._obj.eof:
            return out
        if len(out) < max_length // 4:
            self._piece = min(_ZSTD_MAX_PIECE, self._piece * 2)
        elif len(out) > max_length:
            self._piece = max(_ZSTD_MIN_PIECE, self._piece // 2)
        return out


def _codec(fmt: str) -> _Codec:
    if fmt == "gzip":
        return _Gzip()
    if fmt == "bzip2":
        return bz2.BZ2Decompressor()
    if fmt == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ)
    if fmt == "zstd":
        return _Zstd()
    raise ValueError(f"unknown compression format {fmt!r} (known: {', '.join(FORMATS)})")


_ERRORS: tuple[type[Exception], ...] = (zlib.error, OSError, EOFError, lzma.LZMAError)


def _errors(fmt: str) -> tuple[type[Exception], ...]:
    """What the codec of ``fmt`` raises for corrupt data (zstd's error type comes with its
    module, imported only when a zstd file is read)."""
    if fmt == "zstd":
        import zstandard

        return (*_ERRORS, zstandard.ZstdError)
    return _ERRORS


class DecompressedStream:
    """The decompressed content of the open compressed file ``fd`` in format ``fmt`` (one of
    :data:`FORMATS`); see the module docstring."""

    def __init__(self, fd: int, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown compression format {fmt!r} (known: {', '.join(FORMATS)})")
        self.fd = fd
        self.format = fmt
        self.restarts = 0
        """How many times the stream was decompressed again from its start (a read before
        what it holds)."""
        self._error: CorruptCompressedFile | None = None
        self._start()

    def _start(self) -> None:
        self._codec: _Codec = _codec(self.format)
        self._errors = _errors(self.format)
        self._in_pos = 0
        self._buf = bytearray()
        self._buf_start = 0
        self._complete = False

    @property
    def produced(self) -> int:
        """Decompressed bytes produced so far (the offset just past them)."""
        return self._buf_start + len(self._buf)

    @property
    def compressed_read(self) -> int:
        """Compressed bytes taken from the file so far."""
        return self._in_pos

    @property
    def complete(self) -> bool:
        """The last member ended and the file held nothing after it, at the last look."""
        return self._complete

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` decompressed bytes at ``offset``: fewer at the end of what the file
        holds now (its end, or where a file still being written stops)."""
        if self._error is not None:
            raise self._error
        if offset < self._buf_start:
            self.restarts += 1
            self._start()
        want = offset + size
        while self.produced < want:
            self._forget_before(offset)
            if not self._fill(want - self.produced):
                break
        self._forget_before(offset)
        lo = offset - self._buf_start
        return bytes(self._buf[max(0, lo): max(0, lo) + size]) if lo < len(self._buf) else b""

    def _forget_before(self, offset: int) -> None:
        drop = min(len(self._buf), offset - KEEP_BEHIND_BYTES - self._buf_start)
        if drop > 0:
            del self._buf[:drop]
            self._buf_start += drop

    def _fill(self, want: int) -> bool:
        """Decompress some more (at most about ``want`` bytes); False when the file has no
        more input for now."""
        try:
            return self._step(max(want, 1))
        except self._errors as exc:
            self._error = CorruptCompressedFile(
                f"corrupt {self.format} data near compressed byte {self._in_pos}: {exc}")
            raise self._error from exc

    def _step(self, want: int) -> bool:
        codec = self._codec
        if codec.eof:
            rest = codec.unused_data
            if not rest:
                rest = os.pread(self.fd, COMPRESSED_READ_BYTES, self._in_pos)
                self._in_pos += len(rest)
            if not rest.strip(b"\x00"):
                self._complete = not rest or self._ends_with_padding()
                return False
            if not rest.startswith(_MAGIC_OF[self.format]):
                raise OSError(f"{len(rest)}+ bytes after the end of the {self.format} data "
                              "are not another member")
            self._codec = codec = _codec(self.format)
            out = codec.decompress(rest, want)
        elif codec.needs_input:
            data = os.pread(self.fd, COMPRESSED_READ_BYTES, self._in_pos)
            if not data:
                return False
            self._in_pos += len(data)
            out = codec.decompress(data, want)
        else:
            out = codec.decompress(b"", want)
        self._buf += out
        return True

    def _ends_with_padding(self) -> bool:
        """After NUL padding: only more NULs until the end of the file."""
        while True:
            more = os.pread(self.fd, COMPRESSED_READ_BYTES, self._in_pos)
            if not more:
                return True
            self._in_pos += len(more)
            if more.strip(b"\x00"):
                raise OSError(f"bytes after the end of the {self.format} data and its padding")
