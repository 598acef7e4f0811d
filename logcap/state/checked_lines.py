"""Append-only files of checked lines: a header line, then one record per line, each
``<crc32 hex> <text>`` (the CRC-32 over the text), ASCII.

Used by the positions log (:mod:`logcap.state.positions_log`) and the file sources'
timestamp journal (:mod:`logcap.sources.files.timestamp_journal`). Appended without
``fsync``: a process crash keeps the page cache, so the only damage to expect is a torn last
line (a crash while writing) or, after a power loss or a disk fault, garbage.

:func:`read_valid_prefix` decodes the records of the valid prefix and stops at the first line
without an end of line, with a wrong checksum or that the decoder refuses: it and what follows
are ignored and reported, never raised.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["ValidPrefix", "append_whole", "checked_line", "read_valid_prefix"]

T = TypeVar("T")


def append_whole(fd: int, data: bytes) -> int:
    """Write ``data`` (whole lines) to the append-only ``fd`` in one ``write``; a short write
    is an OSError (a torn line is what a reader cuts, it must not be mistaken for a record)."""
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write ({written} of {len(data)} bytes)")
    return written


def checked_line(text: bytes) -> bytes:
    """``text`` (ASCII, no end of line) as a checked line."""
    return b"%08x %s\n" % (zlib.crc32(text), text)


@dataclass(slots=True)
class ValidPrefix(Generic[T]):
    """The records of a file's valid prefix, its length in bytes, and the problems met."""

    records: list[T] = field(default_factory=list)
    valid_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: bool = False
    """Bytes were ignored for another reason than a torn last line (a corrupt record, an
    unknown header): worth keeping the file for a post-mortem."""


def read_valid_prefix(raw: bytes, header: bytes, name: str,
                      decode: Callable[[bytes], T]) -> ValidPrefix[T]:
    """The records of ``raw`` (a whole file) up to the first bad line; never raises.
    ``decode`` turns a line's text into a record, raising ValueError or TypeError if it is
    not one. An empty file is valid and empty; another header is reported and ignored."""
    out: ValidPrefix[T] = ValidPrefix()
    if not raw:
        return out
    if not raw.startswith(header):
        out.problems.append(f"{name}: unknown header (not a file of this kind): its "
                            f"{len(raw)} bytes are ignored")
        out.damaged = True
        return out
    pos = out.valid_bytes = len(header)
    while pos < len(raw):
        newline = raw.find(b"\n", pos)
        if newline < 0:
            out.problems.append(f"{name}: torn last record ignored ({len(raw) - pos} bytes "
                                "without an end of line: a crash while writing)")
            break
        crc, _, text = raw[pos:newline].partition(b" ")
        try:
            if len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
                raise ValueError("checksum mismatch")
            out.records.append(decode(text))
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            out.problems.append(f"{name}: corrupt record at byte {pos} ({exc}): it and the "
                                f"{len(raw) - newline - 1} bytes after it are ignored")
            out.damaged = True
            break
        pos = out.valid_bytes = newline + 1
    return out
