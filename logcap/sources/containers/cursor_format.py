"""The JSON form of container cursors, for the entries of ``container_positions.json``.

The positions store (:mod:`logcap.state.positions_format`) owns the document around the entries
(version, kind, checksum, atomic write); this module owns one entry, per container ID::

    {"id": "<12 to 64 lowercase hex>", "name": "web-1",
     "cursor": {"version": 1, "floor_ns": "0",
                "streams": {"stdout": {"timestamp_ns": "1714557600000000000", "count": 3,
                                       "digest": "<32 hex>"}}}}

Timestamps are **decimal strings** of nanoseconds (as in Loki's push API): they exceed 2**53,
which many JSON readers cannot hold as numbers. ``streams`` has a key per stream that shipped a
line (``stdout``, ``stderr``). ``version`` is :data:`CURSOR_VERSION`; another version is refused.

:func:`decode_entry` and :func:`decode_cursor` validate everything and raise
:class:`CursorFormatError` naming the key path and what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from logcap.sources.containers.cursor import ContainerCursor, StreamCursor
from logcap.sources.containers.framing import Stream

__all__ = [
    "CURSOR_VERSION",
    "CursorFormatError",
    "decode_cursor",
    "decode_entry",
    "encode_cursor",
    "encode_entry",
]

CURSOR_VERSION = 1

_CONTAINER_ID = re.compile(r"[0-9a-f]{12,64}")
_DIGEST = re.compile(r"[0-9a-f]{32}")
_NS = re.compile(r"0|[1-9][0-9]{0,19}")
_STREAMS = {stream.label: stream for stream in Stream}


class CursorFormatError(ValueError):
    """A container entry or cursor read back is malformed; the message names the key path."""


def encode_cursor(cursor: ContainerCursor) -> dict[str, Any]:
    """The JSON object of ``cursor`` (streams in stream order)."""
    return {
        "version": CURSOR_VERSION,
        "floor_ns": str(cursor.floor_ns),
        "streams": {
            stream.label: {"timestamp_ns": str(c.timestamp_ns), "count": c.count,
                           "digest": c.digest}
            for stream, c in sorted(cursor.streams.items())
        },
    }


def encode_entry(container_id: str, name: str, cursor: ContainerCursor) -> dict[str, Any]:
    """The positions entry of one container."""
    return {"id": container_id, "name": name, "cursor": encode_cursor(cursor)}


def decode_entry(raw: Any) -> tuple[str, str, ContainerCursor]:
    """``(container_id, name, cursor)`` of a positions entry; CursorFormatError if malformed."""
    obj = _object(raw, "entry", {"id", "name", "cursor"})
    container_id = obj["id"]
    if not isinstance(container_id, str) or not _CONTAINER_ID.fullmatch(container_id):
        raise CursorFormatError(f"id: expected 12 to 64 lowercase hex digits, got "
                                f"{container_id!r}")
    name = obj["name"]
    if not isinstance(name, str):
        raise CursorFormatError(f"name: expected a string, got {type(name).__name__}")
    return container_id, name, _cursor(obj["cursor"], "cursor")


def decode_cursor(raw: Any) -> ContainerCursor:
    """The cursor of a JSON object made by :func:`encode_cursor`; CursorFormatError if
    malformed."""
    return _cursor(raw, "cursor")


def _cursor(raw: Any, path: str) -> ContainerCursor:
    obj = _object(raw, path, {"version", "floor_ns", "streams"})
    version = obj["version"]
    if type(version) is not int or version != CURSOR_VERSION:
        raise CursorFormatError(f"{path}.version: expected {CURSOR_VERSION}, got {version!r}")
    floor_ns = _ns(obj["floor_ns"], f"{path}.floor_ns")
    streams_raw = obj["streams"]
    if not isinstance(streams_raw, dict):
        raise CursorFormatError(f"{path}.streams: expected an object")
    streams: dict[Stream, StreamCursor] = {}
    for label, value in streams_raw.items():
        where = f"{path}.streams.{label}"
        stream = _STREAMS.get(label)
        if stream is None:
            raise CursorFormatError(f"{where}: unknown stream (expected stdout or stderr)")
        fields = _object(value, where, {"timestamp_ns", "count", "digest"})
        count = fields["count"]
        if type(count) is not int or count < 1:
            raise CursorFormatError(f"{where}.count: expected an integer >= 1, got {count!r}")
        digest = fields["digest"]
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise CursorFormatError(f"{where}.digest: expected 32 lowercase hex digits")
        streams[stream] = StreamCursor(_ns(fields["timestamp_ns"], f"{where}.timestamp_ns"),
                                       count, digest)
    return ContainerCursor(floor_ns, streams)


def _object(raw: Any, path: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CursorFormatError(f"{path}: expected an object, got {type(raw).__name__}")
    missing = keys - raw.keys()
    if missing:
        raise CursorFormatError(f"{path}: missing {', '.join(sorted(missing))}")
    extra = raw.keys() - keys
    if extra:
        raise CursorFormatError(f"{path}: unknown key {', '.join(sorted(map(str, extra)))}")
    return raw


def _ns(raw: Any, path: str) -> int:
    if not isinstance(raw, str) or not _NS.fullmatch(raw):
        raise CursorFormatError(f"{path}: expected a decimal string of nanoseconds, got "
                                f"{raw!r}")
    return int(raw)
