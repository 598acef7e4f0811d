"""A hand-written encoder for Loki's ``PushRequest`` and its snappy block framing.

The wire schema is Loki's ``pkg/push/push.proto`` (package ``logproto``)::

    PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
    StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                       repeated LabelPairAdapter structuredMetadata = 3;
                       repeated LabelPairAdapter parsed = 4; /* read path only */ }
    LabelPairAdapter { string name = 1; string value = 2; }
    Timestamp        { int64 seconds = 1; int32 nanos = 2; }

What this encoder writes, and why:

- Only ``streams`` (field 1). ``format`` and ``hash`` are left out, as Promtail and the Grafana
  agents leave them out: Loki computes the hash itself, and an absent ``format`` means "loki".
- Streams without entries are skipped (Loki would accept and ignore them).
- Every entry carries its timestamp message, even at the epoch (gogoproto ``nullable=false``);
  inside it, ``seconds`` and ``nanos`` are written only when non-zero, and empty strings (an
  empty line) are left out, as proto3 does: the output is byte-for-byte what the protobuf
  runtime writes for the same message.
  A negative ``ts_ns`` is split with floor division, so ``nanos`` stays in ``[0, 1e9)``.
- Strings are UTF-8. A line or label that cannot be encoded strictly (a lone surrogate) has
  the offending code points replaced by ``?``; callers escape non-UTF-8 input before this point.
- Entries are written in the order given: sorting by time is the caller's choice
  (:mod:`logcap.sinks.loki.request` sorts).

Two implementations write the same bytes (the tests compare them with each other and with the
protobuf runtime): :func:`encode_push_request_native`, compiled from ``_protobuf.c`` when the
package was built with it, and :func:`encode_push_request_python`, this module's code, the
fallback and the spec. :func:`encode_push_request` is the compiled one when it is there
(:data:`NATIVE`). The compiled one takes exact shapes: an entry is a ``tuple``, ``ts_ns`` an
``int``, the metadata a tuple or list of 2-item tuples or lists, strings ``str`` (anything
else is a ``TypeError``). Both raise ``OverflowError`` for seconds beyond ``int64``.

Speed: this runs once per batch on the hot path. The compiled encoder reads the streams'
attributes, plans every entry in one walk (sizes, split timestamps, the UTF-8 of each ``str``:
an ASCII one read in place) and writes into one ``bytes`` of the exact size: about 0.06 µs per
200-byte entry, ~460 instructions against the Python one's 5,700 (docs/ARCHITECTURE.md has the
numbers).
The Python one builds a list of ``bytes`` pieces joined once, looks up length prefixes in
precomputed tables (field tag included; the 14-bit ones built on its first call, not on
import), re-encodes ``seconds`` only when the second changes, and spells the ``nanos`` varint
from 14-bit lookup tables instead of a loop; each entry extends the piece list with one
tuple: about 0.5 µs per 200-byte entry. It writes structured
metadata from one request's cache of encoded (name, value) fields: an entry's metadata is a
join of looked-up pieces, and only a pair not seen yet in the request (a call id) is encoded.

The request body Loki expects is the serialized message compressed with snappy's *block* format,
not the framed stream format: :func:`compress_snappy`, which is the compiled compressor
:mod:`logcap.sinks.loki._snappy` (``_snappy.c``, the reference design: 64 KiB fragments, a hash
table of 4-byte sequences, greedy matches; it releases the GIL from 16 KiB) when it is built.
When it is not (an install without a C compiler), the fallback is a pure-Python *literal-only*
encoding: valid snappy that Loki decodes the same way, costing almost no CPU but not compressing
(a body as large as the payload: 3.3x a compressed one for 200-byte log lines). That fallback
was chosen over importing cramjam when installed: it needs no dependency, has one behaviour
everywhere it runs, and is trivially correct; its cost is bandwidth.
:data:`SNAPPY_COMPILED` says which is in use; the sink logs it when it starts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import NamedTuple, Protocol

_compress_native: Callable[[bytes], bytes] | None
try:
    from logcap.sinks.loki._snappy import compress as _compress_native
except ImportError:  # not built: compress_snappy falls back to literals only
    _compress_native = None

try:
    from logcap.sinks.loki import _protobuf
except ImportError:  # built without the compiled module: the Python encoder does the work
    _protobuf = None  # type: ignore[assignment]

__all__ = [
    "NATIVE",
    "SNAPPY_COMPILED",
    "EncodedPush",
    "EntryLike",
    "StreamLike",
    "compress_snappy",
    "encode_push_request",
    "encode_push_request_native",
    "encode_push_request_python",
    "encode_uvarint",
    "snappy_literals",
]

_NANOS_PER_S = 1_000_000_000
_SMALL_LIMIT = 1 << 14  # values below this have a one- or two-byte varint


EntryLike = tuple[int, str, tuple[tuple[str, str], ...]]
"""One entry as the encoder reads it, unpacked: ``(ts_ns, line, metadata)``. The sink makes
plain tuples (built in C, and unpacked fastest); a ``LokiEntry`` is the same triple, named."""


class StreamLike(Protocol):
    """What the encoder reads from one stream (``LokiStream`` satisfies it)."""

    @property
    def labels(self) -> str: ...

    @property
    def entries(self) -> Sequence[EntryLike]: ...


class EncodedPush(NamedTuple):
    """A serialized (uncompressed) ``PushRequest`` and what it holds."""

    payload: bytes
    streams: int
    entries: int
    line_bytes: int
    metadata_chars: int
    """Code points of the structured metadata's names and values (the sink's ``batch_bytes``
    counts them with the lines' characters)."""


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64 as a protobuf varint."""
    if value < 128:
        if value < 0:
            raise ValueError(f"uvarint must be non-negative, got {value}")
        return _LAST7[value]
    if value < 16384:  # 2**14
        return _CONT7[value & 127] + _LAST7[value >> 7]
    if value < 34359738368:  # 2**35
        cont14 = _wide_tables().cont14
        if value < 2097152:  # 2**21
            return cont14[value & 16383] + _LAST7[value >> 14]
        if value < 268435456:  # 2**28
            return cont14[value & 16383] + _CONT7[(value >> 14) & 127] + _LAST7[value >> 21]
        return cont14[value & 16383] + cont14[(value >> 14) & 16383] + _LAST7[value >> 28]
    return _make_varint(value)


def _int64_varint(value: int) -> bytes:
    """An ``int64`` field's varint: negative values as their 64-bit two's complement."""
    if value < 0:
        value += 1 << 64
    return encode_uvarint(value)


def _make_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# 7 bits as a final varint byte; 7 bits as a byte with the continuation bit. With the 14-bit
# table below, any varint below 2**35 is a few lookups and concatenations.
_LAST7: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(128))
_CONT7: tuple[bytes, ...] = tuple(bytes((i | 0x80,)) for i in range(128))
# Tag and length of a length-delimited field 1 (labels, timestamp, stream) for the short
# lengths where it is used per entry. Proto3 leaves an empty string field out: a zero length
# maps to no header at all (the labels, a metadata name).
_FIELD1_LEN: tuple[bytes, ...] = tuple(b"\x0a" + _make_varint(i) for i in range(128))
_STR1_HDR: tuple[bytes, ...] = (b"", *_FIELD1_LEN[1:])


class _WideTables(NamedTuple):
    """The tables indexed by a 14-bit value (16,384 ``bytes`` each, ~1.5 MiB together).

    Only the Python encoder reads them (and :func:`encode_uvarint` above 2**14), so they are
    built on its first call rather than when the module is imported: an agent running the
    compiled encoder never builds them.
    """

    cont14: tuple[bytes, ...]
    """14 bits as two varint bytes that both carry the continuation bit."""
    field2_len: tuple[bytes, ...]
    """Tag and length of a field 2 (entries, line) for every length below 2**14."""
    str2_hdr: tuple[bytes, ...]
    """``field2_len`` with no header for a zero length (an empty line or metadata value)."""


@functools.cache
def _wide_tables() -> _WideTables:
    field2_len = tuple(b"\x12" + _make_varint(i) for i in range(_SMALL_LIMIT))
    return _WideTables(
        cont14=tuple(bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(_SMALL_LIMIT)),
        field2_len=field2_len,
        str2_hdr=(b"", *field2_len[1:]),
    )


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _str_field(table: tuple[bytes, ...], tag: bytes, data: bytes) -> bytes:
    n = len(data)
    return (table[n] if n < len(table) else tag + encode_uvarint(n)) + data


# Metadata names repeat (trace_id, call_id...): their encoded ``name`` field is cached.
_NAME_FIELDS: dict[str, bytes] = {}
_NAME_CACHE_SIZE = 1024


def _name_field(name: str) -> bytes:
    name_field = _NAME_FIELDS.get(name)
    if name_field is None:
        name_field = _str_field(_STR1_HDR, b"\x0a", _utf8(name))
        if len(_NAME_FIELDS) >= _NAME_CACHE_SIZE:
            _NAME_FIELDS.clear()
        _NAME_FIELDS[name] = name_field
    return name_field


class _PairFields(dict[tuple[str, str], bytes]):
    """One request's encoded ``structuredMetadata`` fields (field 3, tag and length included)
    by (name, value) pair: pairs repeat from line to line (``("pid", "2311")``,
    ``("level", "info")``), so each distinct one is encoded once per request, and an entry's
    metadata is the join of its pairs' fields, looked up in C."""

    def __missing__(self, pair: tuple[str, str]) -> bytes:
        # a value seen once (a call id) pays this: kept to one Python call
        name, value = pair
        name_field = _NAME_FIELDS.get(name) or _name_field(name)
        try:
            vb = value.encode()
        except UnicodeEncodeError:
            vb = value.encode("utf-8", "replace")
        lv = len(vb)
        vh = _wide_tables().str2_hdr[lv] if lv < _SMALL_LIMIT else b"\x12" + encode_uvarint(lv)
        size = len(name_field) + len(vh) + lv
        field = b"".join((b"\x1a", _LAST7[size] if size < 128 else encode_uvarint(size),
                          name_field, vh, vb))
        self[pair] = field
        return field


def _timestamp_prefixes(seconds: int) -> tuple[bytes, ...]:
    """Timestamp-field prefixes for one second, by the byte width of its ``nanos`` varint.

    Index 0: the whole field for ``nanos == 0`` (no nanos field). Index k in 1..5: tag, length,
    the seconds field and the nanos tag, to be followed by a k-byte nanos varint.
    """
    if not -(1 << 63) <= seconds < 1 << 63:
        raise OverflowError(f"ts_ns is out of range: its seconds exceed int64 ({seconds})")
    sec = b"\x08" + _int64_varint(seconds) if seconds else b""
    with_tag = sec + b"\x10"
    return (
        _FIELD1_LEN[len(sec)] + sec,
        *(_FIELD1_LEN[len(with_tag) + k] + with_tag for k in range(1, 6)),
    )


def _timestamp_field(prefixes: tuple[bytes, ...], n: int) -> bytes:
    """The timestamp field (generic path) for nanos ``n`` given its second's prefixes."""
    if not n:
        return prefixes[0]
    nanos = encode_uvarint(n)
    return prefixes[len(nanos)] + nanos


def encode_push_request_python(streams: Iterable[StreamLike]) -> EncodedPush:
    """Serialize ``streams`` as a ``logproto.PushRequest`` (not compressed).

    Returns the payload with the number of streams and entries written, the total UTF-8
    size of the lines (what Loki counts as ingested line bytes) and the code points of the
    metadata's names and values.
    """
    parts: list[bytes] = []
    ap = parts.append
    ext = parts.extend
    cont14, f2len, linehdr = _wide_tables()
    cont7, last7 = _CONT7, _LAST7
    small = _SMALL_LIMIT
    ns = _NANOS_PER_S
    pair_field = _PairFields().__getitem__
    join = b"".join
    n_streams = 0
    n_entries = 0
    line_bytes = 0
    metadata_chars = 0
    for stream in streams:
        entries = stream.entries
        if not entries:
            continue
        n_streams += 1
        n_entries += len(entries)
        slot = len(parts)
        ap(b"")  # the stream's tag and length, filled in once its size is known
        labels = _str_field(_STR1_HDR, b"\x0a", _utf8(stream.labels))
        ap(labels)
        size = len(labels)
        last_s: int | None = None
        prefixes: tuple[bytes, ...] = ()
        p3 = p4 = p5 = b""
        w3 = w4 = w5 = 0  # the timestamp field's full width with a 3-, 4-, 5-byte nanos varint
        for ts_ns, text, metadata in entries:
            s, n = divmod(ts_ns, ns)
            if s != last_s:
                last_s = s
                prefixes = _timestamp_prefixes(s)
                p3, p4, p5 = prefixes[3], prefixes[4], prefixes[5]
                w3, w4, w5 = len(p3) + 3, len(p4) + 4, len(p5) + 5
            try:
                line = text.encode()
            except UnicodeEncodeError:
                line = text.encode("utf-8", "replace")
            ll = len(line)
            line_bytes += ll
            lh = linehdr[ll] if ll < small else b"\x12" + encode_uvarint(ll)
            if metadata:
                if not n:
                    ts = prefixes[0]
                elif n >= 268435456:
                    ts = p5 + cont14[n & 16383] + cont14[(n >> 14) & 16383] + last7[n >> 28]
                else:
                    ts = _timestamp_field(prefixes, n)
                md = join(map(pair_field, metadata))
                metadata_chars += sum(map(len, chain.from_iterable(metadata)))
                el = len(ts) + len(lh) + ll + len(md)
                eh = f2len[el] if el < small else b"\x12" + encode_uvarint(el)
                ext((eh, ts, lh, line, md))
            # The common cases spell the nanos varint from tables, piece by piece: extending
            # the list with one tuple beats concatenating the pieces.
            elif n >= 268435456:  # 2**28: a 5-byte nanos varint
                el = w5 + len(lh) + ll
                eh = f2len[el] if el < small else b"\x12" + encode_uvarint(el)
                ext((eh, p5, cont14[n & 16383], cont14[(n >> 14) & 16383], last7[n >> 28],
                     lh, line))
            elif n >= 2097152:  # 2**21: 4 bytes
                el = w4 + len(lh) + ll
                eh = f2len[el] if el < small else b"\x12" + encode_uvarint(el)
                ext((eh, p4, cont14[n & 16383], cont7[(n >> 14) & 127], last7[n >> 21],
                     lh, line))
            elif n >= 16384:  # 2**14: 3 bytes
                el = w3 + len(lh) + ll
                eh = f2len[el] if el < small else b"\x12" + encode_uvarint(el)
                ext((eh, p3, cont14[n & 16383], last7[n >> 14], lh, line))
            else:  # 0, 1 or 2 bytes (whole seconds are common: Podman's log timestamps)
                ts = _timestamp_field(prefixes, n)
                el = len(ts) + len(lh) + ll
                eh = f2len[el] if el < small else b"\x12" + encode_uvarint(el)
                ext((eh, ts, lh, line))
            size += len(eh) + el
        parts[slot] = b"\x0a" + encode_uvarint(size)
    return EncodedPush(b"".join(parts), n_streams, n_entries, line_bytes, metadata_chars)


NATIVE = _protobuf is not None
"""Whether the compiled encoder was built (:func:`encode_push_request` is then that one)."""


def encode_push_request_native(streams: Iterable[StreamLike]) -> EncodedPush:
    """:func:`encode_push_request_python`'s result, computed in C (``_protobuf.c``).

    Raises ``ImportError`` when the package was built without it (:data:`NATIVE` is false).
    """
    if _protobuf is None:
        raise ImportError("logcap.sinks.loki._protobuf was not built")
    return EncodedPush._make(_protobuf.encode_push_request(streams))


encode_push_request = encode_push_request_native if NATIVE else encode_push_request_python
"""Serialize ``streams`` as a ``logproto.PushRequest`` (not compressed): the compiled encoder
when built, else the Python one (the same bytes)."""


_SNAPPY_MAX_INPUT = (1 << 32) - 1


def snappy_literals(payload: bytes) -> bytes:
    """``payload`` in snappy's block format as one literal (no copies): the uncompressed length
    as a varint, a tag byte, then the bytes. The tag holds ``(n - 1) << 2`` for n <= 60 bytes;
    above, ``(59 + w) << 2`` followed by ``n - 1`` in w = 1..4 little-endian bytes. Valid for
    any decoder, not compressed: the fallback when the compiled compressor is not built."""
    if not payload:
        return b"\x00"
    if len(payload) > _SNAPPY_MAX_INPUT:
        raise ValueError("snappy: input longer than 2**32 - 1 bytes")
    n = len(payload) - 1
    if n < 60:
        tag = bytes((n << 2,))
    else:
        width = (n.bit_length() + 7) // 8
        tag = bytes(((59 + width) << 2,)) + n.to_bytes(width, "little")
    return b"".join((encode_uvarint(len(payload)), tag, payload))


SNAPPY_COMPILED = _compress_native is not None
"""Whether :func:`compress_snappy` is the compiled compressor (else the literal-only fallback):
the sink logs which when it starts."""


def compress_snappy(payload: bytes) -> bytes:
    """Snappy *block* format (no stream framing), as Loki's push endpoint decodes it: compressed
    by the compiled module, or literals only when it is not built (:data:`SNAPPY_COMPILED`)."""
    if _compress_native is not None:
        return _compress_native(payload)
    return snappy_literals(payload)
