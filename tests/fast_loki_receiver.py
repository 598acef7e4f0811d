"""A Loki push receiver for benchmarks: the test receiver's semantics, decoded in bulk.

:class:`FastLokiReceiver` is :class:`tests.loki_receiver.LokiReceiver` (same endpoint, answers,
validation, counters and fault injection) with a fast path for the pushes a benchmark sends, so
that the receiver costs well under a microsecond per line and an agent can be measured at its own
speed. The fast path decides nothing differently: it takes a push only when it can prove the
outcome equals the full receiver's, and hands every other push to the full receiver unchanged.

Protobuf (snappy block format) is parsed in C by the upb-backed ``google.protobuf``, twice,
with two *views* of ``pkg/push/push.proto`` (same wire format, other declarations). In the
first, each stream's ``entries`` is one merged message: protobuf merges the repeated occurrences
of a singular message field, so it yields all lines of a stream as one list, and all
timestamps' ``seconds`` and ``nanos`` as two lists, without a Python object per entry (proto3:
strings are checked as UTF-8, as the full decoder does). That reading is exact only if every
entry carries exactly one line, one ``seconds`` and one ``nanos``; the second view (proto2)
*requires* them in every entry, so ``IsInitialized()`` and the merged lists' lengths (as many
as entries) prove it; a push of whole seconds (no ``nanos`` at all: a proto3 encoder leaves
out zero values) by a third view without them. The fast path also requires, per stream, no
``parsed`` labels, and structured metadata only where lines are not kept (each entry's pairs
counted and sized against the full receiver's limits). An entry with an empty line, or a push
with some entries on a whole second and some not, goes to the full path.

JSON: every value must be ``[<string of digits, optionally signed>, <string>]``.

The rest is checked in bulk: labels by the full receiver's rules (cached per label string),
timestamps' ranges by min and max, line sizes by the longest line; counters in bulk too
(fingerprints ``hash((labels, ts, line))`` exactly as the full receiver computes them, sequence
numbers by one regex search over the stream's lines joined by newlines). A stream with a
duplicate entry, a line without ``seq=<int>`` or a line holding a newline is recorded entry by
entry by the full receiver's code. Pushes go to the full receiver whole while a fault is set,
with a fault file, age limits, or a decoding error (so a malformed body gets its exact 400).

Every accepted push is also logged with its arrival time (:class:`tests.receiver_timing.
ArrivalLog`), served at ``GET /test/timing``; ``GET /test/count`` gives lines and the last
arrival cheaply. :class:`LokiReceiverProcess` runs it as its own process (its own GIL, the other
core) and reads it over HTTP: ``python tests/fast_loki_receiver.py`` takes
:func:`tests.loki_receiver.main`'s options.
"""

from __future__ import annotations

import gc
import http.client
import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from itertools import compress, repeat
from operator import add, itemgetter, mul, not_
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

if __package__ in (None, ""):  # run as a script: python tests/fast_loki_receiver.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.loki_receiver import (
    _MAX_SECONDS,
    _MIN_SECONDS,
    _NS,
    MAX_STRUCTURED_METADATA_BYTES,
    MAX_STRUCTURED_METADATA_COUNT,
    PUSH_PATH,
    DecodedEntry,
    LokiReceiver,
    PushError,
    _Faults,
    _Handler,
    _media_type,
    check_stream_labels,
    main,
    render_json_labels,
)
from tests.receiver_timing import WRITE_TIME_MARK, Arrival, ArrivalLog

__all__ = ["FastLokiReceiver", "LokiReceiverProcess", "Stream"]

Stream = tuple[str, list[int], list[str]]
"""One stream of a push as the fast path holds it: label string, timestamps (ns), lines."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_HEAD_CHARS = 48
_HEAD = itemgetter(slice(0, _HEAD_CHARS))
_LINE_START_SEQ = re.compile(r"\nseq=(\d+)")
_LINE_START_NUMBER = re.compile(r"\s|\d")
_JSON_TS_CHARS = re.compile(r"[0-9+-]*")


def _bulk_seq_numbers(lines: list[str]) -> list[str] | None:
    """The digits of :func:`tests.loki_receiver.seq_number` for the numbered ``lines``, found
    in bulk, or None when that cannot be done in bulk. Two shapes are read in bulk: a line that
    starts with ``seq=<digit>`` (its first ``seq=``: the number is the digits there), and a
    line without ``seq=`` that starts with neither a space nor a digit (unnumbered).

    Only each line's first :data:`_HEAD_CHARS` characters are searched; a number that reaches
    the end of that head might go on, so it sends the lines to the full path."""
    numbers = _head_numbers(lines)
    if numbers is not None and len(numbers) == len(lines):
        return numbers  # every line starts with seq=<digit>
    starts = list(map(str.startswith, lines, repeat("seq=")))
    numbered = list(compress(lines, starts))
    numbers = _head_numbers(numbered)
    if numbers is None or len(numbers) != len(numbered):
        return None  # a line lacks the digits, or holds "\nseq=<digit>"
    others = list(compress(lines, map(not_, starts)))
    if "seq=" in "\n".join(others) or any(map(_LINE_START_NUMBER.match, others)):
        return None
    return numbers


def _head_numbers(lines: list[str]) -> list[str] | None:
    """The digits after ``seq=`` at the start of each line that has them there, in order;
    None if a line's head holds a newline (a match might then not be at a line's start) or a
    number reaches the end of a line's head (it might go on)."""
    if not lines:
        return []
    heads = "\n".join(map(_HEAD, lines))
    if heads.count("\n") != len(lines) - 1:
        return None
    numbers = _LINE_START_SEQ.findall("\n" + heads)
    if numbers and max(map(len, numbers)) >= _HEAD_CHARS - 4:
        return None
    return numbers


def _utf8_bytes(lines: list[str]) -> int:
    """The lines' total size in UTF-8 (as the full receiver counts ``line_bytes``)."""
    if all(map(str.isascii, lines)):
        return sum(map(len, lines))
    return sum(len(line.encode("utf-8", "surrogateescape")) for line in lines)


_FDP = descriptor_pb2.FieldDescriptorProto
_Field = tuple[str, int, int, int, str]
"""A field of a view: name, number, label, type, message type name ("" for a scalar)."""


def _view_file(package: str, syntax: str,
               messages: dict[str, list[_Field]]) -> descriptor_pb2.FileDescriptorProto:
    view = descriptor_pb2.FileDescriptorProto(name=f"bench/{package}.proto", package=package,
                                              syntax=syntax)
    for name, fields in messages.items():
        message = view.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            message.field.add(name=field_name, number=number, label=label, type=kind,
                              type_name=f".{package}.{type_name}" if type_name else None)
    return view


def _build_views() -> tuple[type[Message], type[Message], type[Message]]:
    """``PushRequest`` as the fast path reads it: per stream, its entries merged into one
    message (proto3, so strings are checked as UTF-8); a proto2 view in which every entry
    *requires* a timestamp and a line, and every timestamp its seconds and nanos (each entry's
    structured metadata as raw pairs, to count and size them); and the same view with the
    nanos left out, for pushes of whole seconds (a proto3 encoder omits a zero ``nanos``)."""
    opt, rep, req = _FDP.LABEL_OPTIONAL, _FDP.LABEL_REPEATED, _FDP.LABEL_REQUIRED
    msg, string, raw = _FDP.TYPE_MESSAGE, _FDP.TYPE_STRING, _FDP.TYPE_BYTES
    int64, int32 = _FDP.TYPE_INT64, _FDP.TYPE_INT32
    merged = _view_file("pushmerged", "proto3", {
        "PushRequest": [("streams", 1, rep, msg, "Stream"), ("format", 2, opt, string, "")],
        "Stream": [("labels", 1, opt, string, ""), ("entries", 2, opt, msg, "Entries")],
        "Entries": [("timestamp", 1, opt, msg, "Timestamps"), ("line", 2, rep, string, ""),
                    ("structuredMetadata", 3, rep, msg, "Pair"), ("parsed", 4, rep, raw, "")],
        "Timestamps": [("seconds", 1, rep, int64, ""), ("nanos", 2, rep, int32, "")],
        "Pair": [("name", 1, opt, string, ""), ("value", 2, opt, string, "")],
    })
    views = [merged]
    for package, stamp in (("pushrequired", [("seconds", 1, req, int64, ""),
                                             ("nanos", 2, req, int32, "")]),
                           ("pushseconds", [("seconds", 1, req, int64, "")])):
        views.append(_view_file(package, "proto2", {
            "PushRequest": [("streams", 1, rep, msg, "Stream")],
            "Stream": [("entries", 2, rep, msg, "Entry")],
            "Entry": [("timestamp", 1, req, msg, "Timestamp"), ("line", 2, req, raw, ""),
                      ("structuredMetadata", 3, rep, raw, "")],
            "Timestamp": stamp,
        }))
    pool = descriptor_pool.DescriptorPool()
    for view in views:
        pool.AddSerializedFile(view.SerializeToString())
    merged_class, required_class, seconds_class = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{name}.PushRequest"))
        for name in ("pushmerged", "pushrequired", "pushseconds"))
    return merged_class, required_class, seconds_class


_MERGED, _REQUIRED, _SECONDS = _build_views()


def decode_protobuf_bulk(data: bytes, metadata: bool = False,
                         ) -> tuple[list[Stream], bool] | None:
    """A snappy-compressed protobuf push as streams, and whether any line may carry a write
    time (`` t=``); None when the fast path cannot prove its reading equal to the full
    decoder's (or the body is malformed: the full path answers).

    The proof: in the proto2 view every entry has a timestamp and a line, and every timestamp
    its seconds and nanos (``IsInitialized``); the merged view finds as many lines, seconds and
    nanos in all as there are entries; so each entry has exactly one of each, and the merged
    lists hold them entry by entry: what the full decoder reads (its last occurrence of a
    field, merged timestamps) is the same. A push of whole seconds (no entry has a ``nanos``:
    the merged view finds none) is proved the same way by the view without nanos, its nanos
    all 0.

    With ``metadata`` (a receiver that does not keep lines), entries may carry structured
    metadata: it is checked, not kept, by the full receiver's limits per entry, each entry's
    pairs sized by their encoding (at least their names' and values' bytes: within the limit
    there, within it exactly); an entry over a limit sends the push to the full path."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(data))
        view: Any = _MERGED()
        view.ParseFromString(raw)
        counted: Any = _REQUIRED()
        counted.ParseFromString(raw)
        whole_seconds = not counted.IsInitialized()
        if whole_seconds:
            counted = _SECONDS()
            counted.ParseFromString(raw)
    except (DecodeError, cramjam.DecompressionError):
        return None
    if not counted.IsInitialized():
        return None
    streams: list[Stream] = []
    for stream, merged in zip(counted.streams, view.streams, strict=True):
        n = len(stream.entries)
        entries = merged.entries
        lines = list(entries.line)
        seconds, nanos = list(entries.timestamp.seconds), list(entries.timestamp.nanos)
        if whole_seconds and nanos:
            return None
        if whole_seconds:
            nanos = [0] * n
        if len(lines) != n or len(seconds) != n or len(nanos) != n or entries.parsed:
            return None
        if entries.structuredMetadata and not (metadata and _metadata_within_limits(stream)):
            return None
        if n and (min(nanos) < 0 or max(nanos) >= _NS
                  or min(seconds) < _MIN_SECONDS or max(seconds) >= _MAX_SECONDS):
            return None  # out of range: the full path answers 400
        stamps = list(map(add, map(mul, seconds, repeat(_NS)), nanos))
        streams.append((merged.labels, stamps, lines))
    return streams, WRITE_TIME_MARK.encode() in raw


def _metadata_within_limits(stream: Any) -> bool:
    """Every entry of ``stream`` (the proto2 view) within the full receiver's structured
    metadata limits: pairs counted, and sized by their encoded bytes (an upper bound of the
    names' and values' bytes the full receiver adds up)."""
    pairs = [entry.structuredMetadata for entry in stream.entries]
    return (max(map(len, pairs)) <= MAX_STRUCTURED_METADATA_COUNT
            and max(sum(map(len, p)) for p in pairs) <= MAX_STRUCTURED_METADATA_BYTES)


def decode_json_bulk(data: bytes) -> tuple[list[Stream], bool] | None:
    """A JSON push as streams, and whether any line may carry a write time (`` t=``, or any
    ``\\u`` escape); None when any part is not the plain shape (the full path then decodes
    it, with its exact errors)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    raw_streams = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(raw_streams, list):
        return None
    streams: list[Stream] = []
    for raw in raw_streams:
        labels = raw.get("stream") if isinstance(raw, dict) else None
        values = raw.get("values") if isinstance(raw, dict) else None
        if (not isinstance(labels, dict) or not isinstance(values, list)
                or not all(isinstance(v, str) for v in labels.values())):
            return None
        if values and (set(map(type, values)) != {list} or set(map(len, values)) != {2}):
            return None
        stamps, lines = list(map(itemgetter(0), values)), list(map(itemgetter(1), values))
        if values and (set(map(type, stamps)) != {str} or set(map(type, lines)) != {str}):
            return None
        if not _JSON_TS_CHARS.fullmatch("".join(stamps)):
            return None
        try:
            ns = list(map(int, stamps))  # with only [0-9+-]: exactly Loki's base-10 int64 form
        except ValueError:
            return None
        if ns and (min(ns) < _INT64_MIN or max(ns) > _INT64_MAX):
            return None
        streams.append((render_json_labels(labels), ns, lines))
    return streams, WRITE_TIME_MARK.encode() in data or b"\\u" in data


class _FastHandler(_Handler):
    """The test receiver's endpoints, and ``GET /test/count`` and ``GET /test/timing``."""

    server: Any

    def do_GET(self) -> None:
        receiver = self.server.receiver
        path = urlsplit(self.path).path
        if path == "/test/count":
            self._json(200, receiver.count_and_last_arrival())
        elif path == "/test/timing":
            self._json(200, receiver.timing())
        else:
            super().do_GET()


class FastLokiReceiver(LokiReceiver):
    """:class:`LokiReceiver` with the bulk fast path and an arrival log (module docstring).

    Lines are not kept by default (``keep_lines=False``): a benchmark counts, it does not read.
    With ``fast_path=False`` every push takes the full receiver's path (still logged): the
    benchmarks' in-process reference.
    """

    handler_class = _FastHandler

    def __init__(self, *args: Any, keep_lines: bool = False, fast_path: bool = True,
                 **kw: Any) -> None:
        super().__init__(*args, keep_lines=keep_lines, **kw)
        self.fast_path = fast_path
        self._labels_checked: dict[str, tuple[str, str | None]] = {}
        self.fast_pushes = 0
        """Pushes the fast path recorded (the others went to the full receiver)."""

    def _reset_unlocked(self) -> None:
        super()._reset_unlocked()
        self.arrival_log = ArrivalLog()
        self._pending_numbers: list[list[str]] = []

    def received_seq_numbers(self, dedupe: bool = False) -> Counter[int]:
        with self._lock:
            self._fold_numbers()
        return super().received_seq_numbers(dedupe)

    def stats(self) -> dict[str, Any]:
        """The test receiver's stats, and ``fast_pushes``: how many the fast path recorded."""
        with self._lock:
            self._fold_numbers()
            fast = self.fast_pushes
        return {**super().stats(), "fast_pushes": fast}

    # -- the push endpoint --------------------------------------------------------------------

    def handle_push(
        self, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str], float]:
        decoded = self._fast_decode(headers, body)
        if decoded is None:
            return super().handle_push(headers, body)
        streams, timed = decoded
        keyed: list[Stream] = []
        for labels, stamps, lines in streams:
            canonical, problem = self._check_labels(labels)
            if problem is not None or (self.max_line_bytes and lines and max(map(len, lines))
                                       * 4 > self.max_line_bytes):
                return super().handle_push(headers, body)  # its 400, or an exact size check
            keyed.append((canonical, stamps, lines))
        h = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            lines_before = self._lines
            accepted: list[str] = []
            for key, stamps, lines in keyed:
                if lines:
                    self._record_bulk(key, stamps, lines)
                    accepted.extend(lines)
            self.fast_pushes += 1
            self._finish(204, h.get("content-type", ""), h.get("content-encoding", ""),
                         h.get("x-scope-orgid", ""), len(body), self._lines - lines_before, "")
            self.arrival_log.add(accepted if timed else (), self._lines,
                                 self._lines - self._unnumbered)
        return 204, "", {}, 0.0

    def _fast_decode(self, headers: Mapping[str, str], body: bytes,
                     ) -> tuple[list[Stream], bool] | None:
        if (not self.fast_path or self.fault_file is not None
                or self.reject_older_than_s is not None
                or self.creation_grace_period_s is not None):
            return None
        with self._lock:
            if self._faults != _Faults():
                return None
        h = {k.lower(): v for k, v in headers.items()}
        if h.get("content-encoding", "").strip().lower() not in ("", "snappy"):
            return None
        try:
            media = _media_type(h.get("content-type", ""))
        except PushError:
            return None
        decoded = decode_json_bulk(body) if media == "application/json" \
            else decode_protobuf_bulk(body, metadata=not self.keep_lines)
        if decoded is None or not decoded[0]:
            return None  # no stream at all: the full path answers 422
        return decoded

    def _check_labels(self, labels: str) -> tuple[str, str | None]:
        checked = self._labels_checked.get(labels)
        if checked is None:
            checked = check_stream_labels(labels, self.max_label_names)
            if len(self._labels_checked) < 10_000:
                self._labels_checked[labels] = checked
        return checked

    # -- records (call with the lock held) ----------------------------------------------------

    def _record_bulk(self, key: str, stamps: list[int], lines: list[str]) -> None:
        """Record one stream's entries as :meth:`LokiReceiver._record` does: in bulk when no
        entry is a duplicate and the lines' numbers are found in bulk, else entry by entry."""
        n = len(lines)
        fingerprints = set(map(hash, zip(repeat(key), stamps, lines)))
        numbers = _bulk_seq_numbers(lines) if len(fingerprints) == n else None
        if numbers is None or not self._seen.isdisjoint(fingerprints):
            self._fold_numbers()
            LokiReceiver._record(self, [(key, list(map(DecodedEntry, stamps, lines)))])
            return
        if self.keep_lines:
            self._streams.setdefault(key, []).extend(map(DecodedEntry, stamps, lines))
        self._seen |= fingerprints
        self._pending_numbers.append(numbers)
        self._unnumbered += n - len(numbers)
        self._line_bytes += _utf8_bytes(lines)
        self._lines += n

    def _fold_numbers(self) -> None:
        """Count the sequence numbers the fast path set aside (before anything reads or
        updates the counters): all of them fresh, so in the raw and the deduplicated count."""
        for numbers in self._pending_numbers:
            ints = list(map(int, numbers))
            self._seq_raw.update(ints)
            self._seq_dedup.update(ints)
        self._pending_numbers.clear()

    def _record(self, accepted: list[tuple[str, list[DecodedEntry]]]) -> int:
        # The full path's record (a push the fast path handed over), logged as it arrived.
        self._fold_numbers()
        total = super()._record(accepted)
        self.arrival_log.add([e.line for _, entries in accepted for e in entries],
                             self._lines, self._lines - self._unnumbered)
        return total

    # -- queries ------------------------------------------------------------------------------

    def count_and_last_arrival(self) -> dict[str, Any]:
        """``{"lines", "numbered", "last_arrival"}``: accepted lines, numbered lines, and the
        monotonic time of the last accepted push."""
        with self._lock:
            return {"lines": self._lines, "numbered": self._lines - self._unnumbered,
                    "last_arrival": self.arrival_log.last_arrival}

    @property
    def count(self) -> int:
        """Lines accepted so far."""
        return self.line_count

    @property
    def numbered(self) -> int:
        """Numbered lines accepted so far (duplicates included)."""
        with self._lock:
            return self._lines - self._unnumbered

    @property
    def last_arrival(self) -> float:
        """Monotonic time of the last accepted push (0.0 before any)."""
        with self._lock:
            return self.arrival_log.last_arrival

    @property
    def latencies_ms(self) -> list[float]:
        """Write-to-arrival delays of the lines carrying `` t=<ns>``, in arrival order."""
        with self._lock:
            return list(self.arrival_log.latencies_ms)

    @property
    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrival_log.arrivals)

    def timing(self) -> dict[str, Any]:
        """The arrival log: ``{"arrivals": [[monotonic, lines, numbered, delays], ...],
        "latencies_ms": [...]}``."""
        with self._lock:
            log = self.arrival_log
            return {"arrivals": [[a.monotonic, a.lines, a.numbered, a.delays]
                                 for a in log.arrivals],
                    "latencies_ms": list(log.latencies_ms)}


class LokiReceiverProcess:
    """A :class:`FastLokiReceiver` in its own process, read over HTTP on loopback.

    ``start()`` spawns it and waits for its port; ``count``, ``numbered``, ``last_arrival``,
    ``latencies_ms``, ``arrivals``, ``stats()`` and ``received_seq_numbers()`` ask it (the same
    names as :class:`FastLokiReceiver`'s); ``fail_unavailable()`` and ``clear_faults()`` set its
    faults; ``stop()`` ends it (SIGTERM, then kill). ``pid`` is its process, for its CPU time.
    """

    def __init__(self, host: str = "127.0.0.1", *, keep_lines: bool = False) -> None:
        self.host = host
        self.keep_lines = keep_lines
        self.port = 0
        self.url = ""
        """``http://host:port`` once started."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def start(self) -> LokiReceiverProcess:
        argv = [sys.executable, str(Path(__file__).resolve()), "--host", self.host]
        if not self.keep_lines:
            argv.append("--no-keep-lines")
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError("the receiver process did not start")
        self.port = int(line)
        self.url = f"http://{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    @property
    def push_url(self) -> str:
        return f"{self.url}{PUSH_PATH}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("receiver process not started")
        return self._proc.pid

    def _call(self, method: str, path: str, doc: object = None) -> Any:
        body = None if doc is None else json.dumps(doc).encode()
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                try:
                    self._conn.request(method, path, body=body,
                                       headers={"Content-Type": "application/json"})
                    response = self._conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return json.loads(data)

    @property
    def count(self) -> int:
        """Lines accepted so far."""
        return int(self._call("GET", "/test/count")["lines"])

    line_count = count

    @property
    def numbered(self) -> int:
        """Numbered lines accepted so far (duplicates included)."""
        return int(self._call("GET", "/test/count")["numbered"])

    @property
    def last_arrival(self) -> float:
        """Monotonic time (this machine's clock, shared by processes) of the last push."""
        return float(self._call("GET", "/test/count")["last_arrival"])

    def _timing(self) -> dict[str, Any]:
        return dict(self._call("GET", "/test/timing"))

    @property
    def latencies_ms(self) -> list[float]:
        """Write-to-arrival delays of the lines carrying `` t=<ns>``, in arrival order."""
        return [float(v) for v in self._timing()["latencies_ms"]]

    @property
    def arrivals(self) -> list[Arrival]:
        return [Arrival(float(t), int(n), int(k), int(d)) for t, n, k, d
                in self._timing()["arrivals"]]

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/test/stats"))

    def received_seq_numbers(self, dedupe: bool = False) -> Counter[int]:
        seq = self._call("GET", "/test/seq")["dedup" if dedupe else "raw"]
        return Counter({int(k): int(v) for k, v in seq.items()})

    def fail_unavailable(self) -> None:
        """Answer 503 until :meth:`clear_faults`."""
        self._call("POST", "/test/fault", {"unavailable": True})

    def clear_faults(self) -> None:
        self._call("POST", "/test/fault", {"clear": True})

    def __enter__(self) -> LokiReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    gc.set_threshold(100_000, 50, 1000)  # millions of live objects: collect them seldom
    sys.exit(main(receiver_class=FastLokiReceiver))
