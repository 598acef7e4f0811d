"""The positions log: each commit appended to a file, so that committing at every ack is cheap
and a ``kill -9`` keeps the last commit, not the last snapshot.

Why
    The positions files (:mod:`logcap.state.positions_format`) are replaced atomically with an
    ``fsync`` (milliseconds), so they are written every ``flush_interval``; a ``kill -9`` used
    to lose every commit since the last write, and those lines were read again. An append to
    this log costs microseconds and needs no ``fsync``: a process crash keeps the page cache.
    A power loss may lose its tail: the positions are then those of the last snapshot, which
    costs lines read twice, never a line lost (a position is committed only after its lines
    are safe, with or without the log).

File (``positions.log`` in the positions directory, :data:`LOG_FILE`)
    A header line ``logcap-positions-log 1`` then one ASCII line per record:
    ``<crc32 hex> <json>``, the CRC-32 over the JSON text (:mod:`logcap.state.checked_lines`).
    The JSON is an array: ``["f", <the FilePosition's fields in order>]`` (a commit),
    ``["-f", dev, ino]`` (a file forgotten), ``["c", id, name, cursor_ns, cursor,
    updated_at]``, ``["-c", id]``.

Compaction
    The store writes its snapshot (the positions files, atomically) every ``flush_interval``
    or when the log passes :data:`COMPACT_BYTES`, then truncates the log to its header. A
    crash between the two leaves a log whose records are already in the snapshot; replaying
    them again gives the same state (each record sets or removes one entry whole, and the
    last record of an entry is its state in the snapshot).

Loading (:meth:`PositionsLog.load`, :func:`decode_log`)
    The records of the valid prefix are returned in order, to be applied over the snapshot
    with last-writer-wins; a torn last line (a crash while appending) or a corrupt record
    ends the prefix: it and what follows are ignored and reported, never raised, and the
    file is cut back to the prefix so that later appends are read. A damaged log (a corrupt
    record, an unknown header: not a mere torn tail) is first set aside as
    ``positions.log.corrupt-<UTC>`` (never deleted), like a corrupt positions file. A missing
    log is an empty one (positions written by an older logcap load as before).
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import time
from dataclasses import fields
from typing import Any

from logcap.state.atomic import move_aside
from logcap.state.checked_lines import (
    ValidPrefix,
    append_whole,
    checked_line,
    read_valid_prefix,
)
from logcap.state.positions_entries import ContainerPosition, FilePosition
from logcap.state.positions_format import CORRUPT_INFIX, container_from_json, file_from_json

__all__ = [
    "COMPACT_BYTES",
    "HEADER",
    "LOG_FILE",
    "LogContent",
    "LogRecord",
    "PositionsLog",
    "decode_log",
    "encode_commit",
    "encode_forget",
]

LOG_FILE = "positions.log"
HEADER = b"logcap-positions-log 1\n"
COMPACT_BYTES = 4 * 1024 * 1024
"""A log this large is compacted into the snapshot at once."""

_FILE_FIELDS = tuple(f.name for f in fields(FilePosition))
_file_fields = operator.attrgetter(*_FILE_FIELDS)
"""A FilePosition's fields in order (``astuple`` would deep-copy them, at every commit)."""

LogRecord = FilePosition | ContainerPosition | tuple[str, Any]
"""A commit (the position), or a removal: ``("file", (dev, ino))``, ``("container", id)``."""


_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
"""``json.dumps`` with these arguments builds a new encoder at each call (one per commit)."""


def _line(value: list[Any]) -> bytes:
    text = _ENCODER.encode(value)
    return checked_line(text.encode("ascii"))


def encode_commit(pos: FilePosition | ContainerPosition) -> bytes:
    """The log line of a commit."""
    if isinstance(pos, FilePosition):
        return _line(["f", *_file_fields(pos)])
    return _line(["c", pos.id, pos.name, pos.cursor_ns, dict(pos.cursor), pos.updated_at])


def encode_forget(kind: str, key: Any) -> bytes:
    """The log line of a removal: ``kind`` ``"file"`` (key ``(dev, ino)``) or ``"container"``
    (key its id)."""
    return _line(["-f", *key] if kind == "file" else ["-c", key])


def _decode_record(value: Any) -> LogRecord:
    if not isinstance(value, list) or not value:
        raise ValueError("not a record")
    tag, rest = value[0], value[1:]
    if tag == "f":
        if len(rest) != len(_FILE_FIELDS):
            raise ValueError("wrong number of fields")
        return file_from_json(dict(zip(_FILE_FIELDS, rest, strict=True)))
    if tag == "c":
        names = ("id", "name", "cursor_ns", "cursor", "updated_at")
        if len(rest) != len(names):
            raise ValueError("wrong number of fields")
        return container_from_json(dict(zip(names, rest, strict=True)))
    if tag == "-f" and len(rest) == 2 and all(isinstance(v, int) for v in rest):
        return ("file", (rest[0], rest[1]))
    if tag == "-c" and len(rest) == 1 and isinstance(rest[0], str):
        return ("container", rest[0])
    raise ValueError(f"unknown record {tag!r}")


LogContent = ValidPrefix[LogRecord]
"""What :func:`decode_log` found: the valid prefix's records and length, and problems."""


def decode_log(raw: bytes, name: str = LOG_FILE) -> LogContent:
    """The records of a log's valid prefix (module docstring); never raises."""
    return read_valid_prefix(raw, HEADER, name, lambda text: _decode_record(json.loads(text)))


class PositionsLog:
    """The append-only log at ``path`` (module docstring). Not thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self.size = 0
        """Bytes in the file (header included) while it is open."""

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def load(self) -> LogContent:
        """Read the valid prefix, cut the file back to it and open it for appending. Never
        raises: a log that cannot be read or opened is reported in the problems and left
        closed (commits are then durable at each snapshot only, until a flush reopens it)."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            return LogContent(problems=[f"{self.path}: cannot be read ({exc.strerror or exc})"
                                        ": commits are written with each snapshot only"])
        content = decode_log(raw, self.path)
        if content.damaged:  # kept for a post-mortem; a new log goes on from the valid prefix
            try:
                aside = move_aside(self.path, CORRUPT_INFIX, time.time())
                content.problems.append(f"{self.path}: moved aside to {aside}")
                with open(self.path, "wb") as handle:
                    handle.write(raw[:content.valid_bytes])
            except OSError as exc:
                content.problems.append(f"{self.path}: could not be moved aside "
                                        f"({exc.strerror or exc}): cut to its valid prefix")
        try:
            self._open(keep=content.valid_bytes)
        except OSError as exc:
            content.problems.append(f"{self.path}: cannot be opened ({exc.strerror or exc}): "
                                    "commits are written with each snapshot only")
        return content

    def _open(self, keep: int) -> None:
        self.close()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if keep < len(HEADER):
                os.ftruncate(fd, 0)
                os.pwrite(fd, HEADER, 0)
                keep = len(HEADER)
            else:
                os.ftruncate(fd, keep)
        except OSError:
            os.close(fd)
            raise
        os.lseek(fd, keep, os.SEEK_SET)
        self._fd = fd
        self.size = keep

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole record lines) in one write; OSError closes the log."""
        if self._fd is None:
            return
        try:
            written = append_whole(self._fd, data)
        except OSError:
            self.close()
            raise
        self.size += written

    def reset(self) -> None:
        """Empty the log (its records are in a snapshot now); reopens a closed log.
        Raises OSError."""
        if self._fd is None:
            self._open(keep=0)
            return
        os.ftruncate(self._fd, len(HEADER))
        os.lseek(self._fd, len(HEADER), os.SEEK_SET)
        self.size = len(HEADER)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

