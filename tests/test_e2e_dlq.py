"""A poison batch goes to the DLQ and is reprocessed exactly once, through the real process."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

TOKEN = "dlq-test-token"


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver(partial_accept=False).start()
    yield rec
    rec.stop()


@pytest.mark.parametrize("buffered", [False, True], ids=["memory", "disk_buffer"])
def test_a_poison_batch_lands_in_the_dlq_and_reprocess_delivers_it_once(
    tmp_path: Path, receiver: LokiReceiver, buffered: bool
) -> None:
    (tmp_path / "logs").mkdir()
    extra: dict[str, Any] = {}
    if buffered:
        extra["disk_buffer"] = {"enabled": True, "directory": str(tmp_path / "buffer")}
    config = make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        server={"admin_token": TOKEN},
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        dlq={"directory": str(tmp_path / "dlq")},
        **extra,
    )
    receiver.reject_lines_containing("POISON")
    writer = NumberedWriter(tmp_path / "logs" / "app.log")
    writer.write(100)
    with open(tmp_path / "logs" / "app.log", "a") as fh:
        fh.write("seq=100 POISON\n")
    writer.next = 101
    writer.write(99)
    proc = LogcapProcess(config).start()
    base = f"http://127.0.0.1:{proc.port}"
    try:
        wait_until(lambda: proc.api("/dlq/stats").get("entries", 0) >= 1, timeout=30,
                   what="a DLQ entry")
        stats = proc.api("/dlq/stats")
        assert stats["entries"] == 1 and "loki" in stats["by_sink"]
        rejected = [r for r in receiver.requests() if r.status == 400]
        assert len(rejected) == 1  # never retried
        assert requests.post(f"{base}/dlq/reprocess", json={}, timeout=5).status_code == 401
        receiver.clear_faults()
        before = receiver.received_seq_numbers()
        answers: list[dict[str, Any]] = []

        def reprocess() -> None:
            resp = requests.post(f"{base}/dlq/reprocess", json={"sink": "loki"},
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert resp.status_code == 200
            answers.append(resp.json())

        threads = [threading.Thread(target=reprocess) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        queued = [a["queued"] for a in answers]
        assert sorted(len(q) for q in queued) == [0, 1]  # one call got it, the other skipped
        wait_until(lambda: receiver.received_seq_numbers().get(100, 0) >= 1, timeout=30,
                   what="the reprocessed poison line")
        reprocess()  # a third call, after the fact, sends nothing
        assert answers[-1]["queued"] == []
        threading.Event().wait(1.0)  # give a wrongful second send time to show up
        after = receiver.received_seq_numbers()
        assert after[100] == 1
        batch_lines = {n for n in after if after[n] > before.get(n, 0)}
        assert all(after[n] - before.get(n, 0) == 1 for n in batch_lines)
    finally:
        proc.stop()


def _start_during_outage(tmp_path: Path, receiver: LokiReceiver, retries: int,
                         lines: int) -> tuple[Path, LogcapProcess]:
    """logcap with batch_persistence (``retries``), started on ``lines`` lines while the
    receiver answers 503; returns its config (for a restart) and the process."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    config = make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        server={"admin_token": TOKEN},
        dispatcher={"retry_base_delay": "20ms", "retry_max_delay": "100ms"},
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer"),
                     "fsync_interval": "50ms"},
        batch_persistence={"enabled": True, "directory": str(tmp_path / "batches"),
                           "max_recovery_retries": retries},
        dlq={"directory": str(tmp_path / "dlq")},
    )
    receiver.fail_unavailable()
    NumberedWriter(tmp_path / "logs" / "app.log").write(lines)
    return config, LogcapProcess(config).start()


def _persisted(tmp_path: Path) -> dict[int, dict[str, Any]]:
    try:
        doc = json.loads((tmp_path / "batches" / "inflight.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return {r["seq"]: r for r in doc["batches"] if r["sink"] == "loki"}


def test_batches_failing_past_max_recovery_retries_move_to_the_dlq_and_reprocess_delivers_them(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    _, proc = _start_during_outage(tmp_path, receiver, retries=2, lines=300)
    base = f"http://127.0.0.1:{proc.port}"
    try:
        wait_until(lambda: proc.api("/dlq/stats").get("lines", 0) >= 300, timeout=60,
                   what="every line dead-lettered after its retries")
        stats = proc.api("/dlq/stats")
        assert set(stats["by_reason"]) == {"retries_exhausted"}
        assert receiver.received_seq_numbers() == {}
        attempts = [r for r in receiver.requests() if r.status == 503]
        assert len(attempts) >= 3  # each batch: one send and two resends
        in_flight = proc.api("/stats")["disk_buffer"]["in_flight"]["loki"]
        assert in_flight["persisted"]["batches"] == 0 and in_flight["batches"] == 0
        assert 'logcap_inflight_batches_given_up_total{reason="retries_exhausted",sink="loki"}' \
            in proc.api_text("/metrics")
        receiver.clear_faults()
        resp = requests.post(f"{base}/dlq/reprocess", json={"reason": "retries_exhausted"},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert resp.status_code == 200 and resp.json()["queued"]
        wait_until(lambda: len(receiver.received_seq_numbers()) >= 300, timeout=30,
                   what="the reprocessed lines")
        threading.Event().wait(0.5)
        counts = receiver.received_seq_numbers()
        assert sorted(counts) == list(range(300)) and set(counts.values()) == {1}
    finally:
        proc.stop()


def test_attempts_of_in_flight_batches_survive_a_sigkill(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    config, proc = _start_during_outage(tmp_path, receiver, retries=1000, lines=50)
    try:
        wait_until(lambda: any(r["failures"] >= 3 for r in _persisted(tmp_path).values()),
                   timeout=30, what="a persisted batch with 3 failures")
        proc.kill()
        before = {seq: r["failures"] for seq, r in _persisted(tmp_path).items()}
        proc = LogcapProcess(config).start()
        wait_until(lambda: any(r["failures"] > before.get(seq, 0) > 0
                               for seq, r in _persisted(tmp_path).items()),
                   timeout=30, what="failures counted on from the persisted ones")
        stats = proc.api("/stats")["disk_buffer"]["in_flight"]["loki"]
        assert stats["persisted"]["max_attempts"] > max(before.values())
        receiver.clear_faults()
        wait_until(lambda: len(receiver.received_seq_numbers()) >= 50, timeout=30,
                   what="delivery after the outage")
        wait_until(lambda: _persisted(tmp_path) == {}, timeout=10,
                   what="the records removed once delivered")
        assert proc.api("/dlq/stats").get("entries", 0) == 0
    finally:
        proc.stop()
