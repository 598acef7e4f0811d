"""``rate_limit`` in ``mode: block``: the throttle holds a stream's reads, in order, until its
token bucket allows them, drops nothing and leaves other streams alone; the shard runs it
(entries delivered at the rate, acknowledged after delivery, counted)."""

from __future__ import annotations

from typing import Any

import yaml

from logcap.actors.shard import DispatcherShard, Flush, InFlight, ShardSettings
from logcap.config.errors import IssueCollector
from logcap.messages import Entries
from logcap.metrics import PIPELINE_DELAYED
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.routing import Routing
from logcap.pipeline.stages.filter import Demand, RateLimitConfig, RateLimitStage, TokenBucket
from logcap.pipeline.throttle import Throttle, split_read
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.timers import ManualClock, ManualScheduler
from tests.actor_kit import wait_until
from tests.pipeline_kit import entries
from tests.test_pipeline_shard import RecordingSink, RecordingSource, directory  # noqa: F401

RATE = 10


def demand(bucket: TokenBucket) -> Demand:
    return Demand(bucket, "slow", "0:rate_limit")


def read(first: int, lines: int, stream: str = "/slow") -> Any:
    return entries([f"seq={first + i}" for i in range(lines)], stream=stream,
                   ts_ns=1000 * first, ack_to=ACK_TO)


ACK_TO = Handle(Directory(), "source")


def test_a_stream_at_ten_times_its_rate_goes_through_whole_in_order_at_the_rate() -> None:
    throttle = Throttle()
    bucket = TokenBucket(RATE, RATE, 0.0)
    other = TokenBucket(RATE, RATE, 0.0)
    out: list[tuple[float, Entries]] = []
    reads = [read(10 * tick, 10) for tick in range(100)]
    for tick in range(100):  # 10 s: 10 reads of 10 lines per second, 100 lines/s
        now = tick * 0.1
        out += [(now, r.entries) for r in throttle.release(now)]
        out += [(now, r.entries) for r in throttle.offer("slow", reads[tick], demand(bucket),
                                                         now)]
        fast = throttle.offer("fast", read(0, 1, "/fast"), demand(other), now)
        assert [r.entries.lines for r in fast] == [["seq=0"]]  # within its rate: never held
    while throttle.streams():
        now += throttle.next_release_s(now) or 0.0
        out += [(now, r.entries) for r in throttle.release(now)]
    lines = [line for _, e in out for line in e.lines]
    assert lines == [f"seq={i}" for i in range(1000)]  # every line, in order
    assert throttle.held_lines == 0
    # each read acknowledged once, by its last piece, after all its lines
    acked = [e.token for _, e in out if e.ack_to is not None]
    assert acked == [r.token for r in reads]
    assert all(e.token.stream is None for _, e in out if e.ack_to is None)
    # timestamps kept: line i of each read at its own ts_ns + i
    assert [e.timestamp(i) for _, e in out for i in range(len(e.lines))] == [
        r.timestamp(i) for r in reads for i in range(10)]
    # 1000 lines at 10 lines/s after a burst of 10: the last goes on at ~99 s
    assert 98.0 <= out[-1][0] <= 100.0, out[-1][0]
    by_time = [(t, len(e.lines)) for t, e in out]
    for t_check in (20.0, 50.0, 80.0):  # at the rate all along: 10 + 10 t lines by t
        sent = sum(n for t, n in by_time if t <= t_check)
        assert abs(sent - (RATE + RATE * t_check)) <= RATE, (t_check, sent)


def test_a_read_without_demand_waits_behind_its_stream_only() -> None:
    throttle = Throttle()
    bucket = TokenBucket(1, 1, 0.0)
    assert len(throttle.offer("s", read(0, 3), demand(bucket), 0.0)) == 1  # 1 line goes
    assert throttle.offer("s", read(3, 1), None, 0.0) == []  # behind the rest
    assert [r.entries.lines for r in throttle.offer("t", read(9, 1), None, 0.0)] == [["seq=9"]]
    assert throttle.held_lines == 3 and throttle.next_release_s(0.0) == 1.0
    assert throttle.release(0.9) == []
    assert [r.entries.lines for r in throttle.release(2.0)] == [["seq=1"]]  # burst: 1
    assert throttle.release(2.0) == []
    assert throttle.streams() == 1 and throttle.next_release_s(2.0) == 1.0
    # the last line of the read, then the read without demand right behind it
    assert [r.entries.lines for r in throttle.release(3.0)] == [["seq=2"], ["seq=3"]]
    assert throttle.streams() == 0 and throttle.held_lines == 0


def test_split_read_keeps_per_line_fields_and_the_token_on_the_last_piece() -> None:
    whole = entries(["a", "b", "c"], ack_to=ACK_TO, bytes=30, timestamps=[5, 6, 7],
                    line_labels=[(("l", "1"),), (), ()], metadata=[(), (("m", "x"),), ()])
    head, rest = split_read(whole, 1)
    assert head.lines == ["a"] and rest.lines == ["b", "c"]
    assert head.timestamps == [5] and rest.timestamps == [6, 7]
    assert head.line_labels == [(("l", "1"),)] and rest.metadata == [(("m", "x"),), ()]
    assert head.ack_to is None and head.token.stream is None and head.bytes == 10
    assert rest.ack_to == ACK_TO and rest.token == whole.token and rest.bytes == 20


def test_the_block_stage_drops_nothing_and_states_its_demand() -> None:
    from logcap.pipeline.batch import LineBatch
    stage = RateLimitStage(RateLimitConfig(rate=5, mode="block"), "3:rate_limit")
    batch = LineBatch(["a"] * 8, list(range(8)), 0, "/s", 0.0)
    stage(batch)
    assert batch.lines == ["a"] * 8 and not batch.drops
    assert batch.demand is not None and batch.demand[1] == "3:rate_limit"


def _routing() -> Routing:
    issues = IssueCollector()
    specs = decode_pipelines(yaml.safe_load("""
pipelines:
  slow:
    stages:
      - rate_limit: {rate: 10, mode: block}
"""), "test", issues)
    assert not issues.items
    return Routing(specs, {"app": "slow"}, ())


def test_the_shard_holds_a_rate_limited_stream_and_delivers_it_at_the_rate(
        directory: Directory) -> None:  # noqa: F811
    directory.bind("sink", RecordingSink.start(name="sink", directory=directory))
    directory.bind("source", RecordingSource.start(name="source", directory=directory))
    clock = ManualClock()
    scheduler = ManualScheduler(clock)
    shard = DispatcherShard.start(ShardSettings(1, 60, 0.1, 1),
                                  {"rec": directory.handle("sink")}, scheduler,
                                  clock=clock.monotonic, router=_routing().router(),
                                  name="shard", directory=directory)
    directory.bind("shard", shard)
    delayed_before = PIPELINE_DELAYED.labels("slow", "0:rate_limit")._value.get()
    ack_to = directory.handle("source")
    reads = [entries([f"{r}-{i}" for i in range(10)], ack_to=ack_to) for r in range(5)]
    other = entries(["other"], stream="/var/log/other.log", source="other", ack_to=ack_to)
    for e in reads:
        shard.tell(e)
    shard.tell(other)
    sink = directory.handle("sink")
    source = directory.handle("source")

    def lines() -> list[str]:
        shard.ask(Flush(), timeout=5)
        return [line for d in sink.ask("got", 5) for p in d.parts for line in p.lines]

    # the burst (10) lets the first read go; the other stream is not held
    wait_until(lambda: lines() == [f"0-{i}" for i in range(10)] + ["other"],
               what="the first read and the other stream")
    assert shard.ask(InFlight(), timeout=5) == 40
    assert len(source.ask("acked", 5)) == 2  # only what was delivered is acknowledged
    for second in range(1, 5):  # 10 lines per second, let out a line per 0.1 s or more
        assert scheduler.delays() and abs(scheduler.delays()[0] - 0.1) < 1e-6
        scheduler.advance(1.0)
        want = [f"{r}-{i}" for r in range(second + 1) for i in range(10)]
        wait_until(lambda w=want: [x for x in lines() if x != "other"] == w,  # type: ignore[misc]
                   what=f"read {second}")
    wait_until(lambda: len(source.ask("acked", 5)) == 6, what="every read acked")
    assert shard.ask(InFlight(), timeout=5) == 0
    assert PIPELINE_DELAYED.labels("slow", "0:rate_limit")._value.get() - delayed_before == 40

