"""Batch <-> bytes: the body of one disk-buffer record, and its compression and encryption.

A record body holds one batch, a ``list[Entries]``. Every field of every
:class:`~logcap.messages.Entries` round-trips exactly: ``source``, ``stream``, ``labels``,
``lines`` (any ``str``, including newlines and lone surrogates from escaped non-UTF-8 input),
``ts_ns``, ``token``, ``bytes`` and the per-line ``timestamps``, ``line_labels`` and
``metadata`` (``ack_to``, an in-process address, is not stored: decoded entries have none).

Body layout (little-endian)::

    offset  size        field
    0       4           magic: b"LCE1" (version 1) or b"LCE3" (version 3); b"LCE2"
                        (version 2) is still read
    4       4           u32 meta_len
    8       meta_len    meta: JSON (ASCII, so lone surrogates survive as \\udcXX escapes), a list
                        with one item per entry:
                        [source, stream, [[name, value], ...], ts_ns, bytes,
                         token, line_count]
                        token: see "Tokens" below; versions 2 and 3 add an 8th item,
                        the per-line fields (below)
    ...     4 * N       u32 length of each string in code points, N = the strings of the
                        block: entry by entry, its lines, then (version 3) its metadata's values
    ...     rest        the strings concatenated, UTF-8 with ``surrogatepass``

Versions. A batch none of whose entries has per-line fields is written as version 1, exactly
as before per-line fields existed (so a logcap rolled back to that version still reads it);
otherwise as version 3, whose meta items have an 8th item, an object with the per-line fields
the entry has (an absent key is None): ``"ts": [ns, ...]`` (one per line); ``"labels":
{"t": [[[name, value], ...], ...], "i": [k, ...]}``, the distinct label sets and each line's
index among them (a set decodes to one tuple, shared by its lines); ``"md": {"t": [[name,
...], ...], "i": [k, ...], "n": count}``, the distinct lists of metadata names, each line's
index among them, and how many values the entry's lines have in all: they follow its lines in
the line block, line by line in the names' order. So a line's fields cost a few indexes in
the JSON and its values go through the line block (compiled: no JSON string per value).
Version 2 (2026-11 to 2026-12) spelled every line's pairs out in the JSON, ``"labels":
[[[name, value], ...], ...], "md": [...]`` (each list as long as the entry's lines): five
times the CPU of version 3 to decode an ``opensips`` pipeline's entries (5.4 against 1.0 µs
per entry, 3.8 against 1.1 to encode). Every version decodes.

Tokens (:class:`~logcap.origin.ReadToken`; encoded by :func:`token_to_wire`, parsed by
:func:`token_from_wire` and nowhere else). Two forms, told apart by their length:

* 5 items, ``[source, key, start, end, epoch]`` with ``key = "<generation>|<dev>:<ino>|<fp>"``:
  a file token (kind ``file``, stream :class:`~logcap.origin.FileStream` ``(dev, ino, fp)``).
  This is the only form written before typed tokens, and it is still written for file tokens,
  so records decode both ways (an older logcap reads a newer buffer). An old key of another
  shape decodes as a file token without a stream identity (``generation`` = the key), which is
  what it was: nothing to deduplicate or resume by.
* 7 items, ``[source, kind, generation, stream, start, end, epoch]``, ``stream`` a JSON list of
  ints and strings or null: every other token.

The lines are not escaped or quoted one by one: the lengths and the text after the meta are the
*line block* (:mod:`logcap.state.buffer.line_block`), written and read in one call each (compiled
when built: per line a copy and the ``str``, no Python code).

:class:`PayloadCodec` turns a batch into a record payload and back: encode, compress into one
zstd frame (content size on, level from the config; no content checksum since 2026-12: the
record's BLAKE2b covers the payload and is verified on every read, and frames written with one
still decompress), then, with a cipher,
seal with AES-256-GCM (:mod:`logcap.state.buffer.crypto`), the record's seq, line count and
timestamp range being the associated data (a record cannot be moved to another seq unnoticed).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from logcap.messages import Entries
from logcap.origin import FILE_KIND, FileStream, ReadToken, StreamId
from logcap.state.buffer import line_block
from logcap.state.buffer.crypto import Cipher, DecryptionError

__all__ = [
    "BODY_MAGIC",
    "BODY_MAGIC_V2",
    "BODY_MAGIC_V3",
    "DEFAULT_COMPRESSION_LEVEL",
    "CodecError",
    "EncodedBatch",
    "PayloadCodec",
    "batch_line_count",
    "batch_time_range",
    "decode_batch",
    "encode_batch",
    "entries_time_range",
    "token_from_wire",
    "token_to_wire",
]

BODY_MAGIC = b"LCE1"
BODY_MAGIC_V2 = b"LCE2"
BODY_MAGIC_V3 = b"LCE3"
DEFAULT_COMPRESSION_LEVEL = 1
"""zstd level of the segments. Level 1 rather than 3: on 5,000-line batches of log lines it
compresses in 0.73-0.83 of the instructions of level 3 (cachegrind: 5.5 k -> 4.0 k per line
of bench/buffer_append.py's lines, 810 -> 670 of e2e_loki.py's), at a ratio from 4 % lower
(dpkg.log 11.1 against 11.3, apt's term.log 7.0 against 7.3) to 4 % higher (buffer_append's
lines 4.5 against 4.3); compression is most of what an append costs."""
_PREFIX = struct.Struct("<4sI")
_AAD = struct.Struct("<8sQIqq")
_AAD_LABEL = b"LCBUF001"
_META_FIELDS = 7
_META_FIELDS_V2 = 8
_FILE_TOKEN_FIELDS = 5
_TOKEN_FIELDS = 7


class CodecError(ValueError):
    """A record body that does not decode (a bug or an unknown version, never plain damage:
    damage is caught by the record checksum before decoding)."""


def batch_line_count(batch: Sequence[Entries]) -> int:
    """Total lines of a batch."""
    return sum(len(entries.lines) for entries in batch)


def entries_time_range(entries: Entries) -> tuple[int, int]:
    """``(min, max)`` of an entry's line timestamps in ns (its lines must not be empty)."""
    if entries.timestamps is not None:
        return min(entries.timestamps), max(entries.timestamps)
    return entries.ts_ns, entries.ts_ns + len(entries.lines) - 1


def batch_time_range(batch: Sequence[Entries]) -> tuple[int, int]:
    """``(min, max)`` line timestamps of a batch in ns (:meth:`Entries.timestamp`);
    ``(0, 0)`` when the batch has no lines."""
    ranges = [entries_time_range(entries) for entries in batch if entries.lines]
    if not ranges:
        return 0, 0
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def _file_stream(stream: StreamId | None) -> FileStream | None:
    """``stream`` as a :class:`FileStream` if it has that shape (ints are exact ints)."""
    if stream is None or len(stream) != 3:
        return None
    dev, ino, fingerprint = stream
    if type(dev) is not int or type(ino) is not int or not isinstance(fingerprint, str):
        return None
    return FileStream(dev, ino, fingerprint)


def token_to_wire(token: ReadToken) -> list[Any]:
    """The JSON form of a token (module docstring, "Tokens")."""
    stream = _file_stream(token.stream)
    if token.kind == FILE_KIND and stream is not None and "|" not in token.generation:
        key = f"{token.generation}|{stream.dev}:{stream.ino}|{stream.fingerprint}"
        return [token.source, key, token.start, token.end, token.epoch]
    wire_stream = None if token.stream is None else list(token.stream)
    return [token.source, token.kind, token.generation, wire_stream, token.start, token.end,
            token.epoch]


def _stream_from_wire(kind: str, value: Any) -> StreamId | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(v, str) or type(v) is int for v in value):
        raise CodecError(f"malformed stream identity {str(value)[:40]}")
    stream = tuple(value)
    return (_file_stream(stream) or stream) if kind == FILE_KIND else stream


def token_from_wire(wire: Any) -> ReadToken:
    """Inverse of :func:`token_to_wire`; also reads the tokens of older records."""
    if not isinstance(wire, list) or len(wire) not in (_FILE_TOKEN_FIELDS, _TOKEN_FIELDS):
        raise CodecError("malformed read token")
    if len(wire) == _TOKEN_FIELDS:
        source, kind, generation, stream, start, end, epoch = wire
        return ReadToken(source, kind, _stream_from_wire(kind, stream), start, end, generation,
                         epoch)
    source, key, start, end, epoch = wire
    generation, _, rest = key.partition("|")
    inode, sep, fingerprint = rest.partition("|")
    dev, colon, ino = inode.partition(":")
    try:
        stream = FileStream(int(dev), int(ino), fingerprint) if sep and colon else None
    except ValueError:
        stream = None
    if stream is None:
        return ReadToken(source, FILE_KIND, None, start, end, key, epoch)
    return ReadToken(source, FILE_KIND, stream, start, end, generation, epoch)


def _per_line_fields(entries: Entries, values: list[str]) -> dict[str, Any] | None:
    """The version-3 meta item of an entry's per-line fields (module docstring); None when it
    has none. The metadata's values are appended to ``values`` (they go to the line block)."""
    fields: dict[str, Any] = {}
    if entries.timestamps is not None:
        fields["ts"] = entries.timestamps
    if entries.line_labels is not None:
        fields["labels"] = _indexed(entries.line_labels)
    if entries.metadata is not None:
        before = len(values)
        md = entries.metadata
        table, index = line_block.split_pair_sets(md if type(md) is list else list(md), values)
        fields["md"] = {"t": table, "i": index, "n": len(values) - before}
    return fields or None


def _indexed(sets: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Per-line tuples (label sets, metadata names) as a table of the distinct ones and each
    line's index in it."""
    table: dict[tuple[Any, ...], int] = {}
    index = [table.setdefault(labels, len(table)) for labels in sets]
    return {"t": list(table), "i": index}


def encode_batch(batch: Sequence[Entries]) -> bytes:
    """Serialise a batch (see the module docstring for the layout and the versions)."""
    meta: list[list[Any]] = []
    extras: list[dict[str, Any] | None] = []
    blocks: list[str] = []
    for entries in batch:
        meta.append([
            entries.source, entries.stream, [list(pair) for pair in entries.labels],
            entries.ts_ns, entries.bytes, token_to_wire(entries.token), len(entries.lines),
        ])
        blocks.extend(entries.lines)
        extras.append(_per_line_fields(entries, blocks))
    magic = BODY_MAGIC
    if any(fields is not None for fields in extras):
        magic = BODY_MAGIC_V3
        for item, fields in zip(meta, extras, strict=True):
            item.append(fields or {})
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("ascii")
    return line_block.pack(_PREFIX.pack(magic, len(meta_bytes)) + meta_bytes, blocks)


def _label_lists(value: Any, count: int, what: str) -> list[tuple[tuple[str, str], ...]] | None:
    """Version 2's per-line pairs as JSON decoded them (lists) as tuples, one set per line."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != count:
        raise CodecError(f"per-line {what} do not match the entry's {count} lines")
    return _pair_sets(value, what)


def _pair_sets(value: list[Any], what: str) -> list[tuple[tuple[str, str], ...]]:
    """JSON's lists of ``[name, value]`` lists as tuples of pairs, checked in bulk: each a
    list of pairs of two strings."""
    try:
        sets = [tuple(map(tuple, pairs)) for pairs in value]
    except TypeError as exc:  # a set, or a pair, that is not a list
        raise CodecError(f"malformed per-line {what}") from exc
    pairs = list(chain.from_iterable(sets))
    if pairs and (set(map(len, pairs)) != {2}
                  or set(map(type, chain.from_iterable(pairs))) != {str}):
        raise CodecError(f"malformed per-line {what}: not pairs of strings")
    return sets


def _index(value: Any, count: int, size: int, what: str) -> list[int]:
    """A version-3 per-line index: ``count`` ints, each below ``size``."""
    index = value.get("i") if isinstance(value, dict) else None
    if not isinstance(index, list) or len(index) != count:
        raise CodecError(f"per-line {what} do not match the entry's {count} lines")
    if index and (set(map(type, index)) != {int} or min(index) < 0 or max(index) >= size):
        raise CodecError(f"per-line {what}: an index out of the table")
    return index


def _indexed_sets(value: Any, count: int) -> list[tuple[tuple[str, str], ...]] | None:
    """Version 3's per-line labels: the table's sets, line by line (a set is one tuple,
    shared by the lines that have it)."""
    if value is None:
        return None
    table = value.get("t") if isinstance(value, dict) else None
    if not isinstance(table, list):
        raise CodecError("malformed per-line labels")
    sets = _pair_sets(table, "labels")
    return list(map(sets.__getitem__, _index(value, count, len(sets), "labels")))


def _indexed_metadata(value: Any, count: int, values: list[str],
                      ) -> list[tuple[tuple[str, str], ...]] | None:
    """Version 3's per-line metadata: each line's names (a shape of the table) zipped with
    the next of ``values`` (its share of the line block, all of it used)."""
    if value is None:
        return None
    table = value.get("t") if isinstance(value, dict) else None
    if not isinstance(table, list) or not all(
            isinstance(names, list) and all(type(n) is str for n in names) for names in table):
        raise CodecError("malformed per-line metadata")
    shapes = [tuple(names) for names in table]
    try:
        return line_block.pair_sets(shapes, _index(value, count, len(shapes), "metadata"),
                                    values)
    except ValueError as exc:
        raise CodecError(str(exc)) from exc


def _entries_from_meta(item: Any, lines: list[str], v3_values: list[str] | None = None,
                       ) -> Entries:
    source, stream, labels, ts_ns, nbytes, token, count = item[:_META_FIELDS]
    fields = item[_META_FIELDS] if len(item) == _META_FIELDS_V2 else {}
    if not isinstance(fields, dict):
        raise CodecError("malformed per-line fields")
    timestamps = fields.get("ts")
    if timestamps is not None and (
            not isinstance(timestamps, list) or len(timestamps) != count
            or not set(map(type, timestamps)) <= {int}):
        raise CodecError(f"per-line timestamps do not match the entry's {count} lines")
    if v3_values is None:
        line_labels = _label_lists(fields.get("labels"), count, "labels")
        metadata = _label_lists(fields.get("md"), count, "metadata")
    else:
        line_labels = _indexed_sets(fields.get("labels"), count)
        metadata = _indexed_metadata(fields.get("md"), count, v3_values)
    return Entries(
        source=source,
        stream=stream,
        labels=tuple((str(name), str(value)) for name, value in labels),
        lines=lines,
        ts_ns=ts_ns,
        token=token_from_wire(token),
        bytes=nbytes,
        timestamps=timestamps,
        line_labels=line_labels,
        metadata=metadata,
    )


def _metadata_values(item: list[Any]) -> int:
    """How many strings of the line block a version-3 meta item's metadata holds."""
    fields = item[_META_FIELDS]
    md = fields.get("md") if isinstance(fields, dict) else None
    if md is None:
        return 0
    n = md.get("n") if isinstance(md, dict) else None
    if type(n) is not int or n < 0:
        raise CodecError("malformed per-line metadata")
    return n


def decode_batch(body: bytes) -> list[Entries]:
    """Inverse of :func:`encode_batch` (every version); raises :class:`CodecError` on a
    malformed body."""
    try:
        magic, meta_len = _PREFIX.unpack_from(body, 0)
        if magic == BODY_MAGIC:
            fields = _META_FIELDS
        elif magic in (BODY_MAGIC_V2, BODY_MAGIC_V3):
            fields = _META_FIELDS_V2
        else:
            raise CodecError(f"unknown body magic {magic!r}")
        meta_end = _PREFIX.size + meta_len
        meta = json.loads(body[_PREFIX.size:meta_end])
        if any(len(item) != fields for item in meta):
            raise CodecError("malformed entry metadata")
        counts = [item[_META_FIELDS - 1] for item in meta]
        v3 = magic == BODY_MAGIC_V3
        extra = [_metadata_values(item) for item in meta] if v3 else [0] * len(meta)
        strings = line_block.unpack(body, meta_end, sum(counts) + sum(extra))
        batch = []
        start = 0
        for item, count, n in zip(meta, counts, extra, strict=True):
            lines = strings[start:start + count]
            start += count
            values = strings[start:start + n] if v3 else None
            start += n
            batch.append(_entries_from_meta(item, lines, values))
        return batch
    except CodecError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, struct.error) as exc:
        raise CodecError(f"malformed record body: {exc}") from exc


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch ready to frame: ``payload`` (compressed, maybe encrypted) and its summary."""

    payload: bytes
    encrypted: bool
    lines: int
    min_ts_ns: int
    max_ts_ns: int
    raw_bytes: int


def _aad(seq: int, lines: int, min_ts_ns: int, max_ts_ns: int) -> bytes:
    return _AAD.pack(_AAD_LABEL, seq, lines, min_ts_ns, max_ts_ns)


class PayloadCodec:
    """Batch -> payload (encode, zstd, optional AES-GCM) and back. Not thread-safe."""

    def __init__(
        self, compression_level: int = DEFAULT_COMPRESSION_LEVEL, cipher: Cipher | None = None
    ) -> None:
        import zstandard  # here, not at the top: only an agent with a disk buffer loads it

        self._compressor = zstandard.ZstdCompressor(
            level=compression_level, write_checksum=False, write_content_size=True
        )
        self._decompressor = zstandard.ZstdDecompressor()
        self._zstd_error = zstandard.ZstdError
        self.cipher = cipher

    def encode(self, batch: Sequence[Entries], seq: int) -> EncodedBatch:
        """Encode ``batch`` as the payload of the record numbered ``seq``."""
        body = encode_batch(batch)
        lines = batch_line_count(batch)
        low, high = batch_time_range(batch)
        payload = self._compressor.compress(body)
        if self.cipher is not None:
            payload = self.cipher.seal(payload, _aad(seq, lines, low, high))
        return EncodedBatch(payload, self.cipher is not None, lines, low, high, len(body))

    def decode(
        self, payload: bytes, *, encrypted: bool, seq: int, lines: int, min_ts_ns: int,
        max_ts_ns: int, where: str,
    ) -> list[Entries]:
        """Inverse of :meth:`encode`. Raises
        :class:`~logcap.state.buffer.crypto.DecryptionError` (naming ``where``) for an encrypted
        payload that this codec's key does not open, and :class:`CodecError` for a payload
        that does not decompress or decode."""
        if encrypted:
            if self.cipher is None:
                raise DecryptionError(where, seq, "record is encrypted but no key is configured")
            payload = self.cipher.open(payload, _aad(seq, lines, min_ts_ns, max_ts_ns),
                                       where=where, seq=seq)
        try:
            body = self._decompressor.decompress(payload)
        except self._zstd_error as exc:
            raise CodecError(f"{where}: record {seq} does not decompress: {exc}") from exc
        return decode_batch(body)
