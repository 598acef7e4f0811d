"""One dead-letter entry: :class:`DeadLetter`, its JSON document and its record payload.

A DLQ entry is a batch one sink rejected for good, with why and when, and every line with its
own timestamp (and the labels and structured metadata processing gave it), so a resend keeps
the original timestamps (Loki's exact-duplicate check then absorbs a batch sent twice) and
each line goes back to its own stream. Its document (also in ``docs/DLQ.md``)::

    {"version": 1, "id": "<uuid4 hex>", "sink": "loki", "reason": "bad_request",
     "status_code": 400, "attempts": 1, "first_failure": 1700000000.5,
     "last_failure": 1700000000.5, "detail": "<the sink's message>",
     "streams": [{"labels": [["job", "mysql"]], "source": "mysql", "stream": "/var/log/x",
                  "lines": [["1700000000000000000", "a line"], ...]}]}

Version 2 is the same document where a line may have a third element, an object with the
line's own ``labels`` (added to the stream's) and structured ``metadata``, each a list of
``[name, value]``, present only when not empty::

    "lines": [["1700000000000000000", "a line", {"labels": [["level", "error"]],
                                                 "metadata": [["trace_id", "abc"]]}], ...]

An entry none of whose lines has either is written as version 1 (as before per-line fields
existed); both versions are read.

``status_code`` is an integer or null; times are unix seconds (floats); line timestamps are
nanoseconds written as decimal strings, as in Loki's JSON push API (a reader also accepts
integers). Non-UTF-8 input that logcap kept as lone surrogates is written as ``\\udcXX``
escapes (the document is then pure ASCII). A record payload (:func:`encode_payload`) is one
zstd frame, content checksum on, of the document in UTF-8.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zstandard

from logcap.messages import Entries, Labels
from logcap.origin import DLQ_KIND, ReadToken

__all__ = ["COMPRESSION_LEVEL", "FORMAT_VERSION", "DeadLetter", "DeadStream", "decode_payload",
           "encode_payload", "is_entry_id"]

FORMAT_VERSION = 2
"""The newest document version written (entries without per-line fields are written as 1)."""
_PLAIN_VERSION = 1
COMPRESSION_LEVEL = 3
_ID = re.compile(r"^[0-9a-f]{32}$")


def is_entry_id(text: str) -> bool:
    """True for a well-formed entry id (32 lowercase hex digits)."""
    return bool(_ID.match(text))


def _per_line(values: list[Labels] | tuple[Labels, ...] | None) -> tuple[Labels, ...] | None:
    """Per-line pairs as stored in a :class:`DeadStream`: None when no line has any."""
    if values is None or not any(values):
        return None
    return tuple(values)


@dataclass(frozen=True, slots=True)
class DeadStream:
    """The lines of one stream in an entry, each with its own timestamp (ns); ``line_labels``
    and ``metadata`` are None, or as long as ``lines``: line ``i``'s own labels (added to
    ``labels``) and structured metadata."""

    labels: Labels
    source: str
    stream: str
    lines: tuple[tuple[int, str], ...]
    line_labels: tuple[Labels, ...] | None = None
    metadata: tuple[Labels, ...] | None = None

    def joined(self, other: DeadStream) -> DeadStream:
        """This stream's lines followed by ``other``'s (same labels, source and stream)."""
        def both(mine: tuple[Labels, ...] | None, theirs: tuple[Labels, ...] | None,
                 ) -> tuple[Labels, ...] | None:
            if mine is None and theirs is None:
                return None
            return ((mine or ((),) * len(self.lines))
                    + (theirs or ((),) * len(other.lines)))
        return DeadStream(self.labels, self.source, self.stream, self.lines + other.lines,
                          both(self.line_labels, other.line_labels),
                          both(self.metadata, other.metadata))

    def line_document(self, i: int) -> list[Any]:
        """Line ``i`` as its document item: ``[ts, line]``, or with its third element."""
        ts, line = self.lines[i]
        extra: dict[str, Any] = {}
        if self.line_labels is not None and self.line_labels[i]:
            extra["labels"] = [list(pair) for pair in self.line_labels[i]]
        if self.metadata is not None and self.metadata[i]:
            extra["metadata"] = [list(pair) for pair in self.metadata[i]]
        return [str(ts), line, extra] if extra else [str(ts), line]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ entry (also the message a shard tells the DeadLetterQueue actor)."""

    id: str
    sink: str
    reason: str
    status_code: int | None
    attempts: int
    first_failure: float
    last_failure: float
    detail: str
    streams: tuple[DeadStream, ...]

    @property
    def line_count(self) -> int:
        return sum(len(stream.lines) for stream in self.streams)

    @classmethod
    def from_parts(cls, sink: str, reason: str, status_code: int | None, attempts: int,
                   first_failure: float, last_failure: float, detail: str,
                   parts: tuple[Entries, ...]) -> DeadLetter:
        """An entry with a new id for a batch; line ``i`` of a part keeps ``ts_ns + i``."""
        streams: list[DeadStream] = []
        for part in parts:
            lines = tuple((part.timestamp(i), line) for i, line in enumerate(part.lines))
            dead = DeadStream(part.labels, part.source, part.stream, lines,
                              _per_line(part.line_labels), _per_line(part.metadata))
            last = streams[-1] if streams else None
            if last and (last.labels, last.source, last.stream) == (
                    part.labels, part.source, part.stream):
                streams[-1] = last.joined(dead)
            else:
                streams.append(dead)
        return cls(uuid.uuid4().hex, sink, reason, status_code, attempts, first_failure,
                   last_failure, detail, tuple(streams))

    def to_parts(self) -> tuple[Entries, ...]:
        """Entries for a resend, one per stream, every line with its original timestamp (and
        its own labels and metadata): ``timestamps`` is None when line ``i`` has ``ts_ns +
        i``, the list of them otherwise. Their tokens are of kind ``dlq``, without a stream
        identity (never deduplicated), ``generation`` = this entry's id, the range counting
        lines of the stream."""
        parts = []
        for s in self.streams:
            if not s.lines:
                continue
            first = s.lines[0][0]
            stamps = [ts for ts, _ in s.lines]
            lines = [line for _, line in s.lines]
            consecutive = all(ts == first + i for i, ts in enumerate(stamps))
            parts.append(Entries(
                s.source, s.stream, s.labels, lines, first,
                ReadToken(s.source, DLQ_KIND, None, 0, len(lines), self.id),
                sum(len(line) for line in lines),
                timestamps=None if consecutive else stamps,
                line_labels=None if s.line_labels is None else list(s.line_labels),
                metadata=None if s.metadata is None else list(s.metadata)))
        return tuple(parts)

    @property
    def has_line_fields(self) -> bool:
        """Whether some line has its own labels or metadata (written as version 2)."""
        return any(s.line_labels is not None or s.metadata is not None for s in self.streams)

    def document(self) -> dict[str, Any]:
        """The entry's JSON document (module docstring)."""
        version = FORMAT_VERSION if self.has_line_fields else _PLAIN_VERSION
        return {"version": version, "id": self.id, "sink": self.sink,
                "reason": self.reason, "status_code": self.status_code,
                "attempts": self.attempts, "first_failure": self.first_failure,
                "last_failure": self.last_failure, "detail": self.detail,
                "streams": [{"labels": [list(pair) for pair in s.labels], "source": s.source,
                             "stream": s.stream,
                             "lines": [s.line_document(i) for i in range(len(s.lines))]}
                            for s in self.streams]}

    @classmethod
    def from_document(cls, doc: Any) -> DeadLetter:
        """Inverse of :meth:`document` (versions 1 and 2); raises ValueError naming what is
        wrong."""
        version = _need(doc, "version", int)
        if version not in (_PLAIN_VERSION, FORMAT_VERSION):
            raise ValueError(f"unknown entry version {version}")
        status = doc.get("status_code")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
            raise ValueError("field 'status_code' is neither an integer nor null")
        streams = []
        for s in _need(doc, "streams", list):
            labels = tuple((_text(k), _text(v)) for k, v in map(_pair, _need(s, "labels", list)))
            lines: list[tuple[int, str]] = []
            line_labels: list[Labels] = []
            metadata: list[Labels] = []
            for item in _need(s, "lines", list):
                ts, line, extra = _line_item(item, version)
                lines.append((int(_text(ts) if isinstance(ts, str)
                                  else _need({"ts": ts}, "ts", int)), _text(line)))
                line_labels.append(_pairs(extra.get("labels", [])))
                metadata.append(_pairs(extra.get("metadata", [])))
            streams.append(DeadStream(labels, _need(s, "source", str), _need(s, "stream", str),
                                      tuple(lines), _per_line(line_labels),
                                      _per_line(metadata)))
        return cls(_need(doc, "id", str), _need(doc, "sink", str), _need(doc, "reason", str),
                   status, _need(doc, "attempts", int),
                   float(_need(doc, "first_failure", (int, float))),
                   float(_need(doc, "last_failure", (int, float))), _need(doc, "detail", str),
                   tuple(streams))


def _line_item(value: Any, version: int) -> tuple[Any, Any, dict[str, Any]]:
    """``(ts, line, extra)`` of one document line; a third element only from version 2."""
    if version > _PLAIN_VERSION and isinstance(value, list) and len(value) == 3:
        extra = value[2]
        if not isinstance(extra, dict):
            raise ValueError(f"a line's third element is not an object: {str(extra)[:40]}")
        return value[0], value[1], extra
    ts, line = _pair(value)
    return ts, line, {}


def _pairs(value: Any) -> Labels:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of pairs, got {str(value)[:40]}")
    return tuple((_text(k), _text(v)) for k, v in map(_pair, value))


def _need(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {key!r} is missing or of the wrong type")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"expected a pair, got {str(value)[:40]}")
    return value[0], value[1]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {str(value)[:40]}")
    return value


def payload_compressor() -> zstandard.ZstdCompressor:
    """The compressor :func:`encode_payload` takes (zstd at :data:`COMPRESSION_LEVEL`, with a
    checksum). ``zstandard`` is imported here, by the first dead letter written or read, not
    by an agent that never has one."""
    import zstandard

    return zstandard.ZstdCompressor(level=COMPRESSION_LEVEL, write_checksum=True)


def encode_payload(entry: DeadLetter, compressor: zstandard.ZstdCompressor) -> bytes:
    """The record payload of ``entry``: its document, UTF-8, in one zstd frame."""
    try:
        text = json.dumps(entry.document(), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: ASCII JSON keeps them as \udcXX escapes
        text = json.dumps(entry.document()).encode("ascii")
    return compressor.compress(text)


def decode_payload(payload: bytes) -> DeadLetter:
    """Inverse of :func:`encode_payload`; raises ValueError for anything malformed."""
    import zstandard

    try:
        text = zstandard.ZstdDecompressor().decompress(payload)
        return DeadLetter.from_document(json.loads(text))
    except (zstandard.ZstdError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
