"""Per-stream order through a flapping Loki: many short outages, each recovery a chance for a
batch queued behind a failed one to overtake it. Counted at a receiver that keeps every line."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.actor_kit import wait_until
from tests.harness import SEQ, LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

LINES = 40_000
RATE = 5_000


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def out_of_order(receiver: LokiReceiver) -> list[str]:
    """Streams whose entries are not in timestamp and sequence order, as they were received."""
    bad = []
    for labels, entries in receiver.streams().items():
        stamps = [ts for ts, _ in entries]
        seqs = [int(m.group(1)) for _, line in entries if (m := SEQ.search(line))]
        if stamps != sorted(stamps) or seqs != sorted(seqs):
            bad.append(str(labels))
    return bad


@pytest.mark.parametrize("buffered", [False, True], ids=["memory", "disk_buffer"])
def test_streams_stay_in_order_through_a_flapping_loki(
    tmp_path: Path, receiver: LokiReceiver, buffered: bool
) -> None:
    (tmp_path / "logs").mkdir()
    extra: dict[str, Any] = {}
    if buffered:
        extra["disk_buffer"] = {"enabled": True, "directory": str(tmp_path / "buffer"),
                                "fsync_interval": "50ms"}
    config = make_config(
        tmp_path, [str(tmp_path / "logs" / "*.log")],
        dispatcher={"batch_size": 200, "retry_base_delay": "10ms", "retry_max_delay": "200ms"},
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        **extra,
    )
    writers = [NumberedWriter(tmp_path / "logs" / f"app{i}.log") for i in range(2)]
    proc = LogcapProcess(config).start()
    done = threading.Event()
    rng = random.Random(7)

    def flap() -> None:
        while not done.wait(rng.uniform(0.1, 0.4)):
            receiver.fail_unavailable(rng.uniform(0.05, 0.3))

    threads = [threading.Thread(target=w.write_at_rate, args=(LINES // 2, RATE / 2))
               for w in writers]
    threads.append(threading.Thread(target=flap))
    try:
        for thread in threads:
            thread.start()
        for thread in threads[:-1]:
            thread.join()
        done.set()
        threads[-1].join()
        receiver.clear_faults()
        per_file = LINES // len(writers)  # each file numbers its lines from 0

        def arrived() -> bool:
            counts = receiver.received_seq_numbers()
            return all(counts.get(n, 0) >= len(writers) for n in range(per_file))

        wait_until(arrived, timeout=60, what="every line of every file")
        failed = [r for r in receiver.requests() if r.status == 503]
        assert len(failed) > 10  # the receiver did flap under load
        stored = receiver.received_seq_numbers(dedupe=True)  # what a Loki query returns
        assert set(stored.values()) == {len(writers)} and len(stored) == per_file
        assert out_of_order(receiver) == []
    finally:
        done.set()
        proc.stop()
