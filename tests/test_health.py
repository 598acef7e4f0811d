"""The health vocabulary and /health's composition, without threads: a failure streak's log
events and threshold, each component's state and reason, the HTTP status, readiness."""

from __future__ import annotations

import requests

from logcap.api.health import SinceTracker, component_health, http_status, readiness
from logcap.runtime.health import DEGRADED, FIRST, RECOVERED, STILL, FailureStreak, Health
from logcap.sinks.loki.response import classify


def _row(name: str, status: str = "running", error: str = "") -> dict[str, object]:
    return {"name": name, "status": status, "last_error": error}


def test_a_failure_streak_logs_its_start_a_summary_per_interval_and_its_end() -> None:
    streak = FailureStreak(summary_interval_s=10)
    said = [streak.failed(t, "connection", "connection refused") for t in (100, 101, 109, 111)]
    assert said == [FIRST, None, None, STILL]
    assert streak.summary() == "4 failed (connection=4)"
    assert streak.health(129, 30, "requests to X").state == "ok"  # 29 s < the threshold
    health = streak.health(130, 30, "requests to X")
    assert health.state == DEGRADED and health.since == 100
    assert "requests to X failing for 30s" in health.reason
    assert "connection refused" in health.reason
    assert streak.succeeded() == RECOVERED and streak.succeeded() is None
    assert streak.health(200, 0, "X") == Health()


def test_components_not_running_fail_and_reports_sources_and_the_dlq_degrade() -> None:
    rows = [_row("root/state/positions"), _row("root/state/buffer"), _row("root/state/dlq"),
            _row("root/sinks/loki", "restarting", "ValueError: x"), _row("root/sources/app")]
    state, components = component_health(
        now=1000.0, rows=rows,
        reports={"root/state/positions": Health(DEGRADED, "writes to /p failing", 990.0)},
        buffer=("root/state/buffer", "disk full: no space left"),
        sources={"root/sources/app": {"errors": {"/a.log": "permission denied"},
                                      "unmatched_includes": ["/nowhere/*.log"], "files": 1}},
        dlq=("root/state/dlq", {"newest_entry_time": 900.0, "entries": 2,
                                "by_reason": {"bad_request": {"entries": 2}}}),
        tracker=SinceTracker())
    assert state == "failing" and http_status(state) == 503
    assert components["root/sinks/loki"]["health"] == "failing"
    assert components["root/sinks/loki"]["reason"] == "restarting: ValueError: x"
    assert components["root/state/positions"]["since"] == 990.0
    assert components["root/state/buffer"]["reason"] == "disk full: no space left"
    app = components["root/sources/app"]
    assert app["health"] == DEGRADED and app["problems"] == ["/a.log: permission denied"]
    assert "/a.log: permission denied" in app["reason"] and "/nowhere/*.log" in app["reason"]
    assert app["since"] == 1000.0 and app["files"] == 1
    assert components["root/state/dlq"]["health"] == DEGRADED
    assert "bad_request=2" in components["root/state/dlq"]["reason"]


def test_a_source_that_says_it_is_degraded_is_degraded_with_its_reason() -> None:
    _, components = component_health(
        now=1.0, rows=[_row("root/sources/c")], reports={}, buffer=None,
        sources={"root/sources/c": {"degraded": "engine unreachable"}}, dlq=None,
        tracker=SinceTracker())
    assert components["root/sources/c"]["health"] == DEGRADED
    assert components["root/sources/c"]["reason"] == "engine unreachable"


def test_degraded_is_200_and_an_old_dlq_entry_is_not_growing() -> None:
    tracker = SinceTracker()
    state, components = component_health(
        now=10_000.0, rows=[_row("root/state/dlq")], reports={}, buffer=None, sources={},
        dlq=("root/state/dlq", {"newest_entry_time": 1.0, "entries": 5}), tracker=tracker)
    assert state == "ok" and components["root/state/dlq"]["since"] is None
    assert http_status("degraded") == 200 and http_status("ok") == 200


def test_since_is_the_first_time_a_state_was_seen() -> None:
    tracker = SinceTracker()
    assert tracker.since("a", DEGRADED, 5.0) == 5.0
    assert tracker.since("a", DEGRADED, 9.0) == 5.0
    assert tracker.since("a", "ok", 10.0) is None
    assert tracker.since("a", DEGRADED, 11.0) == 11.0


def test_ready_only_once_started_and_every_component_runs() -> None:
    assert readiness(False, [])[0] is False
    ready, body = readiness(True, [_row("a"), _row("b", "restarting")])
    assert not ready and body["not_running"] == ["b"]
    assert readiness(True, [_row("a")])[0] is True


def test_a_refused_connection_is_described_in_a_few_words() -> None:
    try:
        requests.post("http://127.0.0.1:1/loki/api/v1/push", timeout=2)
    except requests.RequestException as exc:
        outcome = classify(None, error=exc)
    assert outcome.reason == "connection"
    assert outcome.message.startswith("connection refused: ConnectionError")
