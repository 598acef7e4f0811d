"""``rate_limit`` ``mode: block`` end to end: the real process tails a file written at ten
times its stream's rate and a second file without a limit, into a Loki push receiver, with
a ``kill -9`` in the middle, with and without the disk buffer. Every line of the limited
stream arrives, in order, at the rate (within 25 %), the other stream is not slowed, and
nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver, seq_number

pytestmark = pytest.mark.integration

RATE = 40
SLOW_LINES = 800  # written at 400 lines/s: 20 s to deliver at 40 lines/s
FAST_FIRST = 100_000  # the other file's numbers start here
FAST_LINES = 3000


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def _config(tmp: Path, receiver: LokiReceiver, durable: bool) -> Path:
    (tmp / "logs").mkdir()
    (tmp / "pipelines.yaml").write_text(f"""
pipelines:
  slow:
    stages:
      - rate_limit: {{rate: {RATE}, mode: block}}
""")
    source = {"start_at": "beginning", "labels": {"job": "rate"}}
    buffer = {"disk_buffer": {"enabled": True, "directory": str(tmp / "buffer")}} if durable \
        else {}
    return make_config(
        tmp, [], processing={"pipelines_file": str(tmp / "pipelines.yaml")}, **buffer,
        sources={"files": [
            {"name": "slow", "include": [str(tmp / "logs" / "slow.log")], "pipeline": "slow",
             **source},
            {"name": "fast", "include": [str(tmp / "logs" / "fast.log")], **source}]},
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "timeout": "2s"}})


def _slow_seen(receiver: LokiReceiver) -> set[int]:
    return {n for n in receiver.received_seq_numbers(dedupe=True) if n < FAST_FIRST}


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "disk_buffer"])
def test_a_blocked_stream_arrives_whole_in_order_at_its_rate_through_a_kill(
        tmp_path: Path, receiver: LokiReceiver, durable: bool) -> None:
    cfg = _config(tmp_path, receiver, durable)
    slow = NumberedWriter(tmp_path / "logs" / "slow.log")
    fast = NumberedWriter(tmp_path / "logs" / "fast.log")
    fast.next = FAST_FIRST
    proc = LogcapProcess(cfg).start()
    writer = threading.Thread(target=slow.write_at_rate, args=(SLOW_LINES, RATE * 10),
                              kwargs={"chunk": 20})
    try:
        started = time.monotonic()
        writer.start()
        fast.write(FAST_LINES)
        wait_until(lambda: len(receiver.received_seq_numbers(dedupe=True)) - len(
            _slow_seen(receiver)) >= FAST_LINES, timeout=15, what="the other stream")
        fast_done = time.monotonic() - started
        samples: list[tuple[float, int]] = []
        pause = threading.Event()
        while time.monotonic() - started < 8:
            samples.append((time.monotonic() - started, len(_slow_seen(receiver))))
            pause.wait(0.25)
        writer.join()
        # at the rate: between 2 s and 8 s, RATE lines per second (a read of 20 lines apart)
        (t0, n0), (t1, n1) = next(s for s in samples if s[0] >= 2), samples[-1]
        measured = (n1 - n0) / (t1 - t0)
        assert 0.75 * RATE <= measured <= 1.25 * RATE, (measured, samples)
        assert len(_slow_seen(receiver)) < SLOW_LINES / 2  # held, not all sent at once
        proc.kill()  # kill -9 while most lines wait in the file and in the shard
        before_kill = len(_slow_seen(receiver))
        proc = LogcapProcess(cfg).start()
        restarted = time.monotonic()
        wait_until(lambda: len(_slow_seen(receiver)) >= SLOW_LINES, timeout=60,
                   what=f"{SLOW_LINES} lines of the limited stream")
        # after the restart too: the rest (less the new burst) at RATE lines per second
        took = time.monotonic() - restarted
        assert took >= 0.75 * (SLOW_LINES - before_kill - RATE) / RATE, (took, before_kill)
    finally:
        proc.stop()
    got = receiver.received_seq_numbers(dedupe=True)
    assert sorted(n for n in got if n < FAST_FIRST) == list(range(SLOW_LINES))  # none lost
    assert sorted(n for n in got if n >= FAST_FIRST) == list(
        range(FAST_FIRST, FAST_FIRST + FAST_LINES))
    assert fast_done < 10, fast_done  # not held behind the limited stream
    # in order: within each life of the process, the limited stream's first arrivals rise
    order = [seq_number(line) for lines in receiver.streams().values()
             for _, line in lines if (seq_number(line) or 0) < FAST_FIRST]
    first_seen: list[int] = []
    seen: set[int] = set()
    for n in order:
        if n is not None and n not in seen:
            seen.add(n)
            first_seen.append(n)
    assert first_seen == sorted(first_seen)
    duplicates = sum(got.values()) - len(got)
    assert duplicates <= SLOW_LINES // 4, duplicates  # re-read after the kill, bounded
