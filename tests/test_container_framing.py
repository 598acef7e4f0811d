"""The Engine API log stream demultiplexer: frames from arbitrary chunks, TTY, bad headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcap.sources.containers.framing import (
    Frame,
    FrameDecoder,
    FramingError,
    Stream,
    encode_frame,
)

frames_st = st.lists(st.builds(Frame, st.sampled_from(Stream), st.binary(min_size=1,
                                                                             max_size=300)),
                     max_size=20)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(frames_st, st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_of_a_framed_stream_gives_back_its_frames(frames, cuts) -> None:
    raw = b"".join(encode_frame(f.stream, f.payload) for f in frames)
    decoder = FrameDecoder()
    got = [frame for chunk in split(raw, cuts) for frame in decoder.feed(chunk)]
    assert got == frames
    assert decoder.pending_bytes == 0 and decoder.offset == len(raw)


def test_a_header_split_across_chunks_waits_for_its_payload() -> None:
    raw = encode_frame(Stream.STDERR, b"hello")
    decoder = FrameDecoder()
    assert decoder.feed(raw[:3]) == [] and decoder.feed(raw[3:9]) == []
    assert decoder.pending_bytes == 9
    assert decoder.feed(raw[9:]) == [Frame(Stream.STDERR, b"hello")]


def test_empty_frames_are_skipped() -> None:
    assert FrameDecoder().feed(encode_frame(Stream.STDOUT, b"")) == []


def test_a_tty_stream_is_all_stdout_with_no_header() -> None:
    decoder = FrameDecoder(tty=True)
    assert decoder.feed(b"\x02\x00abc") == [Frame(Stream.STDOUT, b"\x02\x00abc")]
    assert decoder.feed(b"") == []


@pytest.mark.parametrize(("header", "why"), [
    (b"\x00\x00\x00\x00\x00\x00\x00\x01", "unknown stream type 0"),
    (b"\x03\x00\x00\x00\x00\x00\x00\x01", "unknown stream type 3"),
    (b"\x01\x00\x01\x00\x00\x00\x00\x01", "bytes 1..3 are not zero"),
    (b"\x01\x00\x00\x00\x7f\x00\x00\x00", "exceeds the limit"),
    (b"2024-05-01T10:00:00Z hi\n", "unknown stream type 50"),
])
def test_a_bad_header_is_a_clear_error_and_stays_one(header, why) -> None:
    decoder = FrameDecoder()
    good = encode_frame(Stream.STDOUT, b"ok")
    with pytest.raises(FramingError, match=why) as raised:
        decoder.feed(good + header)
    assert f"at byte {len(good)}" in str(raised.value)
    with pytest.raises(FramingError):
        decoder.feed(good)


def test_the_length_limit_is_configurable() -> None:
    decoder = FrameDecoder(max_frame_bytes=4)
    assert decoder.feed(encode_frame(Stream.STDOUT, b"four")) == [Frame(Stream.STDOUT, b"four")]
    with pytest.raises(FramingError, match="payload length 5 exceeds the limit of 4"):
        decoder.feed(encode_frame(Stream.STDOUT, b"five!"))
