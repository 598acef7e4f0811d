"""The file path into a Loki push receiver (protobuf+snappy and JSON+gzip), through faults."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.actor_kit import wait_until
from tests.harness import (
    LogcapProcess,
    NumberedWriter,
    agent_modules,
    make_config,
    missing_and_duplicates,
)
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

RSS_BOUND_MB = 150


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def loki_config(tmp: Path, receiver: LokiReceiver, **loki: Any) -> Path:
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    return make_config(
        tmp, [str(logs / "*.log")],
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "tenant_id": "ops",
                        "labels": {"host": "test-host"}, "timeout": "2s", **loki}},
    )


def all_arrived(receiver: LokiReceiver, total: int) -> bool:
    counts = receiver.received_seq_numbers()
    return len(counts) >= total and all(counts.get(n) for n in range(total))


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_lines_arrive_in_loki_with_labels_tenant_and_in_order(
    tmp_path: Path, receiver: LokiReceiver, encoding: str
) -> None:
    config = loki_config(tmp_path, receiver, encoding=encoding, gzip=True)
    writer = NumberedWriter(tmp_path / "logs" / "app.log")
    writer.write(3000)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: all_arrived(receiver, 3000), timeout=30, what="3000 lines")
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), 3000)
        assert not missing and dups == 0
        records = receiver.requests()
        assert all(r.status == 204 and r.tenant == "ops" for r in records)
        expected_type = "application/x-protobuf" if encoding == "protobuf" else "application/json"
        assert all(r.content_type.startswith(expected_type) for r in records)
        (labels, entries), = receiver.streams().items()
        assert 'host="test-host"' in labels and 'job="test"' in labels and "filename=" in labels
        seqs = [int(line.split()[0][4:]) for _, line in entries]
        assert seqs == sorted(seqs)
        stamps = [ts for ts, _ in entries]
        assert stamps == sorted(stamps)
    finally:
        proc.stop()


def test_a_loki_outage_under_load_loses_nothing_and_memory_stays_bounded(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    config = loki_config(tmp_path, receiver)
    writer = NumberedWriter(tmp_path / "logs" / "app.log", line_bytes=200)
    proc = LogcapProcess(config).start()
    assert proc.proc is not None
    process = psutil.Process(proc.proc.pid)
    outage_s = float(os.environ.get("LOGCAP_OUTAGE_S", "8"))  # 60 for the long run
    total = int(10_000 * max(6.0, outage_s + 2))
    try:
        receiver.fail_unavailable(outage_s)
        peak = [0]
        stop = threading.Event()

        def watch_rss() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                stop.wait(0.1)

        watcher = threading.Thread(target=watch_rss)
        watcher.start()
        writer.write_at_rate(total, per_second=10_000)
        wait_until(lambda: all_arrived(receiver, total), timeout=90 + outage_s, what="all lines")
        stop.set()
        watcher.join()
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), total)
        assert not missing
        assert dups == 0
        assert any(r.status == 503 for r in receiver.requests())
        assert peak[0] < RSS_BOUND_MB * 2**20, f"peak RSS {peak[0] / 2**20:.0f} MiB"
        print(f"\noutage {outage_s:.0f}s at 10k lines/s: 0 missing, {dups} dups, "
              f"peak RSS {peak[0] / 2**20:.0f} MiB")
    finally:
        proc.stop()


def test_429_with_retry_after_is_honoured_and_everything_arrives(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    config = loki_config(tmp_path, receiver)
    receiver.rate_limit(retry_after=1, count=3)
    NumberedWriter(tmp_path / "logs" / "app.log").write(2000)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: all_arrived(receiver, 2000), timeout=30, what="all lines")
        statuses = [r.status for r in receiver.requests()]
        assert statuses.count(429) == 3 and 204 in statuses
    finally:
        proc.stop()


def test_413_splits_the_batch_until_loki_accepts_it(tmp_path: Path,
                                                     receiver: LokiReceiver) -> None:
    config = loki_config(tmp_path, receiver, encoding="json", gzip=False)
    receiver.reject_bodies_over(20_000)
    NumberedWriter(tmp_path / "logs" / "app.log").write(3000)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: all_arrived(receiver, 3000), timeout=30, what="all lines")
        records = receiver.requests()
        assert any(r.status == 413 for r in records)
        assert all(r.body_bytes <= 20_000 for r in records if r.status == 204)
        _, dups = missing_and_duplicates(receiver.received_seq_numbers(), 3000)
        assert dups == 0
    finally:
        proc.stop()


def test_a_400_is_not_retried_and_the_other_batches_flow(tmp_path: Path,
                                                         receiver: LokiReceiver) -> None:
    config = loki_config(tmp_path, receiver)
    receiver.reject_lines_containing("POISON")
    path = tmp_path / "logs" / "app.log"
    writer = NumberedWriter(path)
    writer.write(500)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: all_arrived(receiver, 500), timeout=30)
        with open(path, "a") as fh:
            fh.write("POISON line\n")
        wait_until(lambda: any(r.status == 400 for r in receiver.requests()), timeout=30)
        writer.next = 500
        writer.write(500)
        wait_until(lambda: all_arrived(receiver, 1000), timeout=30)
        rejected = [r for r in receiver.requests() if r.status == 400]
        assert len(rejected) == 1  # never retried
        metrics = proc.api_text("/metrics")
        assert 'logcap_sink_lines_total{outcome="rejected",sink="loki"}' in metrics
    finally:
        proc.stop()


@pytest.mark.parametrize("disk_buffer", [False, True])
def test_two_named_loki_endpoints_each_get_every_line_one_through_an_outage(
    tmp_path: Path, receiver: LokiReceiver, disk_buffer: bool
) -> None:
    """Sinks are named instances: ``sinks.loki`` plus a ``sinks.loki_endpoints[]`` entry with
    another tenant. One endpoint down for a while delays only its own delivery."""
    with LokiReceiver() as second:
        logs = tmp_path / "logs"
        logs.mkdir()
        sections: dict[str, Any] = {
            "sinks": {"file": {"enabled": False},
                      "loki": {"enabled": True, "url": receiver.url, "tenant_id": "ops"},
                      "loki_endpoints": [{"name": "audit", "url": second.url,
                                          "tenant_id": "audit", "timeout": "2s"}]}}
        if disk_buffer:
            sections["disk_buffer"] = {"enabled": True, "directory": str(tmp_path / "buffer")}
        config = make_config(tmp_path, [str(logs / "*.log")], **sections)
        second.fail_unavailable()  # down until cleared: no race with a slow start-up
        writer = NumberedWriter(logs / "app.log")
        writer.write(2000)
        proc = LogcapProcess(config).start()
        try:
            wait_until(lambda: all_arrived(receiver, 2000), timeout=30, what="first endpoint")
            wait_until(lambda: any(r.status == 503 for r in second.requests()), timeout=30,
                       what="the second endpoint refused a push")
            assert not second.received_seq_numbers()
            second.clear_faults()
            wait_until(lambda: all_arrived(second, 2000), timeout=60, what="second endpoint")
            for rec, tenant in ((receiver, "ops"), (second, "audit")):
                missing, dups = missing_and_duplicates(rec.received_seq_numbers(), 2000)
                assert not missing and dups == 0
                assert {r.tenant for r in rec.requests() if r.status == 204} == {tenant}
            assert 'sink="audit"' in proc.api_text("/metrics")
        finally:
            proc.stop()


def test_a_loki_endpoint_named_like_a_fixed_sink_is_refused(tmp_path: Path) -> None:
    from logcap.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("sinks: {loki_endpoints: [{name: file, url: 'http://x:1'}]}", {})
    assert "sinks.loki_endpoints[0].name" in str(err.value) and "reserved" in str(err.value)


def test_an_agent_pushing_to_loki_does_not_load_requests(tmp_path: Path,
                                                         receiver: LokiReceiver) -> None:
    config = loki_config(tmp_path, receiver, tls={"verify": True})
    NumberedWriter(tmp_path / "logs" / "app.log").write(100)
    loaded = agent_modules(config, lambda: all_arrived(receiver, 100), "100 lines")
    assert "logcap.sinks.loki.session" in loaded and "urllib3" in loaded
    assert not loaded & {"requests", "charset_normalizer", "idna"}, sorted(
        loaded & {"requests", "charset_normalizer", "idna"})
