"""SIGTERM drains: sources stop reading, every batch read is delivered before the tree stops,
so restarts under load neither lose nor duplicate a line; with Loki down the drain gives up in
bounded time and the lines are read again after the restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, make_config, missing_and_duplicates
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

RATE = 10_000
LINES = 60_000


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver(keep_lines=False).start()
    yield rec
    rec.stop()


def loki_config(tmp_path: Path, receiver: LokiReceiver) -> Path:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
    )


def test_restarts_with_sigterm_under_load_neither_lose_nor_duplicate_a_line(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    config = loki_config(tmp_path, receiver)
    receiver.set_latency(0.02)  # batches are in flight when the signal comes
    writer = NumberedWriter(tmp_path / "logs" / "app.log", line_bytes=200)
    proc = LogcapProcess(config).start()
    thread = threading.Thread(target=writer.write_at_rate, args=(LINES, RATE))
    thread.start()
    try:
        for _ in range(3):
            wait_until(lambda: receiver.line_count > 0, what="lines flowing")
            threading.Event().wait(1.0)
            assert proc.stop() == 0
            proc = LogcapProcess(config).start()
        thread.join()
        wait_until(lambda: len(receiver.received_seq_numbers()) >= LINES, timeout=60,
                   what="every line")
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), LINES)
        assert not missing and dups == 0
    finally:
        thread.join()
        proc.stop()


def test_with_loki_down_the_drain_gives_up_in_time_and_nothing_is_lost(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    config = loki_config(tmp_path, receiver)
    receiver.fail_unavailable()
    NumberedWriter(tmp_path / "logs" / "app.log").write(5_000)
    proc = LogcapProcess(config).start()
    wait_until(lambda: len(receiver.requests()) > 0, what="a failed push")
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 15  # shutdown_timeout 5s x the grace factor, at most
    assert "not yet delivered" in proc.tail_log(50)
    receiver.clear_faults()
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: len(receiver.received_seq_numbers()) >= 5_000, timeout=30,
                   what="every line after the restart")
        missing, _ = missing_and_duplicates(receiver.received_seq_numbers(), 5_000)
        assert not missing
    finally:
        proc.stop()
