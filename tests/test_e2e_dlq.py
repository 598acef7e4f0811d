"""A poison batch goes to the DLQ and is reprocessed exactly once, through the real process."""

from __future__ import annotations

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
