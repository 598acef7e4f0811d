"""Classifying Loki push outcomes, and the backoff between retries."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from logcap.dispatch.retry import backoff_ceiling, retry_delay
from logcap.sinks.loki.response import (
    MAX_MESSAGE_BYTES,
    REASONS,
    OutcomeKind,
    classify,
    parse_retry_after,
)
from logcap.sinks.loki.session import PushConnectionError, PushTimeout, PushTransportError

SUCCESS, RETRY, SPLIT, REJECT = (
    OutcomeKind.SUCCESS,
    OutcomeKind.RETRY,
    OutcomeKind.SPLIT,
    OutcomeKind.REJECT,
)


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (200, SUCCESS, "ok"),
        (201, SUCCESS, "ok"),
        (204, SUCCESS, "ok"),
        (299, SUCCESS, "ok"),
        (429, RETRY, "rate_limited"),
        (408, RETRY, "timeout"),
        (500, RETRY, "server_error"),
        (502, RETRY, "server_error"),
        (503, RETRY, "server_error"),
        (504, RETRY, "server_error"),
        (599, RETRY, "server_error"),
        (413, SPLIT, "too_large"),
        (400, REJECT, "bad_request"),
        (401, REJECT, "unauthorized"),
        (403, REJECT, "forbidden"),
        (404, REJECT, "not_found"),
        (409, REJECT, "client_error"),
        (422, REJECT, "client_error"),
        (499, REJECT, "client_error"),
        (501, REJECT, "not_implemented"),
        (100, REJECT, "unexpected_status"),
        (301, REJECT, "unexpected_status"),
        (304, REJECT, "unexpected_status"),
    ],
)
def test_each_status_code_has_one_outcome_and_a_known_reason(status, kind, reason):
    outcome = classify(status, {}, "")
    assert (outcome.kind, outcome.reason, outcome.status) == (kind, reason, status)
    assert outcome.reason in REASONS
    assert outcome.retryable is (kind is RETRY)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError("timed out"), "timeout"),
        (TimeoutError("timed out"), "timeout"),
        (requests.exceptions.ConnectTimeout("connect"), "timeout"),
        (requests.exceptions.ReadTimeout("read"), "timeout"),
        (ConnectionRefusedError(111, "refused"), "connection"),
        (ConnectionResetError(104, "reset"), "connection"),
        (socket.gaierror(-2, "Name or service not known"), "connection"),
        (requests.exceptions.ConnectionError("refused"), "connection"),
        (requests.exceptions.SSLError("certificate verify failed"), "connection"),
        (requests.exceptions.ChunkedEncodingError("broken"), "connection"),
        (requests.exceptions.InvalidURL("bad url"), "transport_error"),
        (RuntimeError("surprise"), "transport_error"),
        # what the sink's transport raises (logcap.sinks.loki.session)
        (PushTimeout("Read timed out. (read timeout=2)"), "timeout"),
        (PushConnectionError("[Errno 111] Connection refused"), "connection"),
        (PushTransportError("failed to decode it"), "transport_error"),
    ],
)
def test_transport_errors_are_retried_with_a_reason(error, reason):
    outcome = classify(None, None, "", error)
    assert (outcome.kind, outcome.reason, outcome.status) == (RETRY, reason, None)
    assert outcome.reason in REASONS
    assert type(error).__name__ in outcome.message


def test_classifying_nothing_is_a_programming_error():
    with pytest.raises(ValueError):
        classify(None, None, "", None)


def test_lokis_reason_text_is_kept_for_a_rejection():
    outcome = classify(400, {}, "  entry for stream '{a=\"b\"}' has 16 label names; limit 15\n")
    assert outcome.message == "entry for stream '{a=\"b\"}' has 16 label names; limit 15"


def test_the_reason_text_is_cut_to_one_kibibyte_at_a_character_boundary():
    outcome = classify(400, {}, "\u00e9" * 2000)
    assert len(outcome.message.encode()) <= MAX_MESSAGE_BYTES
    assert outcome.message == "\u00e9" * (MAX_MESSAGE_BYTES // 2)


def test_retry_after_in_seconds_is_read_from_a_429():
    assert classify(429, {"Retry-After": "7"}, "").retry_after_s == 7.0


def test_retry_after_is_found_whatever_the_header_case():
    assert classify(503, {"retry-after": "3"}, "").retry_after_s == 3.0
    assert classify(503, CaseInsensitiveDict({"RETRY-AFTER": "4"}), "").retry_after_s == 4.0


def test_retry_after_as_an_http_date_is_relative_to_now():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    outcome = classify(429, {"Retry-After": later}, "", now=now.timestamp())
    assert outcome.retry_after_s == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
        ("Wed, 01 May 2024 12:01:00 -0000", 60.0),
    ],
)
def test_retry_after_values_parse_to_non_negative_seconds_or_none(value, seconds):
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now) == seconds


def test_retry_after_is_ignored_where_it_means_nothing():
    assert classify(200, {"Retry-After": "5"}, "").retry_after_s is None
    assert classify(413, {"Retry-After": "5"}, "").retry_after_s is None
    assert classify(400, {"Retry-After": "5"}, "").retry_after_s is None


def test_the_backoff_ceiling_doubles_per_attempt_and_stops_at_the_maximum():
    ceilings = [backoff_ceiling(a, 0.5, 30.0) for a in range(1, 10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_huge_attempt_number_does_not_overflow():
    assert backoff_ceiling(10_000, 1.0, 60.0) == 60.0
    assert retry_delay(10_000, 1.0, 60.0, random.Random(1)) <= 60.0


def test_jittered_delays_stay_within_zero_and_the_ceiling_and_spread_out():
    rng = random.Random(42)
    delays = [retry_delay(4, 1.0, 60.0, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 1.0 and max(delays) > 7.0


def test_delays_grow_with_attempts_on_average():
    rng = random.Random(7)

    def mean(attempt: int) -> float:
        return sum(retry_delay(attempt, 1.0, 1000.0, rng) for _ in range(500)) / 500

    means = [mean(a) for a in (1, 3, 5, 7)]
    assert means == sorted(means)
    assert means[-1] > 10 * means[0]


def test_the_same_seed_gives_the_same_delays():
    a = [retry_delay(n, 1.0, 30.0, random.Random(3)) for n in range(1, 6)]
    b = [retry_delay(n, 1.0, 30.0, random.Random(3)) for n in range(1, 6)]
    assert a == b


def test_retry_after_sets_a_floor_under_the_jittered_delay():
    rng = random.Random(0)
    assert all(retry_delay(1, 1.0, 30.0, rng, retry_after_s=12.0) >= 12.0 for _ in range(100))


def test_a_longer_jittered_delay_still_wins_over_a_short_retry_after():
    rng = random.Random(5)
    delays = [retry_delay(10, 1.0, 100.0, rng, retry_after_s=0.5) for _ in range(200)]
    assert max(delays) > 50.0


def test_retry_after_is_capped_at_five_minutes_by_default():
    rng = random.Random(0)
    assert retry_delay(1, 1.0, 30.0, rng, retry_after_s=86_400.0) == 300.0
    assert retry_delay(1, 1.0, 30.0, rng, retry_after_s=float("inf")) == 300.0
    assert retry_delay(1, 1.0, 30.0, rng, retry_after_s=600.0, max_retry_after_s=60.0) == 60.0


def test_a_meaningless_retry_after_is_ignored():
    rng = random.Random(0)
    assert retry_delay(1, 1.0, 1.0, rng, retry_after_s=float("nan")) <= 1.0
    assert retry_delay(1, 1.0, 1.0, rng, retry_after_s=-3.0) <= 1.0


def test_negative_backoff_bounds_are_refused():
    with pytest.raises(ValueError):
        backoff_ceiling(1, -1.0, 10.0)
