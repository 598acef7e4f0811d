"""Per-line timestamps, labels and structured metadata of ``Entries``, honoured by every
consumer: the Loki sink (protobuf and JSON, several streams from one part), the file sink,
the disk buffer's record codec and time selection (old records still decode), and the DLQ
(dead-lettering and reprocess, old entries still read)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logcap.messages import Entries, Outcome
from logcap.origin import DLQ_KIND, FILE_KIND, FileStream, ReadToken
from logcap.sinks.file import FileSink
from logcap.sinks.loki.service import LokiService
from logcap.state.buffer.codec import (
    BODY_MAGIC,
    BODY_MAGIC_V2,
    BODY_MAGIC_V3,
    CodecError,
    batch_time_range,
    decode_batch,
    encode_batch,
)
from logcap.state.dlq_entry import DeadLetter, DeadStream, decode_payload, encode_payload
from tests.loki_receiver import DecodedEntry, LokiReceiver
from tests.test_loki_service import loki_cfg

T0 = 1_700_000_000_000_000_000
TOKEN = ReadToken("app", FILE_KIND, FileStream(1, 2, "fp"), 0, 30, "g1", 0)


def processed(lines: int = 3) -> Entries:
    """A part as processing would leave it: the log's own times (out of order), a level label
    per line (the ``error`` line goes to another stream) and a Call-ID per line."""
    levels = ["info", "error", "info"][:lines]
    return Entries(
        "app", "/var/log/app.log", (("job", "app"), ("level", "unset")),
        [f"seq={i} line" for i in range(lines)], T0, TOKEN, 30,
        timestamps=[T0 + 5_000, T0 + 1_000, T0 + 9_000][:lines],
        line_labels=[(("level", level),) for level in levels],
        metadata=[(("call_id", f"c{i}"),) if i != 2 else () for i in range(lines)],
    )


# --- the Loki sink ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    with LokiReceiver() as rec:
        yield rec


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_each_line_reaches_loki_in_its_own_stream_with_its_time_and_metadata(
        receiver: LokiReceiver, encoding: str) -> None:
    service = LokiService(loki_cfg(receiver.url, encoding=encoding))
    assert service.deliver((processed(),)).outcome is Outcome.DELIVERED
    assert receiver.stream_entries() == {
        '{job="app", level="info"}': [
            DecodedEntry(T0 + 5_000, "seq=0 line", (("call_id", "c0"),)),
            DecodedEntry(T0 + 9_000, "seq=2 line", ())],
        '{job="app", level="error"}': [
            DecodedEntry(T0 + 1_000, "seq=1 line", (("call_id", "c1"),))],
    }


def test_line_labels_go_through_the_label_guard(receiver: LokiReceiver) -> None:
    part = Entries("app", "/x", (("job", "app"),), ["a", "b"], T0, TOKEN,
                   line_labels=[(("bad-name", "1"), ("__hidden", "x")), (("job", "other"),)])
    service = LokiService(loki_cfg(receiver.url, max_labels_per_stream=2))
    assert service.deliver((part,)).outcome is Outcome.DELIVERED
    assert receiver.streams() == {'{bad_name="1", job="app"}': [(T0, "a")],
                                  '{job="other"}': [(T0 + 1, "b")]}


def test_the_stream_limit_counts_the_streams_lines_go_to(receiver: LokiReceiver) -> None:
    part = Entries("app", "/x", (("job", "app"),), ["a", "b", "c"], T0, TOKEN,
                   line_labels=[(("n", "1"),), (("n", "2"),), (("n", "3"),)])
    service = LokiService(loki_cfg(receiver.url, max_streams=2))
    assert service.deliver((part,)).outcome is Outcome.DELIVERED
    streams = receiver.streams()
    assert len(streams) == 3 and sum(len(v) for v in streams.values()) == 3
    assert any("logcap_overflow" in key for key in streams)
    assert service.limiter.folded_lines == 1


def test_structured_metadata_counts_toward_batch_bytes(receiver: LokiReceiver) -> None:
    big = (("blob", "m" * 4_000),)
    part = Entries("app", "/x", (("job", "app"),), [f"seq={i}" for i in range(8)], T0, TOKEN,
                   metadata=[big] * 8)
    service = LokiService(loki_cfg(receiver.url, batch_bytes="10KiB"))
    assert service.deliver((part,)).outcome is Outcome.DELIVERED
    assert len(receiver.requests()) >= 4  # 8 x 4 KB of metadata: over 10 KiB three times
    assert sum(receiver.received_seq_numbers().values()) == 8


def test_parts_without_per_line_fields_keep_consecutive_timestamps(
        receiver: LokiReceiver) -> None:
    part = Entries("app", "/x", (("job", "app"),), ["a", "b"], T0, TOKEN)
    assert LokiService(loki_cfg(receiver.url)).deliver((part,)).outcome is Outcome.DELIVERED
    assert receiver.streams() == {'{job="app"}': [(T0, "a"), (T0 + 1, "b")]}


# --- the file sink ---------------------------------------------------------------------------


def test_the_json_file_sink_writes_each_lines_time_labels_and_metadata(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path), "json", 1 << 30, 2)
    assert sink.deliver((processed(),)).outcome is Outcome.DELIVERED
    sink.close()
    docs = [json.loads(raw) for raw in (tmp_path / "app.log").read_text().splitlines()]
    assert [(d["ts_ns"], d["labels"], d.get("metadata"), d["line"]) for d in docs] == [
        (T0 + 5_000, {"job": "app", "level": "info"}, {"call_id": "c0"}, "seq=0 line"),
        (T0 + 1_000, {"job": "app", "level": "error"}, {"call_id": "c1"}, "seq=1 line"),
        (T0 + 9_000, {"job": "app", "level": "info"}, None, "seq=2 line"),
    ]
    assert docs[1]["ts"] == "2023-11-14T22:13:20.000001000Z"


# --- the disk buffer's codec -----------------------------------------------------------------

pairs = st.lists(st.tuples(st.text(max_size=5), st.text(max_size=8)), max_size=3).map(tuple)


@st.composite
def entries_with_fields(draw: st.DrawFn) -> Entries:
    lines = draw(st.lists(st.text(max_size=20), max_size=5))
    n = len(lines)

    def per_line(values: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | st.lists(values, min_size=n, max_size=n))

    return Entries(
        draw(st.text(max_size=8)), draw(st.text(max_size=10)), draw(pairs), lines,
        draw(st.integers(-(2**62), 2**62)),
        ReadToken("s", DLQ_KIND, None, 0, draw(st.integers(0, 99)), "g"),
        draw(st.integers(0, 2**40)),
        timestamps=per_line(st.integers(-(2**62), 2**62)),
        line_labels=per_line(pairs), metadata=per_line(pairs))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries_with_fields(), max_size=4))
def test_any_batch_with_per_line_fields_round_trips_through_the_codec(
        batch: list[Entries]) -> None:
    assert decode_batch(encode_batch(batch)) == batch


def test_a_batch_without_per_line_fields_is_still_written_as_version_1() -> None:
    plain = Entries("s", "st", (), ["a"], 5, TOKEN)
    assert encode_batch([plain])[:4] == BODY_MAGIC
    assert encode_batch([plain, processed()])[:4] == BODY_MAGIC_V3


def _body(magic: bytes, meta: list[Any], strings: list[str]) -> bytes:
    """A record body built by hand: prefix, JSON meta, then the line block."""
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("ascii")
    lengths = struct.pack(f"<{len(strings)}I", *map(len, strings))
    return (magic + struct.pack("<I", len(meta_bytes)) + meta_bytes + lengths
            + "".join(strings).encode())


def test_a_version_2_record_from_the_previous_release_decodes() -> None:
    # As the previous release wrote it: every line's pairs spelled out in the JSON meta.
    fields = {"ts": [T0 + 5_000, T0 + 1_000, T0 + 9_000],
              "labels": [[["level", "info"]], [["level", "error"]], [["level", "info"]]],
              "md": [[["call_id", "c0"]], [["call_id", "c1"]], []]}
    meta = [["app", "/var/log/app.log", [["job", "app"], ["level", "unset"]], T0, 30,
             ["app", "g1|1:2|fp", 0, 30, 0], 3, fields]]
    body = _body(BODY_MAGIC_V2, meta, [f"seq={i} line" for i in range(3)])
    assert decode_batch(body) == [processed()]


def test_version_3_keeps_label_sets_and_metadata_names_once_and_shares_them() -> None:
    part = processed()
    body = encode_batch([part])
    meta = json.loads(body[8:8 + struct.unpack_from("<I", body, 4)[0]])
    fields = meta[0][7]
    assert fields["labels"] == {"t": [[["level", "info"]], [["level", "error"]]],
                                "i": [0, 1, 0]}
    assert fields["md"] == {"t": [["call_id"], []], "i": [0, 0, 1], "n": 2}
    [read] = decode_batch(body)
    assert read == part
    assert read.line_labels is not None and read.line_labels[0] is read.line_labels[2]


def test_malformed_version_3_fields_are_a_codec_error() -> None:
    def with_fields(change: dict[str, Any], values: list[str]) -> bytes:
        fields = {"labels": {"t": [[["level", "info"]]], "i": [0]},
                  "md": {"t": [["call_id"]], "i": [0], "n": 1}, **change}
        meta = [["app", "s", [], T0, 1, ["app", "g1|1:2|fp", 0, 1, 0], 1, fields]]
        return _body(BODY_MAGIC_V3, meta, ["line", *values])

    assert decode_batch(with_fields({}, ["c0"]))[0].metadata == [(("call_id", "c0"),)]
    bad = [({"labels": {"t": [[["level", "info"]]], "i": [1]}}, ["c0"], "out of the table"),
           ({"labels": {"t": [[["level", "info"]]], "i": [-1]}}, ["c0"], "out of the table"),
           ({"labels": {"t": [[["level"]]], "i": [0]}}, ["c0"], "pairs of strings"),
           ({"md": {"t": [["call_id", "pid"]], "i": [0], "n": 1}}, ["c0"], "values"),
           ({"md": {"t": [["call_id"]], "i": [0], "n": 2}}, ["c0", "c1"], "values"),
           ({"md": {"t": [[1]], "i": [0], "n": 1}}, ["c0"], "malformed"),
           ({"md": {"t": [["call_id"]], "i": [0, 0], "n": 1}}, ["c0"], "lines"),
           ({"md": {"t": [["call_id"]], "i": [0], "n": -1}}, ["c0"], "malformed")]
    for change, values, message in bad:
        with pytest.raises(CodecError, match=message):
            decode_batch(with_fields(change, values))


def test_a_version_1_record_from_the_previous_release_decodes() -> None:
    # Built byte by byte as the previous release wrote it (no per-line fields existed).
    meta = [["src", "/var/log/a.log", [["job", "a"]], 7, 3, ["src", "g1|8:9|fp", 0, 4, 1], 2]]
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("ascii")
    body = b"LCE1" + struct.pack("<I", len(meta_bytes)) + meta_bytes + struct.pack(
        "<2I", 1, 2) + b"xyz"
    [entries] = decode_batch(body)
    assert entries == Entries("src", "/var/log/a.log", (("job", "a"),), ["x", "yz"], 7,
                              ReadToken("src", FILE_KIND, FileStream(8, 9, "fp"), 0, 4, "g1",
                                        1), 3)
    assert entries.timestamps is None and entries.timestamp(1) == 8


def test_per_line_fields_that_do_not_match_the_lines_are_a_codec_error() -> None:
    body = encode_batch([processed()])
    broken = body.replace(b'"ts":[', b'"ts":[1,', 1)
    fixed_len = struct.pack("<I", struct.unpack_from("<I", body, 4)[0] + 2)
    with pytest.raises(CodecError, match="timestamps"):
        decode_batch(broken[:4] + fixed_len + broken[8:])


def test_the_time_range_of_a_record_uses_each_lines_own_timestamp() -> None:
    assert batch_time_range([processed()]) == (T0 + 1_000, T0 + 9_000)


# --- the DLQ -----------------------------------------------------------------------------------


def test_a_dead_letter_keeps_each_lines_time_labels_and_metadata_through_reprocess() -> None:
    entry = DeadLetter.from_parts("loki", "bad_request", 400, 1, 1.0, 2.0, "old",
                                  (processed(),))
    assert entry.document()["version"] == 2
    read = decode_payload(encode_payload(entry, _zstd()))
    assert read == entry
    resent = read.to_parts()
    flat = [(p.timestamp(i), line, p.line_labels and p.line_labels[i],
             p.metadata and p.metadata[i])
            for p in resent for i, line in enumerate(p.lines)]
    original = processed()
    assert flat == [(original.timestamp(i), original.lines[i],
                     original.line_labels[i] if original.line_labels else None,
                     original.metadata[i] if original.metadata else None)
                    for i in range(3)]


def test_parts_with_and_without_line_fields_join_in_one_dead_stream() -> None:
    plain = Entries("app", "/var/log/app.log", (("job", "app"), ("level", "unset")), ["p"],
                    T0 + 20_000, TOKEN)
    entry = DeadLetter.from_parts("loki", "r", None, 1, 1.0, 1.0, "", (plain, processed()))
    [stream] = entry.streams
    assert stream.line_labels == ((), (("level", "info"),), (("level", "error"),),
                                  (("level", "info"),))
    assert decode_payload(encode_payload(entry, _zstd())) == entry


def test_a_version_1_dead_letter_still_reads_and_is_still_written_as_1() -> None:
    doc = {"version": 1, "id": "a" * 32, "sink": "loki", "reason": "bad_request",
           "status_code": 400, "attempts": 1, "first_failure": 1.0, "last_failure": 2.0,
           "detail": "", "streams": [{"labels": [["job", "x"]], "source": "s", "stream": "f",
                                      "lines": [["10", "a"], [11, "b"]]}]}
    entry = DeadLetter.from_document(doc)
    assert entry.streams == (DeadStream((("job", "x"),), "s", "f", ((10, "a"), (11, "b"))),)
    assert entry.document() == {**doc, "streams": [{**doc["streams"][0],  # type: ignore[dict-item]
                                                    "lines": [["10", "a"], ["11", "b"]]}]}


def test_a_third_element_in_a_version_1_line_is_refused() -> None:
    doc = {"version": 1, "id": "a" * 32, "sink": "loki", "reason": "r", "status_code": None,
           "attempts": 1, "first_failure": 1.0, "last_failure": 2.0, "detail": "",
           "streams": [{"labels": [], "source": "s", "stream": "f",
                        "lines": [["10", "a", {"metadata": [["k", "v"]]}]]}]}
    with pytest.raises(ValueError, match="pair"):
        DeadLetter.from_document(doc)


def _zstd() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=3, write_checksum=True)

