"""A test receiver for Loki's push API, as Loki defines it, with fault injection.

It answers ``POST /loki/api/v1/push`` the way Loki's distributor does (``pkg/loghttp/push``,
``pkg/distributor``, ``pkg/validation`` in grafana/loki), and it is written independently of
logcap's own encoder: protobuf is decoded with the real ``google.protobuf`` runtime, from message
classes built here out of a hand-written ``FileDescriptorProto`` of ``pkg/push/push.proto``.

Decoding (a failure answers **400** with the reason, nothing of the request is kept):

- ``Content-Encoding``: none, ``snappy`` (passed through), ``gzip``, ``deflate`` (raw DEFLATE, as
  Go's ``compress/flate``); anything else is refused. A missing ``Content-Type`` is refused
  (Go's ``mime.ParseMediaType("")`` fails).
- ``application/json``: ``{"streams": [{"stream": {...}, "values": [["<ns>", "line", {md}]]}]}``;
  the timestamp must be a JSON *string* holding a base-10 int64, the line a string, the optional
  third element an object of strings. The stream map is rendered and re-parsed as Loki does
  (``LabelSet.String()`` then ``syntax.ParseLabels``), so bad names fail the same way.
- anything else: protobuf compressed with snappy's *block* format.

Validation, per stream, as Loki's distributor does it; a stream or entry that fails is left
out, the rest of the request is still ingested, and the answer is **400** listing the errors
(Loki accepts the valid part of a partly invalid push; ``partial_accept=False`` keeps nothing):

- the label string parses (PromQL ``ParseMetric`` syntax: ``{name="value", ...}``, Go string
  literals, label names ``[a-zA-Z_][a-zA-Z0-9_]*``); empty values are dropped; at least one label;
- at most 15 label names (``service_name`` not counted, as in Loki), names up to 1024 bytes,
  values up to 2048 bytes, no duplicate names;
- each line up to 256 KiB (Loki's ``max_line_size`` of ``256KB``, a KiB there); structured
  metadata up to 64 KiB and 128 pairs per entry; optional age limits (off by default);
- a request without any stream answers **422**; a stream without entries is ignored.

Success answers **204**. Everything accepted is recorded: per canonical label string (names
sorted, empty values dropped, values escaped as Prometheus does) the list of ``(ts_ns, line)``
(:meth:`LokiReceiver.streams`), and the same entries with their structured metadata, from
protobuf or JSON (:meth:`LokiReceiver.stream_entries`, ``GET /test/entries``).
Numbered lines (``... seq=<int> ...``, or a line that starts with an integer) are counted for
loss and duplicate checks: :meth:`LokiReceiver.received_seq_numbers` returns a ``Counter``, raw or
with Loki's exact-duplicate rule (same stream, timestamp and line stored once) applied.

Faults, settable while running: 503 (for N seconds or until cleared), 429 with ``Retry-After``
(for N seconds or N requests), 413 for bodies over N bytes, 400 for entries whose line contains a
marker, random 500s and connection resets for a share of pushes
(:meth:`LokiReceiver.fail_randomly`), and latency (every answer, or the next N, waits; the
push is ingested first, as a slow Loki that answers late still stores the data).

Two ways to run it:

- in-process: ``LokiReceiver().start()``, the fault methods, then ``stop()``;
- as a process: ``python tests/loki_receiver.py --port N [--fault-file F]`` prints its port on
  the first line of stdout. Faults are set by ``POST /test/fault`` with a JSON spec (see
  :meth:`LokiReceiver.apply_fault_spec`) or by writing the same spec to the fault file (re-read
  when it changes; its content is the whole fault state). ``GET /test/stats`` gives counts,
  ``GET /test/seq`` the sequence counters, ``GET /test/entries`` every stream's entries as
``[ns, line, {metadata}]``, ``POST /test/reset`` forgets what was received,
  ``GET /ready`` answers 200.

Differences from Loki worth knowing: Python's protobuf runtime refuses invalid UTF-8 in strings
(Loki's gogo decoder does not); a JSON entry must have two or three elements.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = [
    "MAX_LABEL_NAMES",
    "MAX_LINE_BYTES",
    "PUSH_PATH",
    "DecodedEntry",
    "DecodedStream",
    "LokiReceiver",
    "PushError",
    "RequestRecord",
    "canonical_labels",
    "check_stream_labels",
    "decode_push",
    "main",
    "parse_label_string",
    "render_json_labels",
    "seq_number",
]

PUSH_PATH = "/loki/api/v1/push"
MAX_LABEL_NAMES = 15
MAX_LABEL_NAME_BYTES = 1024
MAX_LABEL_VALUE_BYTES = 2048
MAX_LINE_BYTES = 256 * 1024
MAX_STRUCTURED_METADATA_BYTES = 64 * 1024
MAX_STRUCTURED_METADATA_COUNT = 128
SERVICE_NAME_LABEL = "service_name"
MAX_ERRORS_REPORTED = 20
RESET_STATUS = 0
"""handle_push's status for "reset the connection without an answer" (random resets)."""
_NS = 1_000_000_000
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# gogo's Timestamp validation: 0001-01-01T00:00:00Z <= t < 10000-01-01T00:00:00Z
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300800


# --- protobuf: message classes from a hand-written descriptor of pkg/push/push.proto ----------


def _build_proto_classes() -> dict[str, type[Message]]:
    fdp = descriptor_pb2.FieldDescriptorProto
    opt, rep = fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED
    pool = descriptor_pool.DescriptorPool()

    ts_file = descriptor_pb2.FileDescriptorProto(
        name="google/protobuf/timestamp.proto", package="google.protobuf", syntax="proto3"
    )
    ts = ts_file.message_type.add(name="Timestamp")
    ts.field.add(name="seconds", number=1, label=opt, type=fdp.TYPE_INT64)
    ts.field.add(name="nanos", number=2, label=opt, type=fdp.TYPE_INT32)
    pool.AddSerializedFile(ts_file.SerializeToString())

    push = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    req = push.message_type.add(name="PushRequest")
    req.field.add(name="streams", number=1, label=rep, type=fdp.TYPE_MESSAGE,
                  type_name=".logproto.StreamAdapter")
    req.field.add(name="format", number=2, label=opt, type=fdp.TYPE_STRING)
    push.message_type.add(name="PushResponse")
    stream = push.message_type.add(name="StreamAdapter")
    stream.field.add(name="labels", number=1, label=opt, type=fdp.TYPE_STRING)
    stream.field.add(name="entries", number=2, label=rep, type=fdp.TYPE_MESSAGE,
                     type_name=".logproto.EntryAdapter")
    stream.field.add(name="hash", number=3, label=opt, type=fdp.TYPE_UINT64)
    pair = push.message_type.add(name="LabelPairAdapter")
    pair.field.add(name="name", number=1, label=opt, type=fdp.TYPE_STRING)
    pair.field.add(name="value", number=2, label=opt, type=fdp.TYPE_STRING)
    entry = push.message_type.add(name="EntryAdapter")
    entry.field.add(name="timestamp", number=1, label=opt, type=fdp.TYPE_MESSAGE,
                    type_name=".google.protobuf.Timestamp")
    entry.field.add(name="line", number=2, label=opt, type=fdp.TYPE_STRING)
    entry.field.add(name="structuredMetadata", number=3, label=rep, type=fdp.TYPE_MESSAGE,
                    type_name=".logproto.LabelPairAdapter")
    entry.field.add(name="parsed", number=4, label=rep, type=fdp.TYPE_MESSAGE,
                    type_name=".logproto.LabelPairAdapter")
    pool.AddSerializedFile(push.SerializeToString())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logproto.{name}"))
        for name in ("PushRequest", "StreamAdapter", "EntryAdapter", "LabelPairAdapter")
    }


PROTO = _build_proto_classes()


# --- decoding ------------------------------------------------------------------------------------


class PushError(Exception):
    """A request Loki refuses as a whole: ``status`` and the text it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    ts_ns: int
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DecodedStream:
    labels: str
    entries: list[DecodedEntry]


def _decompress(body: bytes, content_encoding: str) -> bytes:
    encoding = content_encoding.strip().lower()
    try:
        if encoding in ("", "snappy"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body, -15)
    except (OSError, EOFError, zlib.error) as exc:
        raise PushError(400, f"{encoding}: {exc}") from exc
    raise PushError(400, f"Content-Encoding {content_encoding!r} not supported")


def _media_type(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        raise PushError(400, "mime: no media type")
    if "/" not in media:
        raise PushError(400, "mime: expected slash after first token")
    return media


def _decode_protobuf(data: bytes) -> list[DecodedStream]:
    try:
        raw = bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise PushError(400, f"snappy: corrupt input: {exc}") from exc
    msg: Any = PROTO["PushRequest"]()
    try:
        msg.ParseFromString(raw)
    except DecodeError as exc:
        raise PushError(400, f"proto: {exc}") from exc
    streams = []
    for stream in msg.streams:
        entries = []
        for entry in stream.entries:
            seconds, nanos = entry.timestamp.seconds, entry.timestamp.nanos
            if not 0 <= nanos < _NS:
                raise PushError(400, f"timestamp: nanos not in range [0, 1e9): {nanos}")
            if not _MIN_SECONDS <= seconds < _MAX_SECONDS:
                raise PushError(400, f"timestamp: seconds out of range: {seconds}")
            metadata = tuple((p.name, p.value) for p in entry.structuredMetadata)
            entries.append(DecodedEntry(seconds * _NS + nanos, entry.line, metadata))
        streams.append(DecodedStream(stream.labels, entries))
    return streams


_INT_STRING = re.compile(r"[+-]?[0-9]+")


def _json_timestamp(value: object) -> int:
    if not isinstance(value, str):
        raise PushError(400, "error reading entry timestamp: expected a string of nanoseconds")
    if not _INT_STRING.fullmatch(value):
        raise PushError(400, f'strconv.ParseInt: parsing "{value}": invalid syntax')
    ts = int(value)
    if not _INT64_MIN <= ts <= _INT64_MAX:
        raise PushError(400, f'strconv.ParseInt: parsing "{value}": value out of range')
    return ts


def _json_entry(raw: object) -> DecodedEntry:
    if not isinstance(raw, list):
        raise PushError(400, "error reading entry: expected an array")
    if len(raw) not in (2, 3):
        raise PushError(400, "error reading entry: array must contain 2 or 3 values")
    ts = _json_timestamp(raw[0])
    line = raw[1]
    if not isinstance(line, str):
        raise PushError(400, "error reading entry: the line must be a string")
    metadata: tuple[tuple[str, str], ...] = ()
    if len(raw) == 3:
        md = raw[2]
        if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
            raise PushError(400, "error reading entry: metadata must be an object of strings")
        metadata = tuple(md.items())
    return DecodedEntry(ts, line, metadata)


def _go_quote(value: str) -> str:
    # Close enough to strconv.Quote for re-parsing: escapes what a Go string literal needs.
    return json.dumps(value, ensure_ascii=False)


def render_json_labels(labels: Mapping[str, str]) -> str:
    """A JSON stream's label map as the label string Loki parses next (``LabelSet.String()``)."""
    return "{" + ", ".join(f"{k}={_go_quote(labels[k])}" for k in sorted(labels)) + "}"


def _decode_json(data: bytes) -> list[DecodedStream]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PushError(400, f"json: {exc}") from exc
    if not isinstance(doc, dict):
        raise PushError(400, "json: expected an object")
    raw_streams = doc.get("streams") or []
    if not isinstance(raw_streams, list):
        raise PushError(400, "json: streams must be an array")
    streams = []
    for raw in raw_streams:
        if not isinstance(raw, dict):
            raise PushError(400, "json: a stream must be an object")
        labels = raw.get("stream") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise PushError(400, "json: stream labels must be an object of strings")
        rendered = render_json_labels(labels)
        values = raw.get("values") or []
        if not isinstance(values, list):
            raise PushError(400, "json: values must be an array")
        streams.append(DecodedStream(rendered, [_json_entry(v) for v in values]))
    return streams


def decode_push(body: bytes, content_type: str, content_encoding: str = "") -> list[DecodedStream]:
    """Decode a push body as Loki does; raises :class:`PushError` (400) when it cannot."""
    data = _decompress(body, content_encoding)
    if _media_type(content_type) == "application/json":
        return _decode_json(data)
    return _decode_protobuf(data)


# --- labels: PromQL ParseMetric syntax -----------------------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SPACES = " \t\n\r"
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _unquote(text: str, start: int) -> tuple[str, int]:
    """Read a Go/PromQL string literal at ``text[start]``; return its value and the end index."""
    quote = text[start]
    out = bytearray()
    i = start + 1
    n = len(text)
    while True:
        if i >= n:
            raise ValueError("unterminated quoted string")
        c = text[i]
        if c == "\ufffd":
            raise ValueError("invalid UTF-8 rune")
        if c == quote:
            return out.decode("utf-8", "surrogateescape"), i + 1
        if quote == "`":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if c == "\n":
            raise ValueError("unterminated quoted string")
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        esc = text[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == quote:
            out += quote.encode()
            i += 2
        elif esc in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f"invalid escape sequence \\{esc}{digits}")
            code = int(digits, 16)
            if esc == "x":
                out.append(code)
            else:
                if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                    raise ValueError(f"invalid escape sequence \\{esc}{digits}")
                out += chr(code).encode()
            i += 2 + width
        elif esc and esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(f"invalid escape sequence \\{digits}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"unknown escape sequence \\{esc}")


def parse_label_string(text: str) -> list[tuple[str, str]]:
    """Parse a stream's label string as Loki does (PromQL ``ParseMetric``), in written order.

    Raises ``ValueError`` with the reason. Empty values are *not* dropped here.
    """
    n = len(text)
    i = 0

    def skip(j: int) -> int:
        while j < n and text[j] in _SPACES:
            j += 1
        return j

    pairs: list[tuple[str, str]] = []
    i = skip(i)
    m = _METRIC_NAME.match(text, i)
    if m:
        pairs.append(("__name__", m.group()))
        i = skip(m.end())
        if i == n:
            return pairs
    if i >= n or text[i] != "{":
        raise ValueError(f"parse error at char {i + 1}: unexpected input, expected '{{'")
    i = skip(i + 1)
    while True:
        if i < n and text[i] == "}":
            i += 1
            break
        if i < n and text[i] in "\"'`":
            raise ValueError(f"parse error at char {i + 1}: invalid label name (quoted)")
        m = _LABEL_NAME.match(text, i)
        if not m:
            raise ValueError(f"parse error at char {i + 1}: unexpected character inside braces")
        name = m.group()
        i = skip(m.end())
        if text[i : i + 2] in ("!=", "=~", "!~") or text[i : i + 1] != "=":
            raise ValueError(f"parse error at char {i + 1}: expected '=' after label name")
        i = skip(i + 1)
        if i >= n or text[i] not in "\"'`":
            raise ValueError(f"parse error at char {i + 1}: expected a string label value")
        value, i = _unquote(text, i)
        pairs.append((name, value))
        i = skip(i)
        if i < n and text[i] == ",":
            i = skip(i + 1)
        elif i >= n or text[i] != "}":
            raise ValueError(f"parse error at char {i + 1}: expected ',' or '}}'")
    if skip(i) != n:
        raise ValueError(f"parse error at char {i + 1}: unexpected input after '}}'")
    return pairs


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def canonical_labels(pairs: Iterable[tuple[str, str]]) -> str:
    """The key a stream is recorded under: names sorted, empty values dropped."""
    kept = sorted((k, v) for k, v in pairs if v)
    return "{" + ", ".join(f'{k}="{_escape(v)}"' for k, v in kept) + "}"


def check_stream_labels(key: str, max_label_names: int = MAX_LABEL_NAMES,
                        ) -> tuple[str, str | None]:
    """Validate a stream's label string as Loki's distributor does: ``(canonical key, None)``
    when it passes, ``("", the error Loki reports)`` when it does not."""
    try:
        pairs = parse_label_string(key)
    except ValueError as exc:
        return "", f"Error parsing labels '{key}' with error: {exc}"
    pairs = [(k, v) for k, v in pairs if v]
    if not pairs:
        return "", "error at least one label pair is required per stream"
    names = sorted(k for k, _ in pairs)
    count = len(names) - (1 if SERVICE_NAME_LABEL in names else 0)
    if count > max_label_names:
        return "", (f"entry for stream '{key}' has {count} label names; "
                    f"limit {max_label_names}")
    for i, (name, value) in enumerate(sorted(pairs)):
        if len(name.encode()) > MAX_LABEL_NAME_BYTES:
            return "", f"stream '{key}' has label name too long: '{name}'"
        if len(value.encode("utf-8", "surrogateescape")) > MAX_LABEL_VALUE_BYTES:
            return "", f"stream '{key}' has label value too long: '{value}'"
        if i and names[i - 1] == name:
            return "", f"stream '{key}' has duplicate label name: '{name}'"
    return canonical_labels(pairs), None


_SEQ_FIELD = re.compile(r"\bseq=(\d+)")
_LEADING_INT = re.compile(r"\s*(\d+)")


def seq_number(line: str) -> int | None:
    """The sequence number of a numbered line (``... seq=<int> ...`` or a leading integer)."""
    m = _SEQ_FIELD.search(line) or _LEADING_INT.match(line)
    return int(m.group(1)) if m else None


# --- the receiver --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the receiver saw it."""

    status: int
    content_type: str
    content_encoding: str
    tenant: str
    body_bytes: int
    lines_accepted: int
    reason: str


@dataclass(slots=True)
class _Faults:
    unavailable_until: float | None = None  # monotonic deadline; math.inf: until cleared
    rate_limit_until: float | None = None
    rate_limit_remaining: int | None = None
    retry_after: str | None = None
    max_body_bytes: int | None = None
    reject_marker: str | None = None
    latency_s: float = 0.0
    latency_remaining: int | None = None
    random_until: float | None = None
    random_error_share: float = 0.0
    random_reset_share: float = 0.0

    def describe(self, now: float) -> dict[str, Any]:
        def left(deadline: float | None) -> float | str | None:
            if deadline is None:
                return None
            return "until cleared" if math.isinf(deadline) else max(0.0, deadline - now)

        return {
            "unavailable": left(self.unavailable_until),
            "rate_limit": left(self.rate_limit_until),
            "rate_limit_remaining": self.rate_limit_remaining,
            "retry_after": self.retry_after,
            "max_body_bytes": self.max_body_bytes,
            "reject_marker": self.reject_marker,
            "latency_s": self.latency_s,
            "latency_remaining": self.latency_remaining,
            "random": left(self.random_until),
            "random_error_share": self.random_error_share,
            "random_reset_share": self.random_reset_share,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: LokiReceiver

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup (socket.getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or a stop() that dropped it) is not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, False)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
               content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204 and body:
            self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._reply(status, json.dumps(doc).encode(), content_type="application/json")

    def do_GET(self) -> None:
        receiver = self.server.receiver
        path = urlsplit(self.path).path
        if path == "/ready":
            self._reply(200, b"ready\n")
        elif path == "/test/stats":
            self._json(200, receiver.stats())
        elif path == "/test/entries":
            self._json(200, {key: [[str(e.ts_ns), e.line, dict(e.metadata)] for e in entries]
                             for key, entries in receiver.stream_entries().items()})
        elif path == "/test/seq":
            raw = receiver.received_seq_numbers()
            dedup = receiver.received_seq_numbers(dedupe=True)
            self._json(200, {"raw": {str(k): v for k, v in raw.items()},
                             "dedup": {str(k): v for k, v in dedup.items()}})
        else:
            self._reply(404, b"404 page not found\n")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        path = urlsplit(self.path).path
        body = self._read_body()
        if path == PUSH_PATH:
            status, text, headers, delay = receiver.handle_push(dict(self.headers.items()), body)
            if delay > 0:
                receiver._stopping.wait(delay)
            if status == RESET_STATUS:  # the connection reset without an answer
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            self._reply(status, text.encode() + (b"\n" if text else b""), headers)
        elif path == "/test/fault":
            try:
                spec = json.loads(body or b"{}")
                receiver.apply_fault_spec(spec)
            except (ValueError, TypeError) as exc:
                self._reply(400, f"bad fault spec: {exc}\n".encode())
                return
            self._json(200, receiver.stats()["faults"])
        elif path == "/test/reset":
            receiver.reset()
            self._reply(200, b"reset\n")
        else:
            self._reply(404, b"404 page not found\n")


class LokiReceiver:
    """An in-process Loki push endpoint with fault injection (see the module docstring).

    Thread-safe: the HTTP handler threads and the test thread share one lock.
    """

    handler_class: type[BaseHTTPRequestHandler] = _Handler
    """The HTTP handler the server runs (a subclass may serve more paths)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        fault_file: str | os.PathLike[str] | None = None,
        partial_accept: bool = True,
        keep_lines: bool = True,
        max_label_names: int = MAX_LABEL_NAMES,
        max_line_bytes: int = MAX_LINE_BYTES,
        reject_older_than_s: float | None = None,
        creation_grace_period_s: float | None = None,
        max_records: int = 100_000,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.fault_file = os.fspath(fault_file) if fault_file is not None else None
        self.partial_accept = partial_accept
        self.keep_lines = keep_lines
        self.max_label_names = max_label_names
        self.max_line_bytes = max_line_bytes
        self.reject_older_than_s = reject_older_than_s
        self.creation_grace_period_s = creation_grace_period_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._faults = _Faults()
        self._fault_file_sig: tuple[float, int] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._rng = random.Random()
        self._reset_unlocked()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LokiReceiver:
        if self._server is not None:
            raise RuntimeError("receiver already started")
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), self.handler_class)
        server.receiver = self
        self._server = server
        self._requested_port = server.server_port  # a restart comes back on the same port
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"loki-receiver-{server.server_port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (a client sees the server go away)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LokiReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("receiver not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def push_url(self) -> str:
        return self.url + PUSH_PATH

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- faults -------------------------------------------------------------------------------

    def fail_unavailable(self, seconds: float | None = None) -> None:
        """Answer 503 for ``seconds``, or until :meth:`clear_faults` when None."""
        with self._lock:
            self._faults.unavailable_until = (
                math.inf if seconds is None else time.monotonic() + seconds
            )

    def rate_limit(self, retry_after: float | str | None = 1, *, seconds: float | None = None,
                   count: int | None = None) -> None:
        """Answer 429 (with ``Retry-After`` when given) for ``seconds`` or ``count`` requests,
        or until cleared when both are None."""
        with self._lock:
            f = self._faults
            f.retry_after = None if retry_after is None else _retry_after_text(retry_after)
            f.rate_limit_until = math.inf if seconds is None else time.monotonic() + seconds
            f.rate_limit_remaining = count

    def reject_bodies_over(self, max_bytes: int | None) -> None:
        """Answer 413 to a request whose body (as sent, compressed) exceeds ``max_bytes``."""
        with self._lock:
            self._faults.max_body_bytes = max_bytes

    def reject_lines_containing(self, marker: str | None) -> None:
        """Refuse entries whose line contains ``marker`` as a validation error (400)."""
        with self._lock:
            self._faults.reject_marker = marker or None

    def set_latency(self, seconds: float, count: int | None = None) -> None:
        """Delay every answer (or the next ``count``) by ``seconds``, after ingesting."""
        with self._lock:
            self._faults.latency_s = max(0.0, seconds)
            self._faults.latency_remaining = count

    def fail_randomly(self, error_share: float, seconds: float | None = None, *,
                      reset_share: float = 0.0, seed: int | None = None) -> None:
        """For ``seconds`` (or until cleared), answer a push 500 with probability
        ``error_share``, or reset its connection without an answer with probability
        ``reset_share`` (nothing of those pushes is kept); the others are served."""
        with self._lock:
            f = self._faults
            f.random_until = math.inf if seconds is None else time.monotonic() + seconds
            f.random_error_share = error_share
            f.random_reset_share = reset_share
            self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def apply_fault_spec(self, spec: Mapping[str, Any]) -> None:
        """Apply a JSON fault spec (the ``POST /test/fault`` body and the fault file format)::

            {"clear": true,                       # start from no faults
             "unavailable": true | false | 10,    # 503 until cleared / off / for 10 s
             "rate_limit": {"retry_after": 2, "seconds": 5, "count": 3} | false,
             "max_body_bytes": 100000 | null,
             "reject_marker": "POISON" | null,
             "latency_s": 0.5, "latency_count": 2}
        """
        if not isinstance(spec, Mapping):
            raise TypeError("a fault spec is a JSON object")
        unknown = set(spec) - {"clear", "unavailable", "rate_limit", "max_body_bytes",
                               "reject_marker", "latency_s", "latency_count"}
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        if spec.get("clear"):
            self.clear_faults()
        if "unavailable" in spec:
            value = spec["unavailable"]
            if value is False or value is None:
                with self._lock:
                    self._faults.unavailable_until = None
            else:
                self.fail_unavailable(None if value is True else float(value))
        if "rate_limit" in spec:
            rl = spec["rate_limit"]
            if not rl:
                with self._lock:
                    self._faults.rate_limit_until = None
                    self._faults.rate_limit_remaining = None
            else:
                rl = rl if isinstance(rl, Mapping) else {}
                self.rate_limit(rl.get("retry_after", 1), seconds=rl.get("seconds"),
                                count=rl.get("count"))
        if "max_body_bytes" in spec:
            value = spec["max_body_bytes"]
            self.reject_bodies_over(None if value is None else int(value))
        if "reject_marker" in spec:
            self.reject_lines_containing(spec["reject_marker"])
        if "latency_s" in spec or "latency_count" in spec:
            count = spec.get("latency_count")
            self.set_latency(float(spec.get("latency_s", 0.0)),
                             None if count is None else int(count))

    def _poll_fault_file(self) -> None:
        if self.fault_file is None:
            return
        try:
            st = os.stat(self.fault_file)
        except FileNotFoundError:
            sig = None
        else:
            sig = (st.st_mtime, st.st_size)
        with self._lock:
            if sig == self._fault_file_sig:
                return
            self._fault_file_sig = sig
        if sig is None:
            self.clear_faults()
            return
        try:
            with open(self.fault_file, encoding="utf-8") as fh:
                text = fh.read()
            spec = json.loads(text) if text.strip() else {}
            self.apply_fault_spec({**spec, "clear": True})
        except (OSError, ValueError, TypeError) as exc:
            print(f"loki_receiver: ignoring fault file: {exc}", file=sys.stderr)

    # -- the push endpoint --------------------------------------------------------------------

    def handle_push(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str], float]:
        """Answer one push: ``(status, text, response headers, delay before answering)``."""
        self._poll_fault_file()
        h = {k.lower(): v for k, v in headers.items()}
        content_type = h.get("content-type", "")
        content_encoding = h.get("content-encoding", "")
        tenant = h.get("x-scope-orgid", "")
        now = time.monotonic()
        with self._lock:
            f = self._faults
            delay = 0.0
            if f.latency_s > 0 and f.latency_remaining != 0:
                delay = f.latency_s
                if f.latency_remaining is not None:
                    f.latency_remaining -= 1
            fault: tuple[int, str, dict[str, str]] | None = None
            draw = self._rng.random() if f.random_until is not None \
                and now < f.random_until else 1.0
            if draw < f.random_reset_share:
                fault = (RESET_STATUS, "receiver fault: connection reset", {})
            elif draw < f.random_reset_share + f.random_error_share:
                fault = (500, "receiver fault: random internal error", {})
            elif f.unavailable_until is not None and now < f.unavailable_until:
                fault = (503, "receiver fault: service unavailable", {})
            elif f.rate_limit_until is not None and now < f.rate_limit_until and (
                f.rate_limit_remaining is None or f.rate_limit_remaining > 0
            ):
                if f.rate_limit_remaining is not None:
                    f.rate_limit_remaining -= 1
                extra = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                fault = (429, f"Ingestion rate limit exceeded for user {tenant or 'fake'} "
                              "(receiver fault), reduce log volume", extra)
            elif f.max_body_bytes is not None and len(body) > f.max_body_bytes:
                fault = (413, f"request body too large: {len(body)} bytes, "
                              f"limit: {f.max_body_bytes} bytes", {})
            marker = f.reject_marker
            if fault is not None:
                self._finish(fault[0], content_type, content_encoding, tenant, len(body), 0,
                             fault[1])
                return (*fault, delay)
        try:
            streams = decode_push(body, content_type, content_encoding)
            if not streams:
                raise PushError(422, "error at least one valid stream is required for ingestion")
        except PushError as exc:
            with self._lock:
                self._finish(exc.status, content_type, content_encoding, tenant, len(body), 0,
                             exc.message)
            return exc.status, exc.message, {}, delay
        accepted, errors = self._validate(streams, marker)
        status = 400 if errors else 204
        text = "\n".join(errors[:MAX_ERRORS_REPORTED])
        if len(errors) > MAX_ERRORS_REPORTED:
            text += f"\n... and {len(errors) - MAX_ERRORS_REPORTED} more errors"
        with self._lock:
            lines = 0
            if not errors or self.partial_accept:
                lines = self._record(accepted)
            self._finish(status, content_type, content_encoding, tenant, len(body), lines, text)
        return status, text, {}, delay

    def _validate(self, streams: list[DecodedStream], marker: str | None,
                  ) -> tuple[list[tuple[str, list[DecodedEntry]]], list[str]]:
        accepted: list[tuple[str, list[DecodedEntry]]] = []
        errors: list[str] = []
        wall_ns = time.time_ns()
        for stream in streams:
            canonical, problem = check_stream_labels(stream.labels, self.max_label_names)
            if problem is not None:
                errors.append(problem)
                continue
            kept: list[DecodedEntry] = []
            for entry in stream.entries:
                problem = self._entry_problem(entry, canonical, marker, wall_ns)
                if problem:
                    errors.append(problem)
                else:
                    kept.append(entry)
            if kept:
                accepted.append((canonical, kept))
        return accepted, errors

    def _entry_problem(self, entry: DecodedEntry, stream: str, marker: str | None,
                       wall_ns: int) -> str | None:
        if self.reject_older_than_s is not None and (
            entry.ts_ns < wall_ns - int(self.reject_older_than_s * _NS)
        ):
            return f"entry for stream '{stream}' has timestamp too old: {entry.ts_ns}"
        if self.creation_grace_period_s is not None and (
            entry.ts_ns > wall_ns + int(self.creation_grace_period_s * _NS)
        ):
            return f"entry for stream '{stream}' has timestamp too new: {entry.ts_ns}"
        size = len(entry.line.encode("utf-8", "surrogateescape"))
        if self.max_line_bytes and size > self.max_line_bytes:
            return (f"Max entry size '{self.max_line_bytes}' bytes exceeded for stream "
                    f"'{stream}' while adding an entry with length '{size}' bytes")
        if entry.metadata:
            md_size = sum(len(k.encode()) + len(v.encode()) for k, v in entry.metadata)
            if md_size > MAX_STRUCTURED_METADATA_BYTES:
                return (f"stream '{stream}' has structured metadata too large: '{md_size}' "
                        f"bytes, limit: '{MAX_STRUCTURED_METADATA_BYTES}' bytes")
            if len(entry.metadata) > MAX_STRUCTURED_METADATA_COUNT:
                return (f"stream '{stream}' has too many structured metadata labels: "
                        f"'{len(entry.metadata)}', limit: '{MAX_STRUCTURED_METADATA_COUNT}'")
        if marker is not None and marker in entry.line:
            return f"receiver fault: line in stream '{stream}' contains {marker!r}"
        return None

    # -- records (call with the lock held) ----------------------------------------------------

    def _reset_unlocked(self) -> None:
        self._streams: dict[str, list[DecodedEntry]] = {}
        self._seen: set[int] = set()
        self._seq_raw: Counter[int] = Counter()
        self._seq_dedup: Counter[int] = Counter()
        self._by_status: Counter[int] = Counter()
        self._records.clear()
        self._requests = 0
        self._lines = 0
        self._line_bytes = 0
        self._exact_duplicates = 0
        self._unnumbered = 0

    def _record(self, accepted: list[tuple[str, list[DecodedEntry]]]) -> int:
        total = 0
        for key, entries in accepted:
            if self.keep_lines:
                self._streams.setdefault(key, []).extend(entries)
            for entry in entries:
                ts, line = entry.ts_ns, entry.line
                total += 1
                self._line_bytes += len(line.encode("utf-8", "surrogateescape"))
                seq = seq_number(line)
                fingerprint = hash((key, ts, line))
                duplicate = fingerprint in self._seen
                if duplicate:
                    self._exact_duplicates += 1
                else:
                    self._seen.add(fingerprint)
                if seq is None:
                    self._unnumbered += 1
                    continue
                self._seq_raw[seq] += 1
                if not duplicate:
                    self._seq_dedup[seq] += 1
        self._lines += total
        return total

    def _finish(self, status: int, content_type: str, content_encoding: str, tenant: str,
                body_bytes: int, lines: int, reason: str) -> None:
        self._requests += 1
        self._by_status[status] += 1
        self._records.append(RequestRecord(status, content_type, content_encoding, tenant,
                                           body_bytes, lines, reason))
        self._changed.notify_all()

    # -- queries ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything received (faults stay)."""
        with self._lock:
            self._reset_unlocked()
            self._changed.notify_all()

    def streams(self) -> dict[str, list[tuple[int, str]]]:
        """Per canonical label string, the ``(ts_ns, line)`` received, in arrival order."""
        if not self.keep_lines:
            raise RuntimeError("this receiver does not keep lines (keep_lines=False)")
        with self._lock:
            return {key: [(e.ts_ns, e.line) for e in entries]
                    for key, entries in self._streams.items()}

    def stream_entries(self) -> dict[str, list[DecodedEntry]]:
        """Per canonical label string, the entries received (timestamp, line and structured
        metadata in the order sent), in arrival order; duplicates are kept, as in
        :meth:`streams`."""
        if not self.keep_lines:
            raise RuntimeError("this receiver does not keep lines (keep_lines=False)")
        with self._lock:
            return {key: list(entries) for key, entries in self._streams.items()}

    def lines(self) -> list[str]:
        """Every line received, stream by stream."""
        return [line for entries in self.streams().values() for _, line in entries]

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def received_seq_numbers(self, dedupe: bool = False) -> Counter[int]:
        """How many times each sequence number arrived. With ``dedupe``, Loki's exact-duplicate
        rule applies first: what a query would return."""
        with self._lock:
            return Counter(self._seq_dedup if dedupe else self._seq_raw)

    @property
    def line_count(self) -> int:
        with self._lock:
            return self._lines

    def wait_for_lines(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` lines were accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._lines >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` requests were answered; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._requests >= n, timeout)

    def stats(self) -> dict[str, Any]:
        self._poll_fault_file()
        with self._lock:
            distinct = len(self._seq_raw)
            total = sum(self._seq_raw.values())
            return {
                "requests": self._requests,
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "lines": self._lines,
                "line_bytes": self._line_bytes,
                "streams": len(self._streams),
                "exact_duplicates": self._exact_duplicates,
                "unnumbered_lines": self._unnumbered,
                "seq": {
                    "total": total,
                    "distinct": distinct,
                    "duplicates": total - distinct,
                    "duplicates_after_dedupe": sum(self._seq_dedup.values()) - distinct,
                    "min": min(self._seq_raw) if distinct else None,
                    "max": max(self._seq_raw) if distinct else None,
                },
                "faults": self._faults.describe(time.monotonic()),
            }


def _retry_after_text(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def main(argv: list[str] | None = None, receiver_class: type[LokiReceiver] | None = None,
         ) -> int:
    """Serve as a process (see the module docstring); ``receiver_class`` defaults to
    :class:`LokiReceiver`."""
    parser = argparse.ArgumentParser(description="A Loki push API test receiver.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-file", default=None)
    parser.add_argument("--no-keep-lines", action="store_true",
                        help="count lines but do not keep them (long benchmarks)")
    parser.add_argument("--reject-whole-request", action="store_true",
                        help="on a validation error keep nothing of the request")
    args = parser.parse_args(argv)
    receiver = (receiver_class or LokiReceiver)(
        args.host, args.port, fault_file=args.fault_file, keep_lines=not args.no_keep_lines,
        partial_accept=not args.reject_whole_request)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    receiver.start()
    print(receiver.port, flush=True)
    try:
        done.wait()
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
