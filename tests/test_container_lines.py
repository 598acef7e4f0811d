"""Per-stream line reassembly of timestamped container logs: pieces, interleaving, TTY,
truncation, pieces without a timestamp, and the engine's timestamp formats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcap.sources.containers.framing import Frame, FrameDecoder, Stream, encode_frame
from logcap.sources.containers.lines import LineAssembler, LogLine, parse_timestamp

T0 = 1714557600 * 10**9  # 2024-05-01T10:00:00Z
T0_TEXT = b"2024-05-01T10:00:00"


def stamp(ns: int) -> bytes:
    """Docker's RFC3339Nano (trailing zeros trimmed) for a time after T0."""
    seconds, frac = divmod(ns - T0, 10**9)
    text = b"2024-05-01T10:%02d:%02d" % divmod(seconds, 60)
    digits = b"%09d" % frac
    return text + (b"." + digits.rstrip(b"0") if frac else b"") + b"Z"


def frame(stream: Stream, ts: bytes, text: bytes) -> Frame:
    return Frame(stream, ts + b" " + text)


@pytest.mark.parametrize(("text", "ns"), [
    (T0_TEXT + b"Z", T0),
    (T0_TEXT + b".5Z", T0 + 500_000_000),
    (T0_TEXT + b".000000001Z", T0 + 1),
    (T0_TEXT + b".123456789Z", T0 + 123456789),
    (T0_TEXT + b"+02:00", T0 - 7200 * 10**9),
    (T0_TEXT + b"-01:30", T0 + 5400 * 10**9),
])
def test_engine_timestamps_parse_to_nanoseconds(text, ns) -> None:
    assert parse_timestamp(text) == ns


@pytest.mark.parametrize("text", [b"", b"2024-05-01", b"2024-02-30T10:00:00Z",
                                  T0_TEXT + b".1234567890Z", T0_TEXT, b"hello"])
def test_anything_else_is_not_a_timestamp(text) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_pieces_rejoin_per_stream_with_the_first_piece_timestamp() -> None:
    a = LineAssembler()
    out = a.add([frame(Stream.STDOUT, stamp(T0), b"hel"),
                 frame(Stream.STDERR, stamp(T0 + 1), b"oops\n"),
                 frame(Stream.STDOUT, stamp(T0 + 2), b"lo\r\n")])
    assert out == [LogLine(Stream.STDERR, T0 + 1, b"oops"),
                   LogLine(Stream.STDOUT, T0, b"hello\r")]  # not a TTY: the \r is the line's
    assert (a.lines, a.reassembled_lines, a.untimed_pieces) == (2, 1, 0)


def test_a_piece_without_a_timestamp_is_kept_and_counted() -> None:
    a = LineAssembler()
    out = a.add([Frame(Stream.STDOUT, b"no stamp here\n"),
                 frame(Stream.STDOUT, stamp(T0), b"a"), Frame(Stream.STDOUT, b"-b\n")])
    assert out == [LogLine(Stream.STDOUT, None, b"no stamp here"),
                   LogLine(Stream.STDOUT, T0, b"a-b")]
    assert a.untimed_pieces == 2


def test_several_lines_in_one_piece_share_its_timestamp() -> None:
    out = LineAssembler().add([frame(Stream.STDOUT, stamp(T0), b"a\n\nb\n")])
    assert [(line.timestamp_ns, line.data) for line in out] == [(T0, b"a"), (T0, b""),
                                                                 (T0, b"b")]


def test_an_overlong_line_is_truncated_on_a_character_boundary_and_counted() -> None:
    a = LineAssembler(max_line_bytes=10)
    pieces = [frame(Stream.STDOUT, stamp(T0), "abcdefghié".encode()),  # é: bytes 9..10
              frame(Stream.STDOUT, stamp(T0), b"x" * 10_000),
              frame(Stream.STDOUT, stamp(T0), b"\n"),
              frame(Stream.STDOUT, stamp(T0), b"0123456789\n")]
    out = a.add(pieces)
    assert [line.data for line in out] == [b"abcdefghi", b"0123456789"]
    assert a.truncated_lines == 1


def test_finish_emits_the_partial_lines() -> None:
    a = LineAssembler()
    assert a.add([frame(Stream.STDERR, stamp(T0), b"last words")]) == []
    assert a.pending_streams() == [Stream.STDERR]
    assert a.finish() == [LogLine(Stream.STDERR, T0, b"last words")]
    assert a.pending_streams() == []


def test_a_tty_stream_is_records_split_by_newlines_with_the_cr_removed() -> None:
    a = LineAssembler(tty=True)
    data = stamp(T0) + b" one\r\n" + stamp(T0 + 5) + b" two\r\n" + stamp(T0 + 6) + b" thr"
    out = [line for byte in data for line in a.add([Frame(Stream.STDOUT, bytes([byte]))])]
    assert out == [LogLine(Stream.STDOUT, T0, b"one"), LogLine(Stream.STDOUT, T0 + 5, b"two")]
    assert a.finish() == [LogLine(Stream.STDOUT, T0 + 6, b"thr")]


def test_a_tty_line_over_the_limit_is_truncated_even_when_its_cr_was_not_held() -> None:
    a = LineAssembler(tty=True, max_line_bytes=4)
    out = a.add([Frame(Stream.STDOUT, stamp(T0) + b" abcd\r\n" + stamp(T0) + b" abcdefgh\r\n")])
    assert [line.data for line in out] == [b"abcd", b"abcd"]
    assert a.truncated_lines == 1


line_text = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"."))


@st.composite
def interleaved_streams(draw):
    """Lines per stream, each cut into pieces; the pieces of both streams interleaved (each
    stream's in order), every piece with a non-decreasing timestamp. Returns the frames and
    the expected lines per stream (with their first piece's timestamp)."""
    expected: dict[Stream, list[tuple[int, bytes]]] = {}
    queues: dict[Stream, list[bytes]] = {}
    for stream in Stream:
        lines = draw(st.lists(line_text, max_size=15))
        pieces: list[bytes] = []
        for text in lines:
            full = text + b"\n"
            cuts = sorted(set(draw(st.lists(st.integers(1, len(full)), max_size=4))))
            pieces += [full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)], strict=True)
                       if b > a]
        queues[stream] = pieces
        expected[stream] = [(0, text) for text in lines]
    order = draw(st.permutations([s for s in Stream for _ in queues[s]]))
    frames, ts, first = [], T0, {s: True for s in Stream}
    line_no = {s: 0 for s in Stream}
    for stream in order:
        ts += draw(st.sampled_from([0, 0, 1, 10**9]))
        piece = queues[stream].pop(0)
        if first[stream]:
            expected[stream][line_no[stream]] = (ts, expected[stream][line_no[stream]][1])
        first[stream] = piece.endswith(b"\n")
        if first[stream]:
            line_no[stream] += 1
        frames.append(frame(stream, stamp(ts), piece))
    return frames, expected


@given(interleaved_streams(), st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_of_interleaved_pieces_reassembles_each_line_byte_exact(
        streams, cuts) -> None:
    frames, expected = streams
    raw = b"".join(encode_frame(f.stream, f.payload) for f in frames)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    decoder, assembler = FrameDecoder(), LineAssembler()
    out: list[LogLine] = []
    for a, b in zip([0, *points], [*points, len(raw)], strict=True):
        out += assembler.add(decoder.feed(raw[a:b]))
    assert assembler.finish() == []
    for stream in Stream:
        assert [(line.timestamp_ns, line.data) for line in out if line.stream is stream] \
            == expected[stream]
    assert assembler.untimed_pieces == 0 and assembler.truncated_lines == 0


@given(st.lists(line_text.map(lambda b: b.replace(b"\r", b"")), max_size=20),
       st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_of_a_tty_stream_gives_back_its_lines(lines, cuts) -> None:
    raw = b"".join(stamp(T0 + i) + b" " + text + b"\r\n" for i, text in enumerate(lines))
    points = sorted({c % (len(raw) + 1) for c in cuts})
    assembler = LineAssembler(tty=True)
    out: list[LogLine] = []
    for a, b in zip([0, *points], [*points, len(raw)], strict=True):
        out += assembler.add([Frame(Stream.STDOUT, raw[a:b])])
    assert assembler.finish() == []
    assert [(line.timestamp_ns, line.data) for line in out] == [
        (T0 + i, text) for i, text in enumerate(lines)]


def test_a_tty_line_the_engine_cut_loses_the_timestamp_of_its_second_piece() -> None:
    a = LineAssembler(tty=True)
    first = a.add([Frame(Stream.STDOUT, stamp(T0) + b" seq=1 " + b"2000-01-01T00:00:00Z x")])
    assert first == []
    out = a.add([Frame(Stream.STDOUT, stamp(T0 + 1) + b" rest\r\n")])
    assert out == [LogLine(Stream.STDOUT, T0, b"seq=1 2000-01-01T00:00:00Z xrest")]
    assert a.reassembled_lines == 1
    assert a.add([Frame(Stream.STDOUT, stamp(T0 + 2) + b" ")]) == []  # nothing of the text yet
    assert a.add([Frame(Stream.STDOUT, b"2000-01-01T00:00:00Z own\r\n")]) == [
        LogLine(Stream.STDOUT, T0 + 2, b"2000-01-01T00:00:00Z own")]
