"""The container resume cursor: which re-sent lines to skip, the since value, its JSON form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logcap.sources.containers.cursor import (
    ContainerCursor,
    ResumeFilter,
    SinceSemantics,
    since_for,
    since_seconds,
)
from logcap.sources.containers.cursor_format import (
    CursorFormatError,
    decode_entry,
    encode_cursor,
    encode_entry,
)
from logcap.sources.containers.framing import Stream
from logcap.sources.containers.lines import LogLine

S = 10**9
T0 = 1714557600 * S
CID = "ab" * 32


def resend(log: list[LogLine], since, semantics: SinceSemantics) -> list[LogLine]:
    """What an engine sends again for ``since`` (None: everything)."""
    if since is None:
        return list(log)
    if semantics is SinceSemantics.INCLUSIVE:
        return [line for line in log if line.timestamp_ns >= since.ns]
    return [line for line in log if line.timestamp_ns > since.ns]


@st.composite
def logs(draw):
    """A container's log (file order, timestamps non-decreasing, whole seconds or ns, many
    lines per timestamp) and how many lines of each stream were shipped."""
    coarse = draw(st.booleans())
    ts, log = T0, []
    for _ in range(draw(st.integers(0, 300))):
        ts += draw(st.sampled_from([0, 0, 0, 0, S if coarse else 1, 2 * S]))
        stream = draw(st.sampled_from(Stream))
        log.append(LogLine(stream, ts, draw(st.sampled_from([b"a", b"b", b""]))))
    shipped = {s: draw(st.integers(0, sum(1 for line in log if line.stream is s)))
               for s in Stream}
    return log, shipped


@pytest.mark.parametrize("semantics", list(SinceSemantics))
@given(case=logs())
def test_resuming_from_the_cursor_ships_each_line_exactly_once(semantics, case) -> None:
    log, shipped = case
    cursor, done = ContainerCursor(), []
    for stream in Stream:  # the streams are shipped independently: each its own prefix
        for line in [line for line in log if line.stream is stream][:shipped[stream]]:
            cursor = cursor.shipped(line)
            done.append(line)
    resumed = ResumeFilter(cursor)
    since = since_for(cursor.resume_ns(), semantics)
    kept = [line for line in resend(log, since, semantics) if resumed.keep(line)]
    for stream in Stream:
        assert [line for line in done if line.stream is stream] + \
            [line for line in kept if line.stream is stream] == \
            [line for line in log if line.stream is stream]
    assert resumed.boundary_mismatches == 0


def test_ten_thousand_lines_in_one_second_resume_in_the_middle() -> None:
    log = [LogLine(Stream.STDOUT, T0, b"%d" % i) for i in range(10_000)]
    cursor = ContainerCursor(floor_ns=T0)  # stderr, which shipped nothing, starts there
    for line in log[:6_000]:
        cursor = cursor.shipped(line)
    assert cursor.streams[Stream.STDOUT].count == 6_000
    since = since_for(cursor.resume_ns(), SinceSemantics.EXCLUSIVE)
    assert str(since) == "1714557599.999999999"
    resumed = ResumeFilter(cursor)
    assert [line for line in log if resumed.keep(line)] == log[6_000:]
    assert resumed.skipped == 6_000


def test_different_lines_at_the_boundary_are_a_counted_mismatch_not_a_loss() -> None:
    cursor = ContainerCursor().shipped(LogLine(Stream.STDOUT, T0, b"x"))
    resumed = ResumeFilter(cursor)
    assert not resumed.keep(LogLine(Stream.STDOUT, T0, b"y"))
    assert resumed.keep(LogLine(Stream.STDOUT, T0, b"z"))
    assert resumed.boundary_mismatches == 1


def test_fewer_lines_at_the_boundary_than_shipped_is_a_mismatch() -> None:
    cursor = ContainerCursor()
    for data in (b"a", b"b"):
        cursor = cursor.shipped(LogLine(Stream.STDERR, T0, data))
    resumed = ResumeFilter(cursor)
    assert not resumed.keep(LogLine(Stream.STDERR, T0, b"a"))
    assert resumed.keep(LogLine(Stream.STDERR, T0 + 1, b"c"))
    assert resumed.boundary_mismatches == 1


def test_lines_without_a_timestamp_neither_move_the_cursor_nor_get_skipped() -> None:
    cursor = ContainerCursor(floor_ns=T0)
    line = LogLine(Stream.STDOUT, None, b"?")
    assert cursor.shipped(line) is cursor
    assert ResumeFilter(cursor).keep(line)


def test_the_floor_bounds_a_stream_that_shipped_nothing() -> None:
    cursor = ContainerCursor(floor_ns=T0).shipped(LogLine(Stream.STDOUT, T0 + 5 * S, b"a"))
    assert cursor.resume_ns() == T0
    resumed = ResumeFilter(cursor)
    assert not resumed.keep(LogLine(Stream.STDERR, T0 - 1, b"old"))
    assert resumed.keep(LogLine(Stream.STDERR, T0, b"new"))


def test_since_is_exact_to_the_nanosecond_and_none_from_the_start() -> None:
    assert str(since_seconds(T0 + 123)) == "1714557600.000000123"
    assert isinstance(since_seconds(T0), float) and since_seconds(T0) > 0
    assert str(since_for(T0, SinceSemantics.INCLUSIVE)) == "1714557600.000000000"
    assert since_for(0, SinceSemantics.INCLUSIVE) is None
    assert since_for(1, SinceSemantics.EXCLUSIVE) is None
    with pytest.raises(ValueError):
        since_seconds(-1)


@given(case=logs())
def test_a_cursor_survives_its_json_form(case) -> None:
    log, _ = case
    cursor = ContainerCursor(floor_ns=T0 - S)
    for line in log:
        cursor = cursor.shipped(line)
    assert decode_entry(encode_entry(CID, "web-1", cursor)) == (CID, "web-1", cursor)


def good_entry() -> dict:
    cursor = ContainerCursor().shipped(LogLine(Stream.STDOUT, T0, b"a"))
    return encode_entry(CID, "web", cursor)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda e: e.update(id="XYZ"), "id: expected 12 to 64 lowercase hex"),
    (lambda e: e.pop("name"), "entry: missing name"),
    (lambda e: e.update(extra=1), "entry: unknown key extra"),
    (lambda e: e["cursor"].update(version=2), "cursor.version: expected 1, got 2"),
    (lambda e: e["cursor"].update(floor_ns=5), "cursor.floor_ns: expected a decimal string"),
    (lambda e: e["cursor"]["streams"].update(stdin={}), "cursor.streams.stdin: unknown stream"),
    (lambda e: e["cursor"]["streams"]["stdout"].update(count=0),
     "cursor.streams.stdout.count: expected an integer >= 1"),
    (lambda e: e["cursor"]["streams"]["stdout"].update(count=True),
     "cursor.streams.stdout.count"),
    (lambda e: e["cursor"]["streams"]["stdout"].update(digest="zz"),
     "cursor.streams.stdout.digest"),
    (lambda e: e["cursor"]["streams"]["stdout"].update(timestamp_ns="-1"),
     "cursor.streams.stdout.timestamp_ns"),
    (lambda e: e.update(cursor=[]), "cursor: expected an object, got list"),
])
def test_a_malformed_entry_is_refused_with_its_key_path(damage, message) -> None:
    entry = good_entry()
    damage(entry)
    with pytest.raises(CursorFormatError, match=message):
        decode_entry(entry)


def test_the_json_form_has_a_version_and_string_nanoseconds() -> None:
    assert encode_cursor(ContainerCursor(floor_ns=7)) == {"version": 1, "floor_ns": "7",
                                                        "streams": {}}
