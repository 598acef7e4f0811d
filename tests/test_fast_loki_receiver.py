"""The benchmarks' fast Loki receiver agrees with the full test receiver on every push."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import cramjam
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fast_loki_receiver import FastLokiReceiver, LokiReceiverProcess
from tests.loki_receiver import PROTO, LokiReceiver
from tests.receiver_timing import write_times_ns

PROTOBUF = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
JSON = {"Content-Type": "application/json"}
BASE_NS = 1_700_000_000_000_000_001

Entry = tuple[int, str]


def protobuf_push(streams: list[tuple[str, list[Entry]]]) -> bytes:
    """A push built with the test receiver's own message classes (not logcap's encoder)."""
    req: Any = PROTO["PushRequest"]()
    for labels, entries in streams:
        stream = req.streams.add(labels=labels)
        for ts, line in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(ts, 1_000_000_000)
    return snappy(req.SerializeToString())


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def json_push(streams: list[tuple[dict[str, str], list[list[Any]]]]) -> bytes:
    return json.dumps({"streams": [{"stream": labels, "values": values}
                                   for labels, values in streams]}).encode()


def numbered(first: int, count: int, ts: int = BASE_NS) -> list[Entry]:
    return [(ts + i, f"seq={first + i:09d} {'x' * 40}") for i in range(count)]


def outcome(receiver: LokiReceiver) -> dict[str, Any]:
    """Everything the receivers count, to compare (without the fast receiver's extras)."""
    stats = receiver.stats()
    stats.pop("fast_pushes", None)
    return {"stats": stats, "raw": receiver.received_seq_numbers(),
            "dedup": receiver.received_seq_numbers(dedupe=True)}


def both(pushes: list[tuple[dict[str, str], bytes]]) -> tuple[FastLokiReceiver, list[Any]]:
    """Feed ``pushes`` to a fast and a full receiver; assert they answered and counted alike."""
    fast, full = FastLokiReceiver(), LokiReceiver(keep_lines=False)
    answers = []
    for headers, body in pushes:
        a, b = fast.handle_push(headers, body), full.handle_push(headers, body)
        assert a == b
        answers.append(a[0])
    assert outcome(fast) == outcome(full)
    return fast, answers


def raw_entry(*fields: bytes) -> bytes:
    """An ``EntryAdapter`` written field by field (to make non-canonical encodings)."""
    return b"".join(fields)


def field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def stamp(seconds: int, nanos: int) -> bytes:
    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            out.append(v & 0x7F | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not out[-1] & 0x80:
                return bytes(out)
    return b"\x08" + varint(seconds) + b"\x10" + varint(nanos)


def test_plain_pushes_take_the_fast_path_and_count_as_the_full_receiver_does() -> None:
    labels = '{job="bench", host="a"}'
    fast, answers = both([
        (PROTOBUF, protobuf_push([(labels, numbered(0, 500))])),
        (PROTOBUF, protobuf_push([(labels, numbered(500, 500, BASE_NS + 500)),
                                  ('{job="other"}', numbered(0, 10))])),
        (JSON, json_push([({"job": "syslog-ng"}, [[str(BASE_NS + i), f"seq={i} y"]
                                                  for i in range(300)])])),
    ])
    assert answers == [204, 204, 204]
    assert fast.fast_pushes == 3
    assert fast.count == 1310 and fast.numbered == 1310


def test_duplicates_and_odd_lines_are_counted_entry_by_entry_as_the_full_receiver_does() -> None:
    labels = '{job="bench"}'
    again = numbered(0, 100)
    odd = [(BASE_NS + 1000, "12 leading number"), (BASE_NS + 1001, "no number here"),
           (BASE_NS + 1002, "a seq=77 inside"), (BASE_NS + 1003, "two\nlines seq=5"),
           (BASE_NS + 1004, "seq=x seq=9"), (BASE_NS + 1005, "  7 spaced"),
           (BASE_NS + 1006, "seq=" + "1" * 60)]
    _, answers = both([
        (PROTOBUF, protobuf_push([(labels, again)])),
        (PROTOBUF, protobuf_push([(labels, again)])),  # exact duplicates
        (PROTOBUF, protobuf_push([(labels, again[:10] + numbered(100, 10, BASE_NS + 100))])),
        (PROTOBUF, protobuf_push([(labels, [(BASE_NS, "seq=000000000 other line")])])),
        (PROTOBUF, protobuf_push([(labels, odd)])),
        (PROTOBUF, protobuf_push([(labels, [*numbered(200, 5), (BASE_NS, "new=1 t=5")])])),
        (JSON, json_push([({"job": "j"}, [[str(BASE_NS), "seq=1 a"], [str(BASE_NS), "seq=1 a"]])])),
    ])
    assert answers == [204] * 7


def test_entries_the_fast_path_cannot_read_in_bulk_go_to_the_full_path() -> None:
    labels = '{job="bench"}'
    line = field(2, b"seq=1 a")
    two_lines = raw_entry(field(1, stamp(1_700_000_000, 5)), field(2, b"seq=2 b"), line)
    no_line = raw_entry(field(1, stamp(1_700_000_000, 6)))
    reordered = raw_entry(line, field(1, stamp(1_700_000_000, 7)))
    stream = field(1, labels.encode()) + b"".join(
        bytes([0x12, len(e)]) + e for e in (two_lines, no_line, reordered))
    fast, answers = both([
        (PROTOBUF, protobuf_push([(labels, [(1_700_000_000_000_000_000, "seq=1 whole second"),
                                            (BASE_NS, "")])])),
        (PROTOBUF, snappy(bytes([0x0A, len(stream)]) + stream)),  # not canonical
        (JSON, json_push([({"job": "j"}, [[str(BASE_NS), "seq=1", {"trace": "t"}]])])),
        (JSON, json_push([({"job": "j"}, [["+12", "seq=2"], ["-3", "seq=3"]])])),
    ])
    assert answers == [204] * 4
    assert fast.fast_pushes == 1  # only the signed JSON timestamps were plain


def metadata_push(labels: str, entries: list[tuple[int, str, dict[str, str]]]) -> bytes:
    """A push whose entries carry structured metadata (the test receiver's message classes)."""
    req: Any = PROTO["PushRequest"]()
    stream = req.streams.add(labels=labels)
    for ts, line, pairs in entries:
        entry = stream.entries.add(line=line)
        entry.timestamp.seconds, entry.timestamp.nanos = divmod(ts, 1_000_000_000)
        for name, value in pairs.items():
            entry.structuredMetadata.add(name=name, value=value)
    return snappy(req.SerializeToString())


def test_pushes_of_whole_seconds_take_the_fast_path_unless_some_entries_are_not() -> None:
    whole = 1_700_000_000_000_000_000
    labels = '{job="bench"}'
    fast, answers = both([
        (PROTOBUF, protobuf_push([(labels, [(whole + i * 1_000_000_000, f"seq={i} s")
                                            for i in range(50)])])),
        (PROTOBUF, protobuf_push([(labels, [(whole, "seq=60 same second, other line"),
                                            (whole + 5, "seq=61 not whole")])])),
        (PROTOBUF, protobuf_push([(labels, [(whole + 7, "seq=62 a")]),
                                  ('{job="b"}', [(whole, "seq=63 b")])])),
    ])
    assert answers == [204] * 3
    assert fast.fast_pushes == 1
    assert fast.count == 54


def test_structured_metadata_is_checked_in_bulk_and_over_a_limit_gets_the_full_answer() -> None:
    labels = '{job="opensips", level="ERROR"}'
    pairs = {"pid": "2311", "call_id": "a1@10.0.0.5", "status": "200"}
    ok = [(BASE_NS + i, f"t_reply: replied 200 OK n{i}", pairs) for i in range(200)]
    many = {f"k{i}": "v" for i in range(129)}
    large = {"blob": "x" * (64 * 1024)}
    fast, answers = both([
        (PROTOBUF, metadata_push(labels, ok)),
        (PROTOBUF, metadata_push(labels, [(BASE_NS + 500, "too many pairs", many)])),
        (PROTOBUF, metadata_push(labels, [(BASE_NS + 501, "too large", large)])),
        (PROTOBUF, metadata_push(labels, [(BASE_NS + 502, "at the limit",
                                           {f"k{i}": "v" for i in range(128)})])),
    ])
    assert answers == [204, 400, 400, 204]
    assert fast.fast_pushes == 2
    kept = FastLokiReceiver(keep_lines=True)  # lines (and their metadata) kept: the full path
    assert kept.handle_push(PROTOBUF, metadata_push(labels, ok[:3]))[0] == 204
    assert kept.fast_pushes == 0
    assert [e.metadata for e in kept.stream_entries()[labels]] == [tuple(pairs.items())] * 3


def test_bad_input_gets_the_full_receivers_answer() -> None:
    ok = numbered(0, 3)
    bad_nanos = PROTO["PushRequest"]()
    entry = bad_nanos.streams.add(labels='{job="a"}').entries.add(line="seq=1")
    entry.timestamp.seconds, entry.timestamp.nanos = 1_700_000_000, -1
    fast, answers = both([
        (PROTOBUF, b"not snappy at all"),
        (PROTOBUF, snappy(b"\xff\xff\xff")),
        (PROTOBUF, protobuf_push([("{job=bad}", ok)])),
        (PROTOBUF, protobuf_push([('{job="a"}', ok), ("{}", ok)])),
        (PROTOBUF, protobuf_push([])),
        (PROTOBUF, snappy(bad_nanos.SerializeToString())),
        ({"Content-Encoding": "snappy"}, protobuf_push([('{job="a"}', ok)])),
        (JSON, b"{not json"),
        (JSON, json_push([({"job": "j"}, [[BASE_NS, "number, not string"]])])),
        (JSON, json_push([({"job": "j"}, [["1 2", "spaced"]])])),
        (JSON, json_push([({"job": "j"}, [[str(1 << 63), "too big"]])])),
        ({**JSON, "Content-Encoding": "br"}, json_push([({"job": "j"}, [])])),
    ])
    assert answers == [400, 400, 400, 400, 422, 400, 400, 400, 400, 400, 400, 400]
    assert fast.fast_pushes == 0


def test_a_set_fault_sends_pushes_to_the_full_path() -> None:
    fast, full = FastLokiReceiver(), LokiReceiver(keep_lines=False)
    for receiver in (fast, full):
        receiver.fail_unavailable()
    body = protobuf_push([('{job="a"}', numbered(0, 3))])
    assert fast.handle_push(PROTOBUF, body)[0] == full.handle_push(PROTOBUF, body)[0] == 503
    assert outcome(fast) == outcome(full) and fast.fast_pushes == 0


LINE_PARTS = st.sampled_from(["seq=", "1", "42", " ", "\n", "x", " t=", "7", "é", "seq=3"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.lists(LINE_PARTS, max_size=6)
                                   .map("".join)), max_size=8), min_size=1, max_size=5),
       st.booleans())
def test_random_pushes_are_counted_alike(pushes: list[list[tuple[int, str]]],
                                         as_json: bool) -> None:
    bodies = []
    for entries in pushes:
        stamped = [(BASE_NS + ts, line) for ts, line in entries]
        if as_json:
            bodies.append((JSON, json_push([({"job": "p"}, [[str(ts), line]
                                                            for ts, line in stamped])])))
        else:
            bodies.append((PROTOBUF, protobuf_push([('{job="p"}', stamped)])))
    both(bodies)


@given(st.lists(st.lists(st.sampled_from([" t=12", " t=3 ", " t=", "x", " ", "\n", "9"]),
                         max_size=5)
                .map("".join), max_size=6))
def test_write_times_are_read_as_the_benches_always_read_them(lines: list[str]) -> None:
    expected = []
    for line in lines:  # bench/e2e_loki.py's TimingReceiver, as it was (a bad value skipped)
        mark = line.find(" t=")
        if mark >= 0:
            end = line.find(" ", mark + 3)
            value = line[mark + 3:end if end > 0 else None]
            with contextlib.suppress(ValueError):
                expected.append(int(value))
    assert write_times_ns(lines) == expected


def post(url: str, headers: dict[str, str], body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_receiver_process_answers_and_reports_over_http() -> None:
    with LokiReceiverProcess() as receiver:
        written = time.time_ns()
        lines = [(BASE_NS + i, f"seq={i} t={written} pad") for i in range(50)]
        assert post(receiver.push_url, PROTOBUF, protobuf_push([('{job="a"}', lines)])) == 204
        assert post(receiver.push_url, PROTOBUF, b"garbage") == 400
        assert receiver.count == 50 and receiver.numbered == 50
        assert len(receiver.latencies_ms) == 50
        assert all(0 <= ms < 60_000 for ms in receiver.latencies_ms)
        [arrival] = receiver.arrivals
        assert arrival.lines == 50 and arrival.delays == 50
        assert arrival.monotonic == receiver.last_arrival <= time.monotonic()
        assert receiver.stats()["by_status"] == {"204": 1, "400": 1}
        assert receiver.received_seq_numbers() == {i: 1 for i in range(50)}
        receiver.fail_unavailable()
        assert post(receiver.push_url, PROTOBUF, protobuf_push([('{job="a"}', lines)])) == 503
        receiver.clear_faults()
        assert post(receiver.push_url, PROTOBUF, protobuf_push([('{job="a"}', lines)])) == 204
        assert receiver.stats()["exact_duplicates"] == 50
