"""LokiService against the push receiver: caps, classification, credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logcap.config import parse_config
from logcap.messages import Entries, Outcome
from logcap.origin import FILE_KIND, ReadToken
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
