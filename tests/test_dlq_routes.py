"""The DLQ endpoints of the admin API, through Flask's test client and a fake backend."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request

from logcap.api.dlq_routes import register_dlq_routes
from logcap.api.errors import BackendTimeout

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ID = "0123456789abcdef0123456789abcdef"


class FakeBackend:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls: list[dict[str, Any]] = []

    def dlq_stats(self) -> dict[str, Any]:
        if self.hang:
            raise BackendTimeout("dlq did not answer in time")
        return {"entries": 2, "by_sink": {"loki": {"entries": 2, "lines": 5, "bytes": 90}}}

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]:
        if self.hang:
            raise BackendTimeout("dlq did not answer in time")
        self.calls.append(filters)
        return {"dry_run": filters["dry_run"], "matched": 1, "queued": [ID],
                "skipped_already_reprocessed": []}


def make_app(backend: FakeBackend, token: str = TOKEN) -> Flask:
    app = Flask("test")

    def authorized() -> Response | None:  # the pattern of logcap.api.app
        if not token:
            resp = jsonify({"error": "admin_token is not configured"})
            resp.status_code = 403
            return resp
        sent = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
            resp = jsonify({"error": "missing or wrong admin token"})
            resp.status_code = 401
            return resp
        return None

    register_dlq_routes(app, backend, authorized)
    return app


def test_stats_answer_the_backends_numbers_without_a_token() -> None:
    resp = make_app(FakeBackend()).test_client().get("/dlq/stats")
    assert resp.status_code == 200 and resp.json["by_sink"]["loki"]["lines"] == 5


def test_reprocess_without_the_token_is_401_and_reaches_no_backend() -> None:
    backend = FakeBackend()
    client = make_app(backend).test_client()
    assert client.post("/dlq/reprocess", json={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/dlq/reprocess", json={}, headers=wrong).status_code == 401
    assert backend.calls == []


def test_reprocess_with_no_token_configured_is_403() -> None:
    resp = make_app(FakeBackend(), token="").test_client().post("/dlq/reprocess", headers=AUTH)
    assert resp.status_code == 403


def test_reprocess_with_the_token_queues_and_answers_the_ids() -> None:
    backend = FakeBackend()
    resp = make_app(backend).test_client().post(
        "/dlq/reprocess", headers=AUTH,
        json={"sink": "loki", "reason": "bad_request", "ids": [ID], "since": 1700000000,
              "until": "2030-01-01T00:00:00Z", "dry_run": False})
    assert resp.status_code == 200 and resp.json["queued"] == [ID]
    assert backend.calls == [{"sink": "loki", "reason": "bad_request", "ids": [ID],
                              "since": 1700000000.0, "until": 1893456000.0, "dry_run": False}]


def test_an_empty_body_selects_everything() -> None:
    backend = FakeBackend()
    resp = make_app(backend).test_client().post("/dlq/reprocess", headers=AUTH)
    assert resp.status_code == 200
    assert backend.calls == [{"sink": None, "reason": None, "ids": None, "since": None,
                              "until": None, "dry_run": False}]


def test_rfc3339_times_with_an_offset_are_converted_to_unix_seconds() -> None:
    backend = FakeBackend()
    make_app(backend).test_client().post(
        "/dlq/reprocess", headers=AUTH, json={"since": "2023-11-14T23:13:20.5+01:00"})
    assert backend.calls[0]["since"] == 1700000000.5


@pytest.mark.parametrize(("body", "complaint"), [
    ("[1, 2]", "JSON object"),
    ("{not json", "not valid JSON"),
    ('{"sinks": "loki"}', "unknown keys ['sinks']"),
    ('{"sink": ""}', "sink: expected a non-empty string"),
    ('{"reason": 4}', "reason: expected a non-empty string"),
    ('{"ids": "abc"}', "ids: expected a list"),
    ('{"ids": ["xyz"]}', "'xyz' is not an entry id"),
    ('{"since": "yesterday"}', "since: 'yesterday' is not an RFC 3339 time"),
    ('{"since": "2024-01-01T00:00:00"}', "has no time zone"),
    ('{"until": -5}', "until: must be a non-negative"),
    ('{"since": true}', "since: expected unix seconds"),
    ('{"since": 20, "until": 10}', "since: must not be after until"),
    ('{"dry_run": "yes"}', "dry_run: expected true or false"),
])
def test_bad_filters_are_a_400_that_says_what_is_wrong(body: str, complaint: str) -> None:
    backend = FakeBackend()
    resp = make_app(backend).test_client().post(
        "/dlq/reprocess", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert resp.status_code == 400
    assert complaint in resp.json["error"]
    assert backend.calls == []


def test_a_backend_timeout_is_a_503_not_a_hung_request() -> None:
    client = make_app(FakeBackend(hang=True)).test_client()
    assert client.get("/dlq/stats").status_code == 503
    resp = client.post("/dlq/reprocess", headers=AUTH, json={"dry_run": True})
    assert resp.status_code == 503 and resp.json["error"] == "timeout"
