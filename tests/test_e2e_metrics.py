"""The /metrics exposition of a running logcap (Loki sink, disk buffer, DLQ) after real
traffic: checked by Prometheus' own ``promtool check metrics`` (DESIGN.md §10) and read back
with prometheus_client's parser for the values a dashboard needs; every metric the Grafana
dashboard and the alert rules (deploy/) name is in it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.actor_kit import wait_until
from tests.deploy_files import alert_rules, dashboard_expressions, metric_names
from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

LINES = 2_000


@pytest.fixture
def exposition(tmp_path: Path) -> Iterator[str]:
    receiver = LokiReceiver(keep_lines=False).start()
    (tmp_path / "logs").mkdir()
    config = make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        sinks={"file": {"enabled": True}, "loki": {"enabled": True, "url": receiver.url}},
        disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")},
        dlq={"directory": str(tmp_path / "dlq")},
    )
    NumberedWriter(tmp_path / "logs" / "app.log").write(LINES)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: receiver.line_count >= LINES, timeout=30, what="every line")
        # labelled gauges appear once the buffer's maintenance tick has set them
        wait_until(lambda: 'logcap_buffer_sink_backlog_records{' in proc.api_text("/metrics"),
                   timeout=10, what="the buffer's gauges")
        yield proc.api_text("/metrics")
    finally:
        proc.stop()
        receiver.stop()


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (Debian package prometheus; .ci/run installs it)")
def test_promtool_accepts_the_exposition(exposition: str) -> None:
    done = subprocess.run(["promtool", "check", "metrics"], input=exposition.encode(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not (done.stdout + done.stderr).strip(), (done.stdout + done.stderr).decode()


def test_the_exposition_counts_the_traffic_per_source_and_sink(exposition: str) -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(exposition)
               for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("logcap_source_lines_total", source="app") == LINES
    assert value("logcap_sink_lines_total", sink="loki", outcome="sent") == LINES
    assert value("logcap_sink_lines_total", sink="file", outcome="sent") == LINES
    assert value("logcap_sink_requests_total", sink="loki", reason="ok") >= 1
    assert value("logcap_sink_request_duration_seconds_count", sink="loki") >= 1


def test_every_metric_the_dashboard_and_the_alerts_name_is_exposed(exposition: str) -> None:
    exposed: set[str] = set()  # the series names PromQL can select
    for family in text_string_to_metric_families(exposition):
        exposed.update(sample.name for sample in family.samples)
        # declared, maybe without samples yet (no label value seen in this run)
        if family.type == "counter":
            exposed.add(family.name + "_total")
        elif family.type == "gauge":
            exposed.add(family.name)
        elif family.type == "histogram":
            exposed.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    named = metric_names(dashboard_expressions()) | metric_names(
        [rule["expr"] for rule in alert_rules()])
    assert len(named) > 20
    assert sorted(named - exposed) == []


def test_the_buffer_and_mailbox_gauges_the_alerts_divide_by_hold_their_limits(
        exposition: str) -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(exposition)
               for s in family.samples}
    assert samples[("logcap_buffer_capacity_bytes", ())] == 1 << 30  # the default 1GiB
    assert 0 < samples[("logcap_buffer_size_bytes", ())] <= 1 << 30
    assert samples[("logcap_buffer_oldest_age_seconds", ())] >= 0
    # one per sink (their value may be a tick old: set once a second)
    for sink in ("loki", "file"):
        assert samples[("logcap_buffer_sink_backlog_records", (("sink", sink),))] >= 0
    shard = (("actor", "root/dispatchers/shard-0"),)
    assert samples[("logcap_actor_mailbox_capacity_messages", shard)] == 64
    assert 0 <= samples[("logcap_actor_mailbox_depth_messages", shard)] <= 64
