"""Record framing, the recovery scan, the batch codec, and the segment ledger of the disk buffer."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.messages import Entries
from logcap.origin import DLQ_KIND, FILE_KIND, FileStream, ReadToken
from logcap.state.buffer.codec import (
    CodecError,
    PayloadCodec,
    batch_time_range,
    decode_batch,
    encode_batch,
    token_to_wire,
)
from logcap.state.buffer.ledger import (
    IndexCorrupt,
    SegmentIndex,
    index_path,
    parse_segment_name,
    segment_name,
)
from logcap.state.buffer.record import (
    HEADER_BYTES,
    MAGIC,
    RecordCorrupt,
    frame_record,
    parse_record,
    read_record,
    scan_segment,
)


def make_entries(n: int = 3, *, source: str = "src", ts_ns: int = 1_000) -> Entries:
    return Entries(source, "/var/log/a.log", (("job", "a"), ("host", "h")),
                   [f"line {i}" for i in range(n)], ts_ns,
                   ReadToken(source, FILE_KIND, None, 0, 10, "1:2", 3), 42)


def framed(seq: int, payload: bytes = b"payload", *, count: int = 1) -> bytes:
    return frame_record(seq=seq, count=count, min_ts_ns=seq * 10, max_ts_ns=seq * 10 + count,
                        payload=payload, encrypted=False)


def write_file(path: Path, *chunks: bytes) -> int:
    path.write_bytes(b"".join(chunks))
    return os.open(path, os.O_RDONLY)


# --- framing ---------------------------------------------------------------------------------


def test_a_framed_record_parses_back_to_its_header_and_payload() -> None:
    data = frame_record(seq=7, count=3, min_ts_ns=-5, max_ts_ns=99, payload=b"abc",
                        encrypted=True)
    header, payload = parse_record(data)
    assert (header.seq, header.count, header.min_ts_ns, header.max_ts_ns) == (7, 3, -5, 99)
    assert header.encrypted and header.length == 3 and header.size == HEADER_BYTES + 3
    assert payload == b"abc" and data.startswith(MAGIC)


@pytest.mark.parametrize("position", range(0, HEADER_BYTES + 7))
def test_a_bit_flip_anywhere_in_a_record_is_detected(position: int) -> None:
    data = bytearray(framed(1))
    data[position] ^= 0x10
    with pytest.raises(RecordCorrupt):
        parse_record(bytes(data))


def test_a_record_cut_short_is_detected() -> None:
    data = framed(1)
    with pytest.raises(RecordCorrupt, match="header says"):
        parse_record(data[:-1])
    with pytest.raises(RecordCorrupt, match="short header"):
        parse_record(data[:10])


def test_read_record_reads_one_record_at_an_offset(tmp_path: Path) -> None:
    first, second = framed(1), framed(2, b"second")
    fd = write_file(tmp_path / "s.seg", first, second)
    try:
        header, payload = read_record(fd, len(first), len(second))
        assert header.seq == 2 and payload == b"second"
        with pytest.raises(RecordCorrupt, match="short read"):
            read_record(fd, len(first), len(second) + 5)
    finally:
        os.close(fd)


# --- scanning --------------------------------------------------------------------------------


def test_scanning_a_clean_file_finds_every_record_and_no_tail(tmp_path: Path) -> None:
    records = [framed(seq, os.urandom(50)) for seq in range(1, 6)]
    fd = write_file(tmp_path / "s.seg", *records)
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [1, 2, 3, 4, 5]
    assert scan.corrupt == [] and scan.torn_bytes == 0
    assert scan.valid_end == sum(map(len, records))


@pytest.mark.parametrize("cut", [1, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 3])
def test_a_torn_last_record_is_the_torn_tail(tmp_path: Path, cut: int) -> None:
    good, last = framed(1), framed(2, b"0123456789")
    fd = write_file(tmp_path / "s.seg", good, last[:cut])
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [1]
    assert scan.valid_end == len(good) and scan.torn_bytes == cut


def test_a_corrupt_record_in_the_middle_is_skipped_and_the_rest_found(tmp_path: Path) -> None:
    one, two, three = framed(1), bytearray(framed(2, b"x" * 100)), framed(3)
    two[HEADER_BYTES + 50] ^= 0xFF
    fd = write_file(tmp_path / "s.seg", one, bytes(two), three)
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [1, 3]
    assert scan.corrupt == [(len(one), len(two))]
    assert scan.torn_bytes == 0


def test_a_damaged_length_field_does_not_hide_the_records_after_it(tmp_path: Path) -> None:
    one, two, three = framed(1), bytearray(framed(2)), framed(3)
    two[5:9] = (10**6).to_bytes(4, "little")
    fd = write_file(tmp_path / "s.seg", one, bytes(two), three)
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [1, 3]


def test_garbage_holding_the_magic_is_not_mistaken_for_a_record(tmp_path: Path) -> None:
    garbage = (MAGIC + b"\x00" * 60) * 3
    fd = write_file(tmp_path / "s.seg", framed(1), garbage)
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [1]
    assert scan.torn_bytes == len(garbage)


def test_a_record_found_after_a_long_run_of_garbage_spanning_chunks(tmp_path: Path) -> None:
    garbage = os.urandom(2 * 1024 * 1024 + 3).replace(MAGIC, b"XXXX")
    fd = write_file(tmp_path / "s.seg", garbage, framed(9))
    try:
        scan = scan_segment(fd)
    finally:
        os.close(fd)
    assert [r.header.seq for r in scan.records] == [9]
    assert scan.corrupt == [(0, len(garbage))]


# --- codec -----------------------------------------------------------------------------------

line_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
entries_strategy = st.builds(
    Entries,
    source=st.text(max_size=10),
    stream=st.text(max_size=20),
    labels=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=8)), max_size=3).map(tuple),
    lines=st.lists(line_text, max_size=6),
    ts_ns=st.integers(-(2**62), 2**62),
    token=st.builds(ReadToken, st.text(max_size=5), st.sampled_from([FILE_KIND, DLQ_KIND, "x"]),
                    st.none() | st.builds(FileStream, st.integers(0, 2**62),
                                          st.integers(0, 2**62), st.text(max_size=8))
                    | st.lists(st.integers(-5, 2**40) | st.text(max_size=5), max_size=3)
                    .map(tuple),
                    st.integers(0, 2**62), st.integers(0, 2**62), st.text(max_size=8),
                    st.integers(0, 2**31)),
    bytes=st.integers(0, 2**40),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(entries_strategy, max_size=4))
def test_any_batch_round_trips_through_the_codec(batch: list[Entries]) -> None:
    assert decode_batch(encode_batch(batch)) == batch


def test_lines_with_newlines_lone_surrogates_and_empty_strings_round_trip() -> None:
    entries = Entries("s", "st", (), ["a\nb", "", "\udcff\udc80 bad bytes", "é€😀", "\x00"],
                      5, ReadToken("s", FILE_KIND, None, 0, 1, "k", 0), 9)
    assert decode_batch(encode_batch([entries])) == [entries]


def legacy_body(tokens: list[list[object]]) -> bytes:
    """A record body as written before typed tokens: one line per entry, 5-item tokens."""
    meta = [["src", "/var/log/a.log", [["job", "a"]], 7, 3, token, 1] for token in tokens]
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode("ascii")
    lengths = struct.pack(f"<{len(tokens)}I", *([1] * len(tokens)))
    return b"LCE1" + struct.pack("<I", len(meta_bytes)) + meta_bytes + lengths + b"x" * len(tokens)


def test_records_written_before_typed_tokens_decode_to_typed_tokens() -> None:
    body = legacy_body([["src", "g3|8:1234|16:ab|cd", 0, 10, 2], ["src", "1:2", 5, 6, 0]])
    first, second = decode_batch(body)
    assert first.token == ReadToken("src", FILE_KIND, FileStream(8, 1234, "16:ab|cd"), 0, 10,
                                    "g3", 2)
    assert isinstance(first.token.stream, FileStream)
    assert second.token == ReadToken("src", FILE_KIND, None, 5, 6, "1:2", 0)
    assert (first.lines, first.labels, first.ts_ns, first.bytes) == (["x"], (("job", "a"),), 7, 3)


def test_file_tokens_are_still_written_in_the_old_form() -> None:
    body = legacy_body([["src", "g3|8:1234|16:abcd", 0, 10, 2]])
    assert encode_batch(decode_batch(body)) == body
    assert token_to_wire(ReadToken("s", FILE_KIND, FileStream(1, 2, "f"), 0, 4, "g1", 3)) == [
        "s", "g1|1:2|f", 0, 4, 3]
    assert token_to_wire(ReadToken("s", "container", ("c0ffee", "stdout"), 0, 4, "e", 1)) == [
        "s", "container", "e", ["c0ffee", "stdout"], 0, 4, 1]


def test_a_malformed_body_raises_codec_error() -> None:
    body = encode_batch([make_entries()])
    with pytest.raises(CodecError):
        decode_batch(b"XXXX" + body[4:])
    with pytest.raises(CodecError):
        decode_batch(body[:-3])
    with pytest.raises(CodecError):
        decode_batch(body[:6])


def test_the_time_range_of_a_batch_spans_every_line() -> None:
    batch = [make_entries(3, ts_ns=100), make_entries(1, ts_ns=50), make_entries(0, ts_ns=1)]
    assert batch_time_range(batch) == (50, 102)
    assert batch_time_range([make_entries(0)]) == (0, 0)


def test_the_payload_codec_compresses_and_decodes_a_batch() -> None:
    codec = PayloadCodec(compression_level=3)
    batch = [make_entries(200), make_entries(5, source="other")]
    encoded = codec.encode(batch, seq=4)
    assert not encoded.encrypted and encoded.lines == 205
    assert len(encoded.payload) < encoded.raw_bytes
    decoded = codec.decode(encoded.payload, encrypted=False, seq=4, lines=205,
                           min_ts_ns=encoded.min_ts_ns, max_ts_ns=encoded.max_ts_ns, where="f")
    assert decoded == batch


def test_payloads_carry_no_zstd_checksum_and_older_ones_with_it_still_decode() -> None:
    """The record's BLAKE2b covers the payload; frames written with XXH64 still read."""
    import zstandard

    codec = PayloadCodec()
    batch = [make_entries(50)]
    encoded = codec.encode(batch, seq=1)
    assert not zstandard.get_frame_parameters(encoded.payload).has_checksum
    body = encode_batch(batch)
    older = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(body)
    assert zstandard.get_frame_parameters(older).has_checksum
    assert codec.decode(older, encrypted=False, seq=1, lines=50, min_ts_ns=0, max_ts_ns=0,
                        where="f") == batch
    damaged = older[:-1] + bytes([older[-1] ^ 1])  # the XXH64 itself: still refused
    with pytest.raises(CodecError, match="record 1"):
        codec.decode(damaged, encrypted=False, seq=1, lines=50, min_ts_ns=0, max_ts_ns=0,
                     where="f")


def test_a_payload_that_is_not_zstd_raises_codec_error_naming_the_file() -> None:
    with pytest.raises(CodecError, match=r"x\.seg: record 3"):
        PayloadCodec().decode(b"not zstd", encrypted=False, seq=3, lines=0, min_ts_ns=0,
                              max_ts_ns=0, where="x.seg")


# --- ledger ----------------------------------------------------------------------------------


def test_segment_names_are_sixteen_digit_first_seqs() -> None:
    assert segment_name(42) == "0000000000000042.seg"
    assert parse_segment_name("0000000000000042.seg") == 42
    assert parse_segment_name("42.seg") is None and parse_segment_name("x.idx") is None
    assert index_path("/d/0000000000000042.seg") == "/d/0000000000000042.idx"


def make_index() -> SegmentIndex:
    index = SegmentIndex("/d/0000000000000005.seg", 5, created_at=1.5, last_write_at=2.5,
                         sealed=True)
    offset = 0
    for seq, size in ((5, 100), (6, 80), (8, 120)):
        index.add(seq, offset, size, seq * 10, seq * 1000, seq * 1000 + 9)
        offset += size
    return index


def test_a_ledger_round_trips_through_its_idx_bytes() -> None:
    index = make_index()
    decoded = SegmentIndex.decode(index.path, index.encode())
    assert decoded == index
    assert decoded.last_seq == 8 and decoded.records == 3 and decoded.lines == 190
    assert decoded.time_range() == (5000, 8009)
    assert decoded.position(7) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_idx_is_refused(damage: str) -> None:
    data = bytearray(make_index().encode())
    if damage == "flip":
        data[20] ^= 1
    elif damage == "truncate":
        del data[-12:]
    else:
        data = bytearray()
    with pytest.raises(IndexCorrupt):
        SegmentIndex.decode("/d/0000000000000005.seg", bytes(data))
