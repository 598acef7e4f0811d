"""Processing end to end: the real process tails files, joins SIP dumps at the source, runs
the pipelines in the shards and ships to a Loki push receiver with the log's timestamps,
labels from the pipeline and structured metadata; drops and rate limits are counted exactly
(the metrics equal lines written minus lines delivered)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import LokiReceiver, parse_label_string, seq_number

pytestmark = pytest.mark.integration

NS = 1_000_000_000


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def config(tmp: Path, receiver: LokiReceiver, source: dict[str, object],
           pipelines: str = "") -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    processing = {}
    if pipelines:
        (tmp / "pipelines.yaml").write_text(pipelines)
        processing["pipelines_file"] = str(tmp / "pipelines.yaml")
    return make_config(
        tmp, [], processing=processing,
        sources={"files": [{"name": "sip", "include": [str(tmp / "logs" / "*.log")],
                            "start_at": "beginning", "labels": {"job": "sip"}, **source}]},
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "timeout": "2s"}})


def sip_dump(i: int) -> str:
    return (f"INVITE sip:bob@example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.{i % 250}:5060;branch=z9hG4bK{i}\r\n"
            f"From: <sip:alice@example.com>;tag=f{i}\r\n"
            f"To: <sip:bob@example.com>\r\n"
            f"Call-ID: call-{i}@example.com\r\n"
            f"CSeq: 1 INVITE\r\n\r\n")


def test_opensips_entries_arrive_whole_with_timestamps_labels_and_metadata(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    total = 300
    start = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    levels = ("NOTICE", "ERROR", "WARNING")
    cfg = config(tmp_path, receiver, {"pipeline": "opensips"})
    with open(tmp_path / "logs" / "opensips.log", "w", newline="") as fh:
        for i in range(total):
            moment = start + timedelta(seconds=i)
            level = levels[i % 3]
            if i % 5 == 0:
                fh.write(f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S} [77] {level}:"
                         f"received request INVITE seq={i}\n{sip_dump(i)}\n")
            else:
                fh.write(f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S} [77] {level}:tm:"
                         f"t_reply: replied 200 seq={i}\n")
    proc = LogcapProcess(cfg).start()
    try:
        def arrived() -> int:
            return len(receiver.received_seq_numbers(dedupe=True))
        # the last entry stays open until the multiline timeout closes it
        wait_until(lambda: arrived() >= total, timeout=60, what=f"{total} entries")
        got = receiver.received_seq_numbers(dedupe=True)
        assert sorted(got) == list(range(total)) and set(got.values()) == {1}
        seen = 0
        for labels, entries in receiver.stream_entries().items():
            stream = dict(parse_label_string(labels))
            assert stream["job"] == "sip" and stream["level"] in levels
            for entry in entries:
                i = seq_number(entry.line)
                assert i is not None
                seen += 1
                assert entry.ts_ns == int((start + timedelta(seconds=i)).timestamp()) * NS
                assert stream["level"] == levels[i % 3]
                md = dict(entry.metadata)
                assert md["pid"] == "77"
                if i % 5 == 0:
                    assert "module" not in stream
                    assert entry.line.count("\n") == 8, entry.line  # the dump joined whole
                    assert md["call_id"] == f"call-{i}@example.com"
                    assert md["from_tag"] == f"f{i}" and md["method"] == "INVITE"
                else:
                    assert stream["module"] == "tm" and md["function"] == "t_reply"
                    assert md["status"] == "200"
        assert seen >= total
    finally:
        proc.stop()


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_drops_and_rate_limits_are_counted_exactly(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    pipelines = r"""
pipelines:
  limited:
    stages:
      - regex: {expression: '^(?P<level>[A-Z]+) '}
      - drop: {source: level, value: DEBUG}
      - rate_limit: {rate: 200, burst: 300}
      - labels: {level: }
"""
    cfg = config(tmp_path, receiver, {"pipeline": "limited"}, pipelines)
    total = 3000
    with open(tmp_path / "logs" / "app.log", "w") as fh:
        for i in range(total):
            fh.write(f"{'DEBUG' if i % 4 == 0 else 'INFO'} seq={i}\n")
    proc = LogcapProcess(cfg).start()
    try:
        def settled() -> bool:
            text = proc.api_text("/metrics")
            taken = _metric_sum(text, "logcap_pipeline_lines_total", pipeline="limited")
            return taken >= total
        wait_until(settled, timeout=60, what="every line through the pipeline")

        def delivered() -> int:
            return sum(receiver.received_seq_numbers(dedupe=True).values())
        text = proc.api_text("/metrics")
        dropped = _metric_sum(text, "logcap_pipeline_dropped_lines_total", pipeline="limited",
                              stage="1:drop", reason="value")
        limited = _metric_sum(text, "logcap_pipeline_dropped_lines_total", pipeline="limited",
                              stage="2:rate_limit", reason="rate_limit")
        assert dropped == total // 4
        assert limited > 0  # 2250 INFO lines read in well under 10 s at 200/s
        wait_until(lambda: delivered() >= total - dropped - limited, timeout=30,
                   what="the lines not dropped")
        got = receiver.received_seq_numbers(dedupe=True)
        assert sum(got.values()) == total - dropped - limited
        assert not any(i % 4 == 0 for i in got)
        assert all(re.search(r'level="INFO"', labels) for labels in receiver.streams())
    finally:
        proc.stop()


def test_docker_json_partial_records_arrive_as_whole_lines(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    """Docker cuts long lines into records without the newline: each line arrives once and
    whole (one line in three is cut into pieces of 40 characters)."""
    import json

    def records(i: int) -> list[str]:
        text = f"seq={i} " + "x" * (i % 7) * 50
        pieces = [text[k:k + 40] for k in range(0, len(text), 40)] if i % 3 == 0 else [text]
        pieces[-1] += "\n"
        return [json.dumps({"log": p, "stream": "stdout", "time": "2026-12-01T20:00:00Z"},
                           separators=(",", ":")) for p in pieces]

    total = 200
    cfg = config(tmp_path, receiver, {"pipeline": "docker_json"})
    raw = [r for i in range(total) for r in records(i)]
    assert len(raw) > total + 100
    (tmp_path / "logs" / "container.log").write_text("\n".join(raw) + "\n")
    proc = LogcapProcess(cfg).start()
    try:
        wait_until(lambda: len(receiver.received_seq_numbers(dedupe=True)) >= total,
                   timeout=60, what=f"{total} lines")
        got = receiver.received_seq_numbers(dedupe=True)
        assert sorted(got) == list(range(total)) and set(got.values()) == {1}
        lines = {e.line for entries in receiver.stream_entries().values() for e in entries}
        assert lines == {f"seq={i} " + "x" * (i % 7) * 50 for i in range(total)}
    finally:
        proc.stop()
