"""The status summary behind the status page and ``logcap status``: built from counters and
actor answers (pure), rates between two summaries, the recent-errors log handler, the
``/status.json`` route of a running agent, and ``logcap status`` against it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from logcap.agent import Agent
from logcap.api.app import create_app
from logcap.api.recent_errors import RecentErrors
from logcap.api.status import STREAMS_SHOWN, counter_totals, rates, summarize
from logcap.cli.main import main
from logcap.cli.status import format_status
from logcap.config import load_config
from logcap.metrics import REGISTRY
from tests.actor_kit import wait_until
from tests.harness import NumberedWriter, make_config

ROWS = [
    {"name": "root/sources/app", "status": "running", "restarts": 0, "crashes": 0,
     "last_error": "", "supervisor": False,
     "mailbox": {"data_depth": 3, "capacity": 64}},
    {"name": "root/sinks/loki", "status": "restarting", "restarts": 2, "crashes": 2,
     "last_error": "ConnectionError: refused", "supervisor": False},
]
SOURCE_STATUS = {"source": "app", "lag_bytes": 4096, "errors": {"/var/log/x.log": "EACCES"},
                 "files": 1, "most_lagging": [{"path": "/var/log/app.log", "lag_bytes": 4096}],
                 "stats": {"containers": [{"name": "web", "unacked_bytes": 10,
                                           "lag_seconds": 1.5}]}}
BUFFER = {"bytes": 2048, "oldest_age_s": 12.345, "sinks": {"loki": {"lag_batches": 7}}}
DLQ = {"entries": 2, "lines": 30, "total_bytes": 999}


def _totals() -> dict[str, Any]:
    registry = CollectorRegistry()
    lines = Counter("logcap_source_lines_total", "", ["source"], registry=registry)
    sent = Counter("logcap_sink_lines_total", "", ["sink", "outcome"], registry=registry)
    requests = Counter("logcap_sink_requests_total", "", ["sink", "reason"], registry=registry)
    Counter("logcap_source_bytes_total", "", ["source"], registry=registry).labels("app").inc(50)
    lines.labels("app").inc(10)
    sent.labels("loki", "sent").inc(8)
    sent.labels("loki", "failed").inc(2)
    requests.labels("loki", "ok").inc(3)
    requests.labels("loki", "server_error").inc(1)
    return counter_totals(registry.collect())


def _summary(now: float = 100.0, **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        now=now, uptime_s=60.04, version="9.9", healthy=False, rows=ROWS,
        sources={"root/sources/app": SOURCE_STATUS}, sinks={"loki": "root/sinks/loki"},
        totals=_totals(),
        buffer=BUFFER, buffer_capacity=1 << 20, dlq=DLQ,
        errors=[{"time": 99.0, "level": "error", "logger": "logcap.x", "message": "boom"}])
    args.update(changes)
    return summarize(**args)


def test_counter_totals_reads_lines_by_source_and_sink_outcome_and_requests_by_reason() -> None:
    assert _totals() == {"sources": {"app": {"lines": 10.0, "bytes": 50.0}},
                         "sinks": {"loki": {"sent": 8.0, "failed": 2.0}},
                         "requests": {"loki": {"ok": 3.0, "server_error": 1.0}}}


def test_the_summary_joins_components_sources_sinks_buffer_dlq_and_errors() -> None:
    doc = _summary()
    assert doc["components"][0] == {
        "name": "root/sources/app", "status": "running", "restarts": 0, "crashes": 0,
        "last_error": "", "mailbox_depth": 3, "mailbox_capacity": 64}
    assert doc["components"][1]["mailbox_capacity"] is None
    [source] = doc["sources"]
    assert source == {
        "name": "app", "status": "running", "lines": 10, "bytes": 50, "lag_bytes": 4096,
        "problems": ["/var/log/x.log: EACCES"],
        "streams": [{"kind": "file", "name": "/var/log/app.log", "lag_bytes": 4096},
                    {"kind": "container", "name": "web", "lag_bytes": 10,
                     "lag_seconds": 1.5}],
        "streams_total": 2}
    assert doc["sinks"] == [{"name": "loki", "status": "restarting", "sent": 8, "failed": 2,
                             "rejected": 0, "dropped": 0, "retries": {"server_error": 1}}]
    assert doc["buffer"] == {"enabled": True, "bytes": 2048, "capacity": 1 << 20,
                             "oldest_age_s": 12.3, "backlog": {"loki": 7}}
    assert doc["dlq"] == {"enabled": True, "entries": 2, "lines": 30, "bytes": 999}
    assert doc["errors"][0]["message"] == "boom"
    assert _summary(buffer=None, dlq=None)["buffer"] == {"enabled": False}
    assert json.loads(json.dumps(doc)) == doc


def test_rates_are_lines_per_second_between_two_summaries_and_survive_a_restart() -> None:
    before = _summary(now=100.0)
    after = _summary(now=102.0)
    after["sources"][0]["lines"] = 30
    after["sinks"][0]["sent"] = 28
    assert rates(before, after) == {"sources": {"app": 10.0},
                                    "sinks": {"loki": {"sent": 10.0, "failed": 0.0}}}
    after["sources"][0]["lines"] = 4  # counters went down: the agent restarted
    assert rates(before, after)["sources"] == {"app": 2.0}
    assert rates(after, before) == {"sources": {}, "sinks": {}}


def test_the_text_summary_shows_rates_problems_streams_and_troubled_components() -> None:
    doc = _summary()
    text = format_status(doc, {"sources": {"app": 12.5},
                               "sinks": {"loki": {"sent": 3.0, "failed": 1.0}}})
    assert text.splitlines()[0] == "logcap 9.9: DEGRADED, up 60s"
    assert "  app [running] in 12.5/s lines=10 lag=4.0 KiB" in text
    assert "    problem: /var/log/x.log: EACCES" in text
    assert "sent 3.0/s failed 1.0/s sent=8 failed=2" in text and "server_error=1" in text
    assert "  app container web: 10 B 1.5s" in text
    assert "disk buffer: 2.0 KiB of 1.0 MiB, oldest 12s, records not yet sent: loki=7" in text
    assert "dlq: 2 entries, 30 lines, 999 B" in text
    assert "  root/sinks/loki [restarting] restarts=2: ConnectionError: refused" in text
    assert "error logcap.x: boom" in text
    assert "in -" in format_status(doc, None)


def test_the_text_summary_names_each_component_not_ok_with_its_reason_and_since() -> None:
    doc = _summary(health="failing", troubles=[
        {"name": "root/sinks/loki", "health": "failing", "reason": "restarting", "since": 0.0},
        {"name": "root/sources/app", "health": "degraded", "reason": "include matches no "
         "file: /x/*.log", "since": None}])
    assert doc["health"] == "failing"
    lines = format_status(doc, None).splitlines()
    assert lines[:3] == ["logcap 9.9: FAILING, up 60s",
                         "  root/sinks/loki failing since 1970-01-01T00:00:00Z: restarting",
                         "  root/sources/app degraded: include matches no file: /x/*.log"]


def test_recent_errors_keeps_the_last_warnings_and_errors_only() -> None:
    handler = RecentErrors(keep=3)
    log = logging.getLogger("logcap.test-recent")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.info("not kept")
        for n in range(5):
            log.warning("problem %d", n)
        log.error("bad %s", "x" * 1000)
    finally:
        log.removeHandler(handler)
    kept = handler.recent()
    assert [e["message"][:5] for e in kept] == ["probl", "probl", "bad x"]
    assert [e["message"] for e in kept][:2] == ["problem 3", "problem 4"]
    assert len(kept[-1]["message"]) == 500  # cut; the whole line is in the log
    assert kept[-1]["level"] == "error" and kept[-1]["logger"] == "logcap.test-recent"


class _Backend:
    admin_token = ""

    def status(self) -> dict[str, Any]:
        return _summary()


def test_status_json_serves_the_backends_summary_and_slash_the_page() -> None:
    client = create_app(_Backend()).test_client()  # type: ignore[arg-type]
    assert client.get("/status.json").json["sinks"][0]["name"] == "loki"
    page = client.get("/")
    assert page.status_code == 200 and b"<title>logcap status</title>" in page.data


def test_a_running_agent_summarises_its_flow_and_logcap_status_prints_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").mkdir()
    config_path = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")],
                              disk_buffer={"enabled": True,
                                           "directory": str(tmp_path / "buffer")},
                              dlq={"directory": str(tmp_path / "dlq")})
    NumberedWriter(tmp_path / "logs" / "app.log").write(500)
    config = load_config(config_path, {})
    # the metrics registry is the process's: earlier in-process agents counted too
    before = counter_totals(REGISTRY.collect())
    read_before = int(before["sources"].get("app", {}).get("lines", 0))
    sent_before = int(before["sinks"].get("file", {}).get("sent", 0))
    agent = Agent(config, str(config_path))
    agent.start()
    try:
        wait_until(lambda: agent.status()["sinks"][0]["sent"] >= sent_before + 500,
                   timeout=30, what="500 lines sent")
        logging.getLogger("logcap.test").warning("something to see")
        doc = agent.status()
        assert doc["healthy"] is True
        assert {c["name"] for c in doc["components"]} >= {
            "root/sources/app", "root/sinks/file", "root/state/buffer", "root/state/dlq"}
        [source] = doc["sources"]
        assert source["lines"] - read_before == 500 and source["streams"][0]["kind"] == "file"
        assert doc["buffer"]["enabled"] and doc["buffer"]["capacity"] == \
            config.disk_buffer.max_total_size
        assert doc["dlq"] == {"enabled": True, "entries": 0, "lines": 0, "bytes": 0}
        assert doc["errors"][-1]["message"] == "something to see"
        assert main(["status", "-c", str(config_path), "--interval", "0.2"]) == 0
        out = capsys.readouterr().out
        assert "logcap " in out and ": ok, up " in out
        assert f"  app [running] in 0.0/s lines={read_before + 500:,}" in out
        assert "  file [running] sent 0.0/s" in out
        assert main(["status", "-c", str(config_path), "--interval", "0", "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["rates"] is None
        assert answer["status"]["sinks"][0]["sent"] == sent_before + 500
    finally:
        agent.stop(10)


def test_logcap_status_without_an_agent_fails_with_exit_1(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", "http://127.0.0.1:9", "--interval", "0"]) == 1
    assert "cannot reach the agent at http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["status", "--interval", "-1"]) == 2


def test_a_source_buffer_or_dlq_not_running_is_shown_without_numbers() -> None:
    rows = [{**ROWS[0], "status": "restarting"}, ROWS[1]]
    doc = _summary(rows=rows, sources={"root/sources/app": {}}, buffer={}, dlq={})
    [source] = doc["sources"]
    assert source["status"] == "restarting" and source["lines"] == 10
    assert source["lag_bytes"] is None and source["streams"] == []
    assert source["streams_total"] == 0
    assert doc["buffer"] == {"enabled": True, "bytes": None, "capacity": 1 << 20,
                             "oldest_age_s": None, "backlog": {}}
    assert doc["dlq"] == {"enabled": True, "entries": None, "lines": None, "bytes": None}
    text = format_status(doc, None)
    assert "disk buffer: - of 1.0 MiB, oldest -, records not yet sent: -" in text
    assert "dlq: - entries, - lines, -" in text


def test_a_source_with_thousands_of_files_lists_only_its_largest_lags() -> None:
    # the file source sends its count and its most lagging files (SourceTailer.most_lagging)
    lagging = [{"path": f"/var/log/f{n:04d}.log", "lag_bytes": n} for n in range(999, 949, -1)]
    doc = _summary(sources={"root/sources/app": {"source": "app", "files": 1000,
                                                 "most_lagging": lagging}})
    [source] = doc["sources"]
    assert source["streams_total"] == 1000 and len(source["streams"]) == STREAMS_SHOWN
    assert [x["lag_bytes"] for x in source["streams"][:3]] == [999, 998, 997]
    assert f"... {1000 - STREAMS_SHOWN:,} more (the largest lags are shown)" in \
        format_status(doc, None)
