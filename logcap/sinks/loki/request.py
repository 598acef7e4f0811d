"""One Loki push request body from a batch, and splitting a batch in two.

Input is a sequence of :class:`LokiStream`: a rendered label string (see
:func:`logcap.sinks.loki.labels.render_labels`) and that stream's entries, each a
``(ts_ns, line, metadata)`` triple: a plain tuple as the sink makes them, or a
:class:`LokiEntry` (the same triple, named).

- Entries of each stream are sent sorted by timestamp (a stable sort: entries with the same
  timestamp keep their batch order). Streams keep their order. Streams without entries are
  left out: Loki ignores them, and a request with no stream at all is answered 422.
- :func:`encode_protobuf` gives the default body: a ``logproto.PushRequest`` compressed with
  snappy's block format, sent as ``Content-Type: application/x-protobuf`` without a
  ``Content-Encoding`` (Loki implies snappy for protobuf).
- :func:`encode_json` gives Loki's JSON push format::

      {"streams": [{"stream": {"job": "x"},
                    "values": [["<ns since epoch, as a string>", "line"],
                               ["<ns>", "line", {"trace_id": "..."}]]}]}

  The third element carries structured metadata and appears only when the entry has some.
  With ``gzip=True`` the body is gzip-compressed and sent with ``Content-Encoding: gzip``.
- :func:`build_push_request` bundles a body with its headers and counts (:class:`PushRequest`).
- :func:`split_in_halves` answers a 413: two requests of about half the entries each, each
  stream's entries staying in time order across the halves. One entry cannot be split:
  :class:`CannotSplit` says so, and the caller must treat that entry as rejected.
"""

from __future__ import annotations

import gzip as _gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import itemgetter, le
from typing import Literal, NamedTuple

from logcap import __version__
from logcap.sinks.loki.labels import parse_labels
from logcap.sinks.loki.protobuf import EntryLike, compress_snappy, encode_push_request

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PROTOBUF",
    "DEFAULT_GZIP_LEVEL",
    "USER_AGENT",
    "CannotSplit",
    "Encoding",
    "LokiEntry",
    "LokiStream",
    "PushRequest",
    "build_push_request",
    "encode_json",
    "encode_protobuf",
    "entries_at",
    "entries_of",
    "sorted_streams",
    "split_in_halves",
]

CONTENT_TYPE_PROTOBUF = "application/x-protobuf"
CONTENT_TYPE_JSON = "application/json"
USER_AGENT = f"logcap/{__version__}"
DEFAULT_GZIP_LEVEL = 6

Encoding = Literal["protobuf", "json"]

_BY_TS = itemgetter(0)
_LINE = itemgetter(1)


class LokiEntry(NamedTuple):
    """One log line: nanoseconds since the epoch, the line, and its structured metadata.

    The named form of an entry (tests, callers outside the hot path). The sink itself makes
    plain ``(ts_ns, line, metadata)`` tuples (:func:`entries_of`): zipped in C, with no
    constructor call per line, and compared equal to the named ones."""

    ts_ns: int
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


def entries_at(first_ns: int, lines: Sequence[str]) -> list[EntryLike]:
    """``(first_ns + i, line, ())`` for each line ``i``: no structured metadata."""
    return entries_of(range(first_ns, first_ns + len(lines)), lines)


def entries_of(timestamps: Iterable[int], lines: Iterable[str],
               metadata: Iterable[tuple[tuple[str, str], ...]] | None = None
               ) -> list[EntryLike]:
    """``(ts, line, md)`` for each ``timestamps``, ``lines`` and ``metadata`` item (``()``
    when ``metadata`` is None), zipped in C."""
    if metadata is None:
        return list(zip(timestamps, lines, repeat(())))
    return list(zip(timestamps, lines, metadata, strict=True))


@dataclass(frozen=True, slots=True)
class LokiStream:
    """One stream of a request: its rendered label string and its entries.

    ``ordered`` says the entries are known to be in timestamp order (the sink knows it of a
    stream made of lines without their own timestamps, :func:`sorted_streams` of what it
    returns): they are then not checked again. A hint, not part of the stream's value."""

    labels: str
    entries: list[EntryLike]
    ordered: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A request ready to POST to ``/loki/api/v1/push``.

    ``line_count`` and ``line_bytes`` (UTF-8 bytes of the lines) describe what it carries, for
    metrics; ``len(body)`` is what goes on the wire, ``payload_bytes`` its size before
    compression (the serialized message, or the JSON document).
    """

    body: bytes
    headers: Mapping[str, str] = field(hash=False)
    line_count: int
    line_bytes: int
    stream_count: int
    encoding: Encoding
    payload_bytes: int
    metadata_chars: int | None = None
    """Code points of the structured metadata's names and values, when the encoder counted
    them (protobuf; None for JSON)."""

    @property
    def body_bytes(self) -> int:
        return len(self.body)


class CannotSplit(ValueError):
    """Raised by :func:`split_in_halves` for a batch of fewer than two entries."""


def _is_sorted(entries: Sequence[EntryLike]) -> bool:
    """Whether the timestamps never go down (compared in C, pairwise)."""
    stamps = list(map(_BY_TS, entries))
    return all(map(le, stamps, islice(stamps, 1, None)))


def sorted_streams(streams: Sequence[LokiStream]) -> list[LokiStream]:
    """``streams`` without empty ones, each one's entries in (stable) timestamp order (checked
    unless the stream is ``ordered``), each ``ordered``."""
    out: list[LokiStream] = []
    for stream in streams:
        entries = stream.entries
        if not entries:
            continue
        if not stream.ordered:
            if len(entries) > 1 and not _is_sorted(entries):
                entries = sorted(entries, key=_BY_TS)
            stream = LokiStream(stream.labels, entries, True)
        out.append(stream)
    return out


def encode_protobuf(streams: Sequence[LokiStream]) -> bytes:
    """The snappy-compressed protobuf body (``Content-Type: application/x-protobuf``)."""
    return compress_snappy(encode_push_request(sorted_streams(streams)).payload)


def _json_document(streams: Sequence[LokiStream]) -> bytes:
    doc = []
    for stream in streams:
        values: list[list[object]] = []
        ap = values.append
        for ts_ns, line, metadata in stream.entries:
            if metadata:
                ap([str(ts_ns), line, dict(metadata)])
            else:
                ap([str(ts_ns), line])
        doc.append({"stream": parse_labels(stream.labels), "values": values})
    text = json.dumps({"streams": doc}, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def encode_json(streams: Sequence[LokiStream], gzip: bool = False) -> bytes:
    """Loki's JSON body; gzip-compressed (``Content-Encoding: gzip``) when ``gzip``."""
    body = _json_document(sorted_streams(streams))
    if gzip:
        return _gzip.compress(body, compresslevel=DEFAULT_GZIP_LEVEL, mtime=0)
    return body


def _utf8_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "replace"))


def build_push_request(
    streams: Sequence[LokiStream],
    *,
    encoding: Encoding = "protobuf",
    gzip: bool = False,
    tenant_id: str | None = None,
    user_agent: str = USER_AGENT,
) -> PushRequest:
    """Encode ``streams`` and attach the headers Loki needs.

    ``gzip`` applies to JSON only (protobuf is always snappy-compressed): asking for it with
    protobuf is a ``ValueError``. ``X-Scope-OrgID`` is set when ``tenant_id`` is non-empty.
    """
    ordered = sorted_streams(streams)
    headers = {"User-Agent": user_agent}
    if encoding == "protobuf":
        if gzip:
            raise ValueError("gzip applies to the JSON encoding only; protobuf uses snappy")
        encoded = encode_push_request(ordered)
        body = compress_snappy(encoded.payload)
        payload_bytes = len(encoded.payload)
        headers["Content-Type"] = CONTENT_TYPE_PROTOBUF
        line_count, line_bytes = encoded.entries, encoded.line_bytes
        metadata_chars: int | None = encoded.metadata_chars
    elif encoding == "json":
        body = _json_document(ordered)
        payload_bytes = len(body)
        if gzip:
            body = _gzip.compress(body, compresslevel=DEFAULT_GZIP_LEVEL, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = CONTENT_TYPE_JSON
        line_count = sum(len(s.entries) for s in ordered)
        line_bytes = sum(sum(map(_utf8_len, map(_LINE, s.entries))) for s in ordered)
        metadata_chars = None
    else:
        raise ValueError(f"unknown encoding {encoding!r}: expected 'protobuf' or 'json'")
    if tenant_id:
        headers["X-Scope-OrgID"] = tenant_id
    return PushRequest(
        body=body,
        headers=headers,
        line_count=line_count,
        line_bytes=line_bytes,
        stream_count=len(ordered),
        encoding=encoding,
        payload_bytes=payload_bytes,
        metadata_chars=metadata_chars,
    )


def split_in_halves(streams: Sequence[LokiStream]) -> tuple[list[LokiStream], list[LokiStream]]:
    """Split a batch into two halves by entry count, for a 413 answer.

    Streams are first put in time order (as they are sent); the first half takes the first
    ``ceil(n / 2)`` entries in stream order, so a stream cut in two keeps its older entries in the
    first half and its newer ones in the second. Raises :class:`CannotSplit` for fewer than two
    entries: a single entry that is too large can only be rejected.
    """
    ordered = sorted_streams(streams)
    total = sum(len(s.entries) for s in ordered)
    if total < 2:
        raise CannotSplit(
            f"a batch of {total} entr{'y' if total == 1 else 'ies'} cannot be split"
        )
    remaining = (total + 1) // 2
    first: list[LokiStream] = []
    second: list[LokiStream] = []
    for stream in ordered:
        n = len(stream.entries)
        if remaining >= n:
            first.append(stream)
            remaining -= n
        elif remaining > 0:
            first.append(LokiStream(stream.labels, stream.entries[:remaining], True))
            second.append(LokiStream(stream.labels, stream.entries[remaining:], True))
            remaining = 0
        else:
            second.append(stream)
    return first, second
