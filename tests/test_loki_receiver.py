"""The Loki test receiver: Loki's push API, its validation, the faults, and its records."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cramjam
import pytest
import requests

from logcap.sinks.loki.labels import LabelPolicy, render_labels
from logcap.sinks.loki.request import LokiEntry, LokiStream, PushRequest, build_push_request
from logcap.sinks.loki.response import OutcomeKind, classify
from tests.loki_receiver import PROTO, PUSH_PATH, LokiReceiver, seq_number

RECEIVER_SCRIPT = Path(__file__).with_name("loki_receiver.py")
NOW_NS = 1_700_000_000_000_000_000


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rx = LokiReceiver().start()
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def stream(labels: str, *lines: str, start: int = NOW_NS) -> LokiStream:
    return LokiStream(labels, [LokiEntry(start + i, line) for i, line in enumerate(lines)])


def push(http: requests.Session, rx: LokiReceiver, req: PushRequest) -> requests.Response:
    return http.post(rx.push_url, data=req.body, headers=dict(req.headers), timeout=10)


def post_json(http: requests.Session, rx: LokiReceiver, doc: object, **headers: str):
    body = json.dumps(doc).encode()
    return http.post(rx.push_url, data=body, timeout=10,
                     headers={"Content-Type": "application/json", **headers})


def raw_protobuf(labels: str, line: str, ts_ns: int = NOW_NS) -> bytes:
    """A snappy-compressed PushRequest built with the protobuf runtime, not our encoder."""
    msg = PROTO["PushRequest"]()
    s = msg.streams.add()  # type: ignore[attr-defined]
    s.labels = labels
    e = s.entries.add()
    e.timestamp.seconds, e.timestamp.nanos = divmod(ts_ns, 1_000_000_000)
    e.line = line
    return bytes(cramjam.snappy.compress_raw(msg.SerializeToString()))


def post_protobuf(http: requests.Session, rx: LokiReceiver, body: bytes) -> requests.Response:
    return http.post(rx.push_url, data=body, timeout=10,
                     headers={"Content-Type": "application/x-protobuf"})


# --- the push API ----------------------------------------------------------------------------


def test_a_protobuf_push_is_answered_204_and_recorded_per_stream(receiver, http):
    req = build_push_request([stream('{job="a", host="h"}', "one", "two"),
                              stream('{job="b"}', "three")])
    resp = push(http, receiver, req)
    assert (resp.status_code, resp.content) == (204, b"")
    assert receiver.streams() == {
        '{host="h", job="a"}': [(NOW_NS, "one"), (NOW_NS + 1, "two")],
        '{job="b"}': [(NOW_NS, "three")],
    }


def test_structured_metadata_and_a_tenant_are_accepted(receiver, http):
    entry = LokiEntry(NOW_NS, "with metadata", (("trace_id", "abc"),))
    req = build_push_request([LokiStream('{job="a"}', [entry])], tenant_id="team-a")
    assert push(http, receiver, req).status_code == 204
    assert receiver.requests()[-1].tenant == "team-a"


@pytest.mark.parametrize("use_gzip", [False, True])
def test_json_pushes_are_accepted_with_or_without_gzip(receiver, http, use_gzip):
    req = build_push_request([stream('{job="a"}', "h\u00e9llo", "")], encoding="json",
                             gzip=use_gzip)
    assert push(http, receiver, req).status_code == 204
    assert receiver.streams() == {'{job="a"}': [(NOW_NS, "h\u00e9llo"), (NOW_NS + 1, "")]}


def test_a_deflate_encoded_json_push_is_accepted(receiver, http):
    doc = {"streams": [{"stream": {"job": "a"}, "values": [[str(NOW_NS), "x"]]}]}
    packer = zlib.compressobj(wbits=-15)
    body = packer.compress(json.dumps(doc).encode()) + packer.flush()
    resp = http.post(receiver.push_url, data=body, timeout=10,
                     headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert resp.status_code == 204


def test_a_json_content_type_with_parameters_is_still_json(receiver, http):
    doc = {"streams": [{"stream": {"job": "a"}, "values": [[str(NOW_NS), "x"]]}]}
    resp = post_json(http, receiver, doc, **{"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 204


def test_a_push_with_an_invalid_label_name_is_answered_400_with_lokis_reason(receiver, http):
    resp = post_protobuf(http, receiver, raw_protobuf('{app-name="x"}', "line"))
    assert resp.status_code == 400
    assert "Error parsing labels" in resp.text
    assert receiver.line_count == 0


def test_an_invalid_json_label_name_fails_the_same_way(receiver, http):
    doc = {"streams": [{"stream": {"k8s.pod": "x"}, "values": [[str(NOW_NS), "x"]]}]}
    resp = post_json(http, receiver, doc)
    assert resp.status_code == 400
    assert "Error parsing labels" in resp.text


def test_valid_streams_of_a_partly_invalid_push_are_still_ingested_as_loki_does(receiver, http):
    doc = {"streams": [{"stream": {"bad-name": "x"}, "values": [[str(NOW_NS), "lost"]]},
                       {"stream": {"good": "y"}, "values": [[str(NOW_NS), "kept"]]}]}
    assert post_json(http, receiver, doc).status_code == 400
    assert receiver.streams() == {'{good="y"}': [(NOW_NS, "kept")]}


def test_a_receiver_told_to_reject_whole_requests_keeps_nothing_of_a_partly_invalid_one(http):
    with LokiReceiver(partial_accept=False) as rx:
        doc = {"streams": [{"stream": {"bad-name": "x"}, "values": [[str(NOW_NS), "a"]]},
                           {"stream": {"good": "y"}, "values": [[str(NOW_NS), "b"]]}]}
        assert post_json(http, rx, doc).status_code == 400
        assert rx.line_count == 0


def test_fifteen_labels_are_accepted_and_sixteen_refused(receiver, http):
    fifteen = render_labels({f"l{i}": "v" for i in range(15)})
    sixteen = render_labels({f"l{i}": "v" for i in range(16)})
    assert post_protobuf(http, receiver, raw_protobuf(fifteen, "ok")).status_code == 204
    resp = post_protobuf(http, receiver, raw_protobuf(sixteen, "no"))
    assert resp.status_code == 400
    assert "has 16 label names; limit 15" in resp.text


def test_service_name_does_not_count_against_the_label_limit_as_in_loki(receiver, http):
    labels = render_labels({**{f"l{i}": "v" for i in range(15)}, "service_name": "svc"})
    assert post_protobuf(http, receiver, raw_protobuf(labels, "ok")).status_code == 204


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_our_label_policy_never_produces_a_stream_loki_refuses(receiver, http, encoding):
    dynamic = {f"field-{i}": f"v{i}" for i in range(30)} | {
        "__path__": "/x",
        "1st": "y",
        "odd": 'quote " backslash \\ newline \n bad \ufffd',
        "long": "x" * 5000,
    }
    labels = LabelPolicy({"host": "h1"}).build(dynamic).rendered
    req = build_push_request([stream(labels, "ok")], encoding=encoding)
    assert push(http, receiver, req).status_code == 204


def test_duplicate_label_names_are_refused(receiver, http):
    resp = post_protobuf(http, receiver, raw_protobuf('{a="1", a="2"}', "x"))
    assert resp.status_code == 400
    assert "duplicate label name" in resp.text


def test_empty_label_values_are_dropped_and_a_stream_left_with_none_is_refused(receiver, http):
    assert post_protobuf(http, receiver, raw_protobuf('{a="", b="x"}', "kept")).status_code == 204
    assert list(receiver.streams()) == ['{b="x"}']
    resp = post_protobuf(http, receiver, raw_protobuf('{a=""}', "lost"))
    assert resp.status_code == 400
    assert "at least one label pair" in resp.text


def test_a_literal_replacement_character_in_a_label_value_is_refused_but_our_escape_passes(
    receiver, http
):
    resp = post_protobuf(http, receiver, raw_protobuf('{a="x\ufffdy"}', "line"))
    assert resp.status_code == 400
    assert "invalid UTF-8 rune" in resp.text
    req = build_push_request([stream(render_labels({"a": "x\ufffdy"}), "line")])
    assert push(http, receiver, req).status_code == 204


@pytest.mark.parametrize(
    "timestamp", [NOW_NS, "17e17", "1.5", "", None, "99999999999999999999"]
)
def test_json_timestamps_must_be_strings_of_integer_nanoseconds(receiver, http, timestamp):
    doc = {"streams": [{"stream": {"a": "b"}, "values": [[timestamp, "line"]]}]}
    resp = post_json(http, receiver, doc)
    assert resp.status_code == 400
    assert receiver.line_count == 0


def test_a_json_push_with_a_bad_timestamp_keeps_nothing_of_the_request(receiver, http):
    doc = {"streams": [{"stream": {"a": "b"}, "values": [[str(NOW_NS), "good"], [1, "bad"]]}]}
    assert post_json(http, receiver, doc).status_code == 400
    assert receiver.line_count == 0


def test_lines_up_to_256_kib_are_accepted_and_longer_ones_refused(receiver, http):
    limit = 256 * 1024
    ok = build_push_request([stream('{a="b"}', "x" * limit)])
    assert push(http, receiver, ok).status_code == 204
    too_long = build_push_request([stream('{a="b"}', "y" * (limit + 1), "short")])
    resp = push(http, receiver, too_long)
    assert resp.status_code == 400
    assert f"Max entry size '{limit}' bytes exceeded" in resp.text
    assert [len(line) for _, line in receiver.streams()['{a="b"}']] == [limit, 5]


def test_a_push_without_streams_is_answered_422_and_empty_streams_are_ignored(receiver, http):
    assert post_json(http, receiver, {"streams": []}).status_code == 422
    doc = {"streams": [{"stream": {"a": "b"}, "values": []}]}
    assert post_json(http, receiver, doc).status_code == 204


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"\x00"),
        ({"Content-Type": "application/x-protobuf"}, b"not snappy at all"),
        ({"Content-Type": "application/x-protobuf"}, bytes(cramjam.snappy.compress_raw(b"\xff"))),
        ({"Content-Type": "application/json"}, b"{not json"),
        ({"Content-Type": "application/json", "Content-Encoding": "br"}, b"{}"),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"not gzip"),
    ],
)
def test_undecodable_pushes_are_answered_400(receiver, http, headers, body):
    resp = http.post(receiver.push_url, data=body, headers=headers, timeout=10)
    assert resp.status_code == 400
    assert resp.text.strip()


def test_the_ready_endpoint_answers_200_and_unknown_paths_404(receiver, http):
    assert http.get(receiver.url + "/ready", timeout=10).status_code == 200
    assert http.get(receiver.url + "/nope", timeout=10).status_code == 404
    assert http.post(receiver.url + "/nope", data=b"", timeout=10).status_code == 404


# --- faults ----------------------------------------------------------------------------------


def test_an_unavailable_receiver_answers_503_until_cleared_and_keeps_nothing(receiver, http):
    req = build_push_request([stream('{a="b"}', "x")])
    receiver.fail_unavailable()
    assert push(http, receiver, req).status_code == 503
    assert classify(503, {}, "").kind is OutcomeKind.RETRY
    receiver.clear_faults()
    assert push(http, receiver, req).status_code == 204
    assert receiver.line_count == 1


def test_an_outage_for_some_seconds_ends_by_itself(receiver, http):
    req = build_push_request([stream('{a="b"}', "x")])
    receiver.fail_unavailable(seconds=60)
    assert push(http, receiver, req).status_code == 503
    receiver.fail_unavailable(seconds=0)
    assert push(http, receiver, req).status_code == 204


def test_rate_limiting_answers_429_with_retry_after_for_a_number_of_requests(receiver, http):
    req = build_push_request([stream('{a="b"}', "x")])
    receiver.rate_limit(retry_after=3, count=2)
    answers = [push(http, receiver, req) for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 204]
    outcome = classify(answers[0].status_code, answers[0].headers, answers[0].text)
    assert (outcome.kind, outcome.retry_after_s) == (OutcomeKind.RETRY, 3.0)


def test_bodies_over_the_size_limit_are_answered_413(receiver, http):
    small = build_push_request([stream('{a="b"}', "x")])
    big = build_push_request([stream('{a="b"}', *[f"line {i} " + "z" * i for i in range(300)])])
    receiver.reject_bodies_over(len(small.body) + 10)
    assert push(http, receiver, small).status_code == 204
    resp = push(http, receiver, big)
    assert resp.status_code == 413
    assert classify(413, resp.headers, resp.text).kind is OutcomeKind.SPLIT


def test_lines_with_the_marker_are_refused_with_400_and_the_others_kept(receiver, http):
    receiver.reject_lines_containing("POISON")
    req = build_push_request([stream('{a="b"}', "fine seq=1", "POISON seq=2", "fine seq=3")])
    resp = push(http, receiver, req)
    assert resp.status_code == 400
    assert "POISON" in resp.text
    assert sorted(receiver.received_seq_numbers()) == [1, 3]


def test_latency_delays_the_answer_but_the_push_is_ingested_first(receiver, http):
    req = build_push_request([stream('{a="b"}', "slow")])
    receiver.set_latency(0.3, count=1)
    started = time.monotonic()
    assert push(http, receiver, req).status_code == 204
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert push(http, receiver, req).status_code == 204
    assert time.monotonic() - started < 0.3


def test_a_client_that_times_out_on_a_slow_answer_still_had_its_lines_stored(receiver, http):
    receiver.set_latency(5.0)
    req = build_push_request([stream('{a="b"}', "seq=1")])
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(receiver.push_url, data=req.body, headers=dict(req.headers), timeout=0.2)
    assert receiver.wait_for_lines(1, timeout=5)


def test_stopping_drops_connections_and_a_restart_comes_back_on_the_same_port(http):
    rx = LokiReceiver().start()
    port = rx.port
    req = build_push_request([stream('{a="b"}', "x")])
    assert push(http, rx, req).status_code == 204
    rx.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        http.post(f"http://127.0.0.1:{port}{PUSH_PATH}", data=req.body,
                  headers=dict(req.headers), timeout=5)
    rx.start()
    try:
        assert rx.port == port
        assert push(http, rx, req).status_code == 204
    finally:
        rx.stop()


def test_faults_can_be_set_and_cleared_over_http(receiver, http):
    req = build_push_request([stream('{a="b"}', "x")])
    spec = {"unavailable": True, "reject_marker": "BAD"}
    assert http.post(receiver.url + "/test/fault", json=spec, timeout=10).status_code == 200
    assert push(http, receiver, req).status_code == 503
    assert http.post(receiver.url + "/test/fault", json={"clear": True}, timeout=10).ok
    assert push(http, receiver, req).status_code == 204
    bad = http.post(receiver.url + "/test/fault", json={"explode": 1}, timeout=10)
    assert bad.status_code == 400


# --- records ---------------------------------------------------------------------------------


def test_numbered_lines_are_recognised_by_a_seq_field_or_a_leading_integer():
    assert seq_number("2024-01-01 level=info seq=42 msg=x") == 42
    assert seq_number("17 something happened") == 17
    assert seq_number("no number here") is None
    assert seq_number("subseq=5") is None


def test_resent_batches_show_as_duplicates_unless_lokis_exact_duplicate_rule_applies(
    receiver, http
):
    req = build_push_request([stream('{a="b"}', "seq=1", "seq=2")])
    push(http, receiver, req)
    push(http, receiver, req)
    other_ts = build_push_request([stream('{a="b"}', "seq=2", start=NOW_NS + 99)])
    push(http, receiver, other_ts)
    assert receiver.received_seq_numbers() == {1: 2, 2: 3}
    assert receiver.received_seq_numbers(dedupe=True) == {1: 1, 2: 2}
    stats = receiver.stats()
    assert stats["exact_duplicates"] == 2
    assert stats["seq"] == {"total": 5, "distinct": 2, "duplicates": 3,
                            "duplicates_after_dedupe": 1, "min": 1, "max": 2}


def test_stats_count_requests_lines_and_statuses_over_http(receiver, http):
    push(http, receiver, build_push_request([stream('{a="b"}', "1", "2")]))
    receiver.fail_unavailable()
    push(http, receiver, build_push_request([stream('{a="b"}', "3")]))
    stats = http.get(receiver.url + "/test/stats", timeout=10).json()
    assert stats["requests"] == 2
    assert stats["lines"] == 2
    assert stats["by_status"] == {"204": 1, "503": 1}
    seq = http.get(receiver.url + "/test/seq", timeout=10).json()
    assert seq["raw"] == {"1": 1, "2": 1}
    assert http.post(receiver.url + "/test/reset", timeout=10).ok
    assert receiver.stats()["lines"] == 0


def test_concurrent_pushes_are_all_counted(receiver):
    def worker(n: int) -> None:
        with requests.Session() as session:
            for i in range(10):
                seq = n * 100 + i
                req = build_push_request([stream(f'{{w="{n}"}}', f"seq={seq}")])
                assert push(session, receiver, req).status_code == 204

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert receiver.wait_for_lines(80, timeout=10)
    assert sum(receiver.received_seq_numbers().values()) == 80
    assert len(receiver.received_seq_numbers()) == 80


# --- as a separate process -------------------------------------------------------------------


def test_the_receiver_runs_as_a_process_with_a_fault_file(tmp_path, http):
    fault_file = tmp_path / "faults.json"
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER_SCRIPT), "--port", "0", "--fault-file", str(fault_file)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        assert http.get(url + "/ready", timeout=10).status_code == 200
        req = build_push_request([stream('{a="b"}', "seq=1")])

        def post() -> requests.Response:
            return http.post(url + PUSH_PATH, data=req.body, headers=dict(req.headers),
                             timeout=10)

        assert post().status_code == 204
        fault_file.write_text(json.dumps({"rate_limit": {"retry_after": 2}}))
        resp = post()
        assert (resp.status_code, resp.headers.get("Retry-After")) == (429, "2")
        fault_file.unlink()
        assert post().status_code == 204
        stats = http.get(url + "/test/stats", timeout=10).json()
        assert (stats["lines"], stats["by_status"]) == (2, {"204": 2, "429": 1})
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_gzip_bodies_from_other_clients_are_read_too(receiver, http):
    doc = {"streams": [{"stream": {"a": "b"}, "values": [[str(NOW_NS), "zipped"]]}]}
    body = gzip.compress(json.dumps(doc).encode())
    resp = http.post(receiver.push_url, data=body, timeout=10,
                     headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status_code == 204
    assert receiver.lines() == ["zipped"]
