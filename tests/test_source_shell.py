"""The source shell: acks by reply-to and rewind by watch, with a Source double and end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest

from logcap.actors.shard import DispatcherShard, ShardSettings
from logcap.actors.source_shell import (
    PAUSE_S,
    SourceShell,
    SourceStatus,
    StopReading,
    Unsettled,
    shard_index,
)
from logcap.agent import Agent
from logcap.config import load_config
from logcap.messages import Entries
from logcap.origin import Buffered, ReadToken
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.timers import ManualScheduler
from logcap.sources.base import Reading
from logcap.state.positions_messages import PositionsUpdate
from tests.actor_kit import wait_until
from tests.harness import NumberedWriter, make_config

SHELL = "root/sources/fake"
SHARDS = ["root/dispatchers/shard-0", "root/dispatchers/shard-1"]


class FakeSource:
    """A Source double: reads what the test queued, records acks and rewinds."""

    name = "fake"
    positions_query = None
    tick_interval_s = 60.0

    def __init__(self) -> None:
        self.queued: list[Entries] = []
        self.acked: list[ReadToken] = []
        self.rewound: list[list[str]] = []
        self.streams: list[str] = []
        self.wake: Callable[[], None] = lambda: None
        self.lock = threading.Lock()
        self.reads = 0
        self.read_after_ack = True  # what each read says (Reading.read_after_ack)

    def queue(self, stream: str, start: int) -> None:
        token = ReadToken(self.name, "fake", (stream,), start, start + 1)
        with self.lock:
            self.queued.append(Entries(self.name, stream, (), ["l"], 1, token, 1))
            if stream not in self.streams:
                self.streams.append(stream)

    def start(self, stored: Sequence[Any], buffered: Buffered,
              wake: Callable[[], None]) -> None:
        self.wake = wake

    def read(self) -> Reading:
        with self.lock:
            entries, self.queued = self.queued, []
            self.reads += 1
        return Reading(entries, lines=len(entries), bytes=len(entries),
                       read_after_ack=self.read_after_ack)

    def ack(self, tokens: Sequence[ReadToken]) -> list[PositionsUpdate]:
        with self.lock:
            self.acked.extend(tokens)
        return []

    def rewind(self, selects: Callable[[str], bool], buffered: Any = None) -> int:
        with self.lock:
            self.rewound.append([s for s in self.streams if selects(s)])
        return 1

    def take_updates(self) -> list[PositionsUpdate]:
        return []

    def on_wake(self) -> None:
        pass

    def on_tick(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"errors": {}}

    def close(self) -> None:
        pass


class Recorder(LogcapActor):
    """Stands for a shard: keeps every Entries it is told."""

    def __init__(self, seen: list[Entries], **kw: Any) -> None:
        super().__init__(**kw)
        self.seen = seen

    def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            self.seen.append(message)
            return None
        return super().handle(message)


@pytest.fixture
def directory() -> Iterator[Directory]:
    yield Directory()
    pykka.ActorRegistry.stop_all()


def start_shell(directory: Directory, source: FakeSource) -> None:
    shards = [directory.handle(name) for name in SHARDS]
    ref = SourceShell.start(source, shards, None, ManualScheduler(), name=SHELL,
                            directory=directory)
    directory.bind(SHELL, ref)


def test_a_shard_acks_each_part_to_the_source_named_in_its_ack_to(
        directory: Directory) -> None:
    for name in SHARDS:  # no sinks: a batch is settled as soon as it closes
        directory.bind(name, DispatcherShard.start(ShardSettings(1, 60, 0.1, 1), {},
                                                   ManualScheduler(), name=name))
    source = FakeSource()
    start_shell(directory, source)
    source.queue("/a.log", 0)
    source.queue("/b.log", 0)
    source.wake()
    wait_until(lambda: len(source.acked) == 2, what="both reads acked")
    assert sorted(t.stream for t in source.acked) == [("/a.log",), ("/b.log",)]


@pytest.mark.parametrize("read_after_ack", [True, False])
def test_an_ack_makes_a_read_only_when_the_last_read_said_an_ack_may_let_it_do_more(
        directory: Directory, read_after_ack: bool) -> None:
    for name in SHARDS:  # no sinks: a batch is settled as soon as it closes
        directory.bind(name, DispatcherShard.start(ShardSettings(1, 60, 0.1, 1), {},
                                                   ManualScheduler(), name=name))
    source = FakeSource()
    source.read_after_ack = read_after_ack
    start_shell(directory, source)
    wait_until(lambda: source.reads == 1, what="the first read, at start")
    source.queue("/a.log", 0)
    source.wake()
    wait_until(lambda: len(source.acked) == 1, what="the read acked")
    status = directory.handle(SHELL).ask(SourceStatus(), timeout=5)  # after the Acked
    assert status["source"] == "fake"
    assert source.reads == (3 if read_after_ack else 2)  # start, wake (, ack)


def test_a_rebound_shard_makes_the_source_reread_only_the_streams_sent_to_it(
        directory: Directory) -> None:
    seen: list[Entries] = []
    for name in SHARDS:
        directory.bind(name, Recorder.start(seen, name=name))
    source = FakeSource()
    start_shell(directory, source)
    streams = [f"/var/log/{n}.log" for n in range(6)]
    for stream in streams:
        source.queue(stream, 0)
    source.wake()
    wait_until(lambda: len(seen) == len(streams), what="every read sent")
    assert all(e.ack_to is not None and e.ack_to.name == SHELL for e in seen)
    assert not source.rewound  # binding before the shell watched: no rebound
    directory.bind(SHARDS[1], Recorder.start(seen, name=SHARDS[1]))  # a restart
    wait_until(lambda: len(source.rewound) == 1, what="a rewind")
    assert source.rewound == [[s for s in streams if shard_index(s, 2) == 1]]
    shell = directory.handle(SHELL)
    assert shell.ask(SourceStatus(), timeout=5) == {"source": "fake", "errors": {}}
    shell.ask(StopReading(), timeout=5)
    source.queue("/late.log", 0)
    source.wake()
    shell.ask(SourceStatus(), timeout=5)  # the wake was handled before this answer
    assert len(seen) == len(streams)


class SlowRecorder(Recorder):
    """A Recorder that takes each Entries only once ``release`` is set."""

    def __init__(self, seen: list[Entries], release: threading.Event, **kw: Any) -> None:
        super().__init__(seen, **kw)
        self.release = release

    def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            self.release.wait(10)
        return super().handle(message)


def test_after_stop_reading_the_reads_a_full_shard_refused_are_still_offered(
        directory: Directory) -> None:
    seen: list[Entries] = []
    release = threading.Event()
    for name in SHARDS:
        directory.bind(name, SlowRecorder.start(seen, release, name=name, mailbox_capacity=1))
    scheduler = ManualScheduler()
    source = FakeSource()
    shards = [directory.handle(name) for name in SHARDS]
    directory.bind(SHELL, SourceShell.start(source, shards, None, scheduler, name=SHELL,
                                            directory=directory))
    streams = [s for s in (f"/var/log/{n}.log" for n in range(40)) if shard_index(s, 2) == 0]
    for stream in streams[:4]:
        source.queue(stream, 0)
    source.wake()
    shell = directory.handle(SHELL)
    wait_until(lambda: shell.ask(Unsettled(), timeout=5)["pending"] >= 1,
               what="a read the full shard refused")
    shell.ask(StopReading(), timeout=5)
    source.queue(streams[5], 0)  # read no more: this one stays in the source
    release.set()

    def all_offered() -> bool:
        scheduler.advance(PAUSE_S)  # the shell offers its held reads again on its timer
        return len(seen) == 4

    wait_until(all_offered, what="the held reads taken after StopReading")
    assert shell.ask(Unsettled(), timeout=5) == {"pending": 0, "inflight_bytes": 0}
    assert [e.stream for e in seen] == streams[:4] and len(source.queued) == 1


def test_lines_in_flight_to_a_restarted_shard_are_read_again_and_all_arrive(
        tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path, [str(tmp_path / "logs" / "*.log")]), {})
    (tmp_path / "logs").mkdir()
    writers = [NumberedWriter(tmp_path / "logs" / f"{n}.log") for n in range(4)]
    agent = Agent(config)
    agent.start()
    shards = agent.wiring.names("dispatchers")
    try:
        for round_ in range(3):
            for writer in writers:
                writer.write(2_000)
            old = [agent.directory.lookup(name) for name in shards]
            for ref in old:  # a normal stop: the supervisor restarts the shard
                assert ref is not None
                ref.stop(block=False)
            wait_until(lambda old=old: all(  # type: ignore[misc]
                agent.directory.lookup(n) not in (None, *old) for n in shards),
                what=f"shards restarted (round {round_})")

        def delivered() -> int:
            return sum(len(seqs_of(tmp_path / "out", w.path)) for w in writers)

        wait_until(lambda: delivered() == 4 * 6_000, timeout=30, what="every line delivered")
        assert all(seqs_of(tmp_path / "out", w.path) == set(range(6_000)) for w in writers)
    finally:
        agent.stop(10)


def seqs_of(out: Path, stream: Path) -> set[int]:
    """The seqs of one source file found in the file sink's JSON output."""
    seqs = set()
    for path in sorted(out.glob("*.log*")):
        for raw in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line being written
            if record["stream"] == str(stream):
                seqs.add(int(record["line"].split()[0].removeprefix("seq=")))
    return seqs
