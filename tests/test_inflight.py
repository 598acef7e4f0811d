"""The persisted in-flight batches (logcap.state.inflight): the rules and the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logcap.state.inflight import (
    EXHAUSTED,
    EXPIRED,
    INFLIGHT_FILE,
    RETRY,
    InflightBatches,
)

T0 = 1_800_000_000.0


def make(tmp_path: Path, retries: int = 2, ttl: float = 3600.0,
         timeout: float = 30.0) -> InflightBatches:
    batches = InflightBatches(str(tmp_path / "batches"), max_recovery_retries=retries,
                              batch_ttl_s=ttl, batch_timeout_s=timeout)
    assert batches.load(T0) == []
    return batches


def test_a_batch_is_recorded_when_sent_and_removed_when_done(tmp_path: Path) -> None:
    batches = make(tmp_path)
    record = batches.sent("loki", 7, 100, T0)
    assert (record.id, record.attempts, record.lines) == ("loki:7", 1, 100)
    assert batches.pending()["loki"]["batches"] == 1
    assert batches.done("loki", 7) is record
    assert len(batches) == 0 and batches.pending() == {}


def test_failures_retry_until_max_recovery_retries_then_the_batch_is_exhausted(
    tmp_path: Path
) -> None:
    batches = make(tmp_path, retries=2)
    verdicts = []
    for attempt in range(3):
        batches.sent("loki", 1, 10, T0 + attempt)
        verdicts.append(batches.failed("loki", 1, "http_503", 2.0, T0 + attempt))
    assert verdicts == [RETRY, RETRY, EXHAUSTED]
    record = batches.get("loki", 1)
    assert record is not None
    assert (record.attempts, record.failures, record.first_failure, record.last_failure,
            record.last_error, record.next_retry_at) == (3, 3, T0, T0 + 2, "http_503", T0 + 4)


def test_zero_recovery_retries_gives_up_at_the_first_failure(tmp_path: Path) -> None:
    batches = make(tmp_path, retries=0)
    batches.sent("loki", 1, 10, T0)
    assert batches.failed("loki", 1, "http_500", 1.0, T0) == EXHAUSTED


def test_a_batch_failing_past_its_ttl_expires(tmp_path: Path) -> None:
    batches = make(tmp_path, retries=100, ttl=60.0)
    batches.sent("loki", 1, 10, T0)
    assert batches.failed("loki", 1, "timeout", 1.0, T0) == RETRY
    batches.sent("loki", 1, 10, T0 + 30)
    assert batches.failed("loki", 1, "timeout", 1.0, T0 + 30) == RETRY
    batches.sent("loki", 1, 10, T0 + 61)
    assert batches.failed("loki", 1, "timeout", 1.0, T0 + 61) == EXPIRED


def test_records_survive_a_restart_with_their_attempts(tmp_path: Path) -> None:
    batches = make(tmp_path, retries=3)
    batches.sent("loki", 5, 10, T0)
    batches.failed("loki", 5, "http_503", 1.0, T0)
    batches.sent("file", 6, 20, T0)
    assert batches.persist(T0) is True
    assert batches.persist(T0) is False  # nothing changed since
    again = make(tmp_path, retries=3)
    record = again.get("loki", 5)
    assert record is not None and (record.attempts, record.failures) == (1, 1)
    again.sent("loki", 5, 10, T0 + 5)
    assert again.failed("loki", 5, "http_503", 1.0, T0 + 5) == RETRY
    assert again.get("loki", 5).failures == 2  # type: ignore[union-attr]
    assert again.get("file", 6) is not None


def test_records_below_the_acked_cursor_and_of_removed_sinks_are_forgotten(
    tmp_path: Path
) -> None:
    batches = make(tmp_path)
    for seq in (1, 2, 3):
        batches.sent("loki", seq, 1, T0)
    batches.sent("gone", 9, 1, T0)
    assert batches.forget_settled({"loki": 2}) == 3  # loki's 1 and 2, and the removed sink's
    assert [r["seq"] for r in batches.pending()["loki"]["records"]] == [3]


def test_a_batch_unanswered_for_batch_timeout_is_reported_once_per_attempt(
    tmp_path: Path
) -> None:
    batches = make(tmp_path, timeout=30.0)
    batches.sent("loki", 1, 1, T0)
    assert batches.overdue(T0 + 29) == []
    assert [r.id for r in batches.overdue(T0 + 31)] == ["loki:1"]
    assert batches.overdue(T0 + 60) == []
    batches.failed("loki", 1, "timeout", 1.0, T0 + 61)
    assert batches.overdue(T0 + 120) == []  # failed: waiting for its retry, not overdue
    batches.sent("loki", 1, 1, T0 + 121)
    assert [r.id for r in batches.overdue(T0 + 160)] == ["loki:1"]


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 9, "batches": []}', b'{"version": 1, "batches": {}}',
    b'{"version": 1, "batches": [{"sink": "loki"}]}', b'{"version": 1, "batches": [3]}',
    b'{"version": 1, "batches": [{"sink": "loki", "seq": "x", "lines": 1, "attempts": 1, '
    b'"first_sent": 0, "last_sent": 0}]}',
    b"\xff\xfe",
])
def test_a_corrupt_file_is_set_aside_named_and_the_set_starts_empty(
    tmp_path: Path, content: bytes
) -> None:
    directory = tmp_path / "batches"
    directory.mkdir()
    (directory / INFLIGHT_FILE).write_bytes(content)
    batches = InflightBatches(str(directory), max_recovery_retries=1, batch_ttl_s=60,
                              batch_timeout_s=30)
    problems = batches.load(T0)
    assert len(problems) == 1 and INFLIGHT_FILE in problems[0] and "set aside" in problems[0]
    assert len(batches) == 0
    aside = [p for p in directory.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == content  # kept for a post-mortem
    batches.sent("loki", 1, 1, T0)
    batches.persist(T0)
    assert json.loads((directory / INFLIGHT_FILE).read_bytes())["batches"][0]["seq"] == 1
