"""LokiService against the push receiver: caps, classification, credentials."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.config import parse_config
from logcap.messages import Entries, Outcome
from logcap.origin import FILE_KIND, ReadToken
from logcap.sinks.loki.request import (
    LokiStream,
    build_push_request,
    sorted_streams,
    split_in_halves,
)
from logcap.sinks.loki.service import LokiService
from tests.loki_receiver import LokiReceiver


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def loki_cfg(url: str, **loki: Any) -> Any:
    import yaml

    text = yaml.safe_dump({"sinks": {"loki": {"enabled": True, "url": url, **loki}}})
    return parse_config(text, {}).sinks.loki


def batch(lines: int, start: int = 0, labels: tuple[tuple[str, str], ...] = (("job", "a"),)
          ) -> tuple[Entries, ...]:
    token = ReadToken("app", FILE_KIND, None, 0, 1, "g1", 0)
    return (Entries("app", "/x.log", labels, [f"seq={start + i} " + "y" * 100
                                              for i in range(lines)], 1_000_000, token),)


def test_a_batch_over_batch_bytes_is_sent_in_several_requests(receiver: LokiReceiver) -> None:
    service = LokiService(loki_cfg(receiver.url, batch_bytes="10KiB"))
    verdict = service.deliver(batch(500))
    assert verdict.outcome is Outcome.DELIVERED
    assert len(receiver.requests()) >= 5
    assert sum(receiver.received_seq_numbers().values()) == 500


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_structured_metadata_counts_toward_batch_bytes(receiver: LokiReceiver,
                                                        encoding: str) -> None:
    # 20 lines of ~105 characters fit in 10 KiB; with two 300-character values (one name
    # twice: JSON keeps one of them, the cap counts both) each they do not
    parts = batch(20)
    part = parts[0]
    with_metadata = Entries(part.source, part.stream, part.labels, part.lines, part.ts_ns,
                            part.token, metadata=[(("k", "v" * 300), ("k", "w" * 300))] * 20)
    service = LokiService(loki_cfg(receiver.url, batch_bytes="10KiB", encoding=encoding))
    assert service.deliver(parts).outcome is Outcome.DELIVERED
    assert len(receiver.requests()) == 1
    assert service.deliver((with_metadata,)).outcome is Outcome.DELIVERED
    assert len(receiver.requests()) == 3
    assert sum(receiver.received_seq_numbers().values()) == 40


def test_an_outage_is_a_retry_with_the_reason(receiver: LokiReceiver) -> None:
    receiver.fail_unavailable()
    verdict = LokiService(loki_cfg(receiver.url)).deliver(batch(10))
    assert verdict.outcome is Outcome.RETRY and verdict.reason == "server_error"
    assert verdict.detail.startswith("HTTP 503: ")  # the status, then Loki's text


def test_a_refused_connection_is_a_retry() -> None:
    verdict = LokiService(loki_cfg("http://127.0.0.1:9", timeout="1s")).deliver(batch(1))
    assert verdict.outcome is Outcome.RETRY and verdict.reason in ("connection", "timeout")
    assert verdict.detail.startswith(("connection refused: ", "timeout"))


def test_a_bad_request_is_rejected_with_lokis_reason(receiver: LokiReceiver) -> None:
    receiver.reject_lines_containing("seq=3 ")
    verdict = LokiService(loki_cfg(receiver.url)).deliver(batch(5))
    assert verdict.outcome is Outcome.REJECTED and "seq=3" in verdict.detail


def test_too_many_streams_fold_into_the_overflow_stream(receiver: LokiReceiver) -> None:
    service = LokiService(loki_cfg(receiver.url, max_streams=2))
    for n in range(4):
        assert service.deliver(batch(1, n, (("job", f"j{n}"),))).outcome is Outcome.DELIVERED
    streams = receiver.streams()
    assert len(streams) == 3 and any("logcap_overflow" in s for s in streams)


def test_credentials_come_from_files_and_are_sent(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    basic = LokiService(loki_cfg("http://127.0.0.1:9", auth={
        "type": "basic", "username": "u", "password_file": str(secret)}))
    assert basic.session.auth == ("u", "hunter2")
    bearer = LokiService(loki_cfg("http://127.0.0.1:9", auth={"type": "bearer", "token": "t0k"}))
    assert bearer.session.headers["Authorization"] == "Bearer t0k"


PART_SPECS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]),  # the part's job label
              st.integers(0, 40),  # its ts_ns (line i at ts_ns + i, unless stamped)
              st.integers(0, 4),  # its lines
              st.one_of(st.none(), st.lists(st.integers(0, 40), min_size=4, max_size=4))),
    max_size=8)


@settings(max_examples=300, deadline=None)
@given(PART_SPECS, st.integers(1, 3))
def test_a_stream_said_to_be_ordered_is_in_order_and_sorts_as_unordered_would(
        specs: list[tuple[str, int, int, list[int] | None]], max_streams: int) -> None:
    """The order the sink knows of a stream (parts without their own timestamps, each at or
    after the previous one's last line; streams folded past ``max_streams`` too) is true, and
    the request sends the same entries as when every stream is checked."""
    token = ReadToken("app", FILE_KIND, None, 0, 1, "g1", 0)
    parts = tuple(Entries("app", "/x.log", (("job", job),), [f"{job}{ts}-{i}" for i in range(n)],
                          ts, token, timestamps=stamps[:n] if stamps is not None else None)
                  for job, ts, n, stamps in specs)
    service = LokiService(loki_cfg("http://127.0.0.1:9", max_streams=max_streams))
    streams = service.streams(parts)
    for stream in streams:
        if stream.ordered:
            stamps = [entry[0] for entry in stream.entries]
            assert stamps == sorted(stamps)
    filled = [spec for spec in specs if spec[2]]
    if all(stamps is None for _, _, _, stamps in filled) and all(
            b[1] >= a[1] + a[2] - 1 for a, b in pairwise(filled)):  # so each stream's too
        assert all(stream.ordered for stream in streams if stream.entries)
    unhinted = [LokiStream(s.labels, s.entries) for s in streams]
    assert [(s.labels, s.entries) for s in sorted_streams(streams)] == \
        [(s.labels, s.entries) for s in sorted_streams(unhinted)]
    assert build_push_request(streams).body == build_push_request(unhinted).body


def test_sorted_streams_and_split_halves_are_ordered() -> None:
    stream = LokiStream('{job="a"}', [(3, "c", ()), (1, "a", ()), (2, "b", ())])
    (ordered,) = sorted_streams([stream])
    assert ordered.ordered and [e[0] for e in ordered.entries] == [1, 2, 3]
    assert ordered == LokiStream(stream.labels, ordered.entries)  # the hint is no part of it
    first, second = split_in_halves([stream])
    assert all(s.ordered for s in first + second)
