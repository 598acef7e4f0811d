"""The container source without an engine: ContainerReads (plain) and ContainerSource with a
stub of the Engine API whose streams end (EOF) and fail at will."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logcap.sources.containers.cursor import ContainerCursor, SinceSeconds
from logcap.sources.containers.engine import ContainerGone, ContainerInfo, EngineError
from logcap.sources.containers.filters import ContainerFilter
from logcap.sources.containers.framing import Frame, Stream, encode_frame
from logcap.sources.containers.reads import ContainerReads
from logcap.sources.containers.source import ContainerSettings, ContainerSource
from logcap.state.positions_messages import CommitContainers, RecordContainers
from tests.actor_kit import wait_until

S = 1_000_000_000
T0 = 1_700_000_000 * S
CID = "ab" * 32


def stamp(ns: int) -> bytes:
    seconds = ns // S
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b"Z"


def frames(lines: list[tuple[int, Stream, bytes]]) -> list[Frame]:
    return [Frame(stream, stamp(ts) + b" " + text + b"\n") for ts, stream, text in lines]


def reads(cursor: ContainerCursor | None = None) -> ContainerReads:
    return ContainerReads("c", CID, "run1", cursor or ContainerCursor(), max_line_bytes=1000,
                          clock_ns=lambda: T0)


def labels(stream: Stream) -> tuple[tuple[str, str], ...]:
    return (("stream", stream.label),)


LOG = [(T0, Stream.STDOUT, b"a"), (T0, Stream.STDOUT, b"b"), (T0, Stream.STDERR, b"e"),
       (T0 + S, Stream.STDOUT, b"c")]


def test_a_reconnect_from_an_earlier_since_passes_on_no_line_twice() -> None:
    r = reads()
    assert r.opened(1, 0, tty=False)
    r.add(1, frames(LOG[:2]))
    first = r.take(labels, 100)
    assert [e.lines for e in first] == [["a", "b"]]
    assert r.opened(2, 0, tty=False)  # the engine sends everything again
    r.add(2, frames(LOG))
    again = r.take(labels, 100)
    assert sorted(line for e in again for line in e.lines) == ["c", "e"]
    assert first[0].timestamps == [T0, T0] and first[0].metadata == [(("container_id", CID),)] * 2


def test_a_request_from_later_than_needed_is_refused() -> None:
    r = reads()
    r.opened(1, 0, tty=False)
    r.add(1, frames(LOG[:1]))
    assert not r.opened(2, T0 + 5 * S, tty=False)
    assert r.add(2, frames(LOG[1:])) == 0  # its frames are ignored


def test_acks_commit_each_streams_prefix_and_a_rewind_takes_the_rest_again() -> None:
    r = reads()
    r.opened(1, 0, tty=False)
    r.add(1, frames(LOG[:2]))
    a = r.take(labels, 1)  # two reads of one line
    r.add(1, frames(LOG[2:]))
    b = r.take(labels, 10)
    assert not r.ack(a[1].token)  # not the prefix yet
    assert r.ack(a[0].token)
    assert r.commit_cursor().streams[Stream.STDOUT].count == 2
    assert r.rewind() == 2  # b's two reads
    assert not r.ack(b[0].token)  # stale epoch
    r.opened(2, r.since_ns(), tty=False)
    r.add(2, frames(LOG))
    again = r.take(labels, 10)
    assert sorted(line for e in again for line in e.lines) == ["c", "e"]
    assert {(e.token.start, e.token.end) for e in again} == {(b_.token.start, b_.token.end)
                                                            for b_ in b}


def test_a_quiet_stream_does_not_pin_the_resume_point_at_the_first_line() -> None:
    r = reads()
    r.opened(1, 0, tty=False)
    r.add(1, frames([(T0 + 100 * S, Stream.STDOUT, b"x")]))
    for e in r.take(labels, 10):
        r.ack(e.token)
    cursor = r.commit_cursor()
    assert cursor.floor_ns == T0 + 99 * S  # stderr never wrote: floor 1 s below stdout
    assert r.since_ns() == T0 + 99 * S - 1


# -- ContainerSource with a stub engine ------------------------------------------------------


@dataclass
class StubWorld:
    """Containers with logs; streams end after what is there (podman's EOF) unless ``hold``."""

    logs: dict[str, list[tuple[int, Stream, bytes]]] = field(default_factory=dict)
    infos: dict[str, ContainerInfo] = field(default_factory=dict)
    down: str = ""
    requests: int = 0
    podman: bool = False
    """Followed streams lose every other line (as podman's can); reads without follow do not."""
    follows: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class StubStream:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        data, self.data = self.data, b""
        return data

    def abort(self) -> None:
        self.data = b""

    def close(self) -> None:
        pass


class EventsStream(StubStream):
    def __init__(self, world: StubWorld) -> None:
        super().__init__(b"")
        self.world = world
        self.stop = threading.Event()

    def read(self) -> bytes:
        self.stop.wait(0.2)
        if self.world.down:
            raise EngineError(self.world.down)
        return b"" if self.stop.is_set() else b"\n"

    def abort(self) -> None:
        self.stop.set()


class StubEngine:
    def __init__(self, world: StubWorld) -> None:
        self.world = world

    def _check(self) -> None:
        if self.world.down:
            raise EngineError(self.world.down)

    def listing(self) -> list[ContainerInfo]:
        self._check()
        return list(self.world.infos.values())

    def inspect(self, container_id: str) -> ContainerInfo:
        self._check()
        try:
            return self.world.infos[container_id]
        except KeyError:
            raise ContainerGone("no such container") from None

    def logs(self, container_id: str, since: SinceSeconds | None, *, tty: bool,
             follow: bool) -> StubStream:
        self._check()
        with self.world.lock:
            self.world.requests += 1
            self.world.follows.append(follow)
            after = since.ns if since is not None else -1
            lines = [x for x in self.world.logs.get(container_id, []) if x[0] > after]
            if follow and self.world.podman:
                lines = lines[::2]
        return StubStream(b"".join(encode_frame(s, stamp(ts) + b" " + t + b"\n")
                                   for ts, s, t in lines))

    def follow_loses_lines(self) -> bool:
        self._check()
        return self.world.podman

    def events(self, since_s: int, idle_s: float) -> StubStream:
        self._check()
        return EventsStream(self.world)

    def close(self) -> None:
        pass


def drive(source: ContainerSource, until: Callable[[list[str]], bool], timeout: float = 20
          ) -> tuple[list[str], list[object]]:
    lines: list[str] = []
    updates: list[object] = []
    woke = threading.Event()
    source.start([], {}, woke.set)
    deadline = time.monotonic() + timeout
    try:
        while not until(lines) and time.monotonic() < deadline:
            reading = source.read()
            updates += reading.updates
            for e in reading.entries:
                lines += e.lines
            updates += source.ack([e.token for e in reading.entries])
            if not reading.more:
                woke.wait(0.05)
                woke.clear()
    finally:
        source.close()
    return lines, updates


def settings(**kw: object) -> ContainerSettings:
    values: dict[str, object] = {"source": "containers", "socket": "unix:///stub",
                                 "filter": ContainerFilter(), "labels": (),
                                 "start_at": "beginning", "max_line_bytes": 1000,
                                 "batch_lines": 100}
    values.update(kw)
    return ContainerSettings(**values)  # type: ignore[arg-type]


def test_a_stream_that_ends_while_the_container_runs_is_reopened_and_nothing_repeats() -> None:
    world = StubWorld()
    world.infos[CID] = ContainerInfo(CID, "web", "img")
    world.logs[CID] = [(T0 + (i // 10) * S, Stream.STDOUT, b"%d" % i) for i in range(50)]
    source = ContainerSource(settings(), lambda url: StubEngine(world))

    def more_lines() -> None:  # written after the first stream ended
        wait_until(lambda: world.requests >= 2, timeout=10)
        with world.lock:
            world.logs[CID] += [(T0 + 5 * S, Stream.STDOUT, b"%d" % i) for i in range(50, 80)]

    writer = threading.Thread(target=more_lines)
    writer.start()
    lines, updates = drive(source, lambda got: len(got) >= 80)
    writer.join()
    assert lines == [str(i) for i in range(80)]
    commits = [u for u in updates if isinstance(u, CommitContainers)]
    assert commits and commits[-1].positions[0].name == "web"
    assert source.status()["stats"]["reconnects"] >= 1


def test_an_unreachable_engine_degrades_the_status_with_its_reason_and_is_retried() -> None:
    world = StubWorld(down="socket not found (/run/nothing.sock)")
    source = ContainerSource(settings(), lambda url: StubEngine(world))
    woke = threading.Event()
    source.start([], {}, woke.set)
    try:
        wait_until(lambda: (source.read() and "socket not found"
                            in source.status().get("degraded", "")), timeout=10)
        assert source.status()["engine"]["status"] == "unreachable"
        world.infos[CID] = ContainerInfo(CID, "web", "img")
        world.logs[CID] = [(T0, Stream.STDOUT, b"hello")]
        world.down = ""
        got: list[str] = []
        wait_until(lambda: bool(got.extend(line for e in source.read().entries
                                           for line in e.lines) or got), timeout=15)
        assert got == ["hello"] and "degraded" not in source.status()
    finally:
        source.close()


def test_only_containers_passing_the_filters_get_a_follower() -> None:
    world = StubWorld()
    for name, label in (("app-1", "yes"), ("app-2", None), ("db", "yes"), ("app-x", "yes")):
        cid = (name.encode().hex() * 8)[:64]
        world.infos[cid] = ContainerInfo(cid, name, "img", {"logs": label} if label else {})
        world.logs[cid] = [(T0, Stream.STDOUT, name.encode())]
    flt = ContainerFilter({"logs": "yes"}, ("app-*",), ("app-x",))
    source = ContainerSource(settings(filter=flt), lambda url: StubEngine(world))
    lines, _ = drive(source, lambda got: bool(got), timeout=10)
    assert lines == ["app-1"]
    assert [c["name"] for c in source.status()["stats"]["containers"]] == ["app-1"]


def test_a_container_followed_for_the_first_time_is_recorded_before_its_lines() -> None:
    world = StubWorld()
    world.infos[CID] = ContainerInfo(CID, "web", "img")
    world.logs[CID] = [(T0, Stream.STDOUT, b"%d" % i) for i in range(20)]
    source = ContainerSource(settings(), lambda url: StubEngine(world))
    woke = threading.Event()
    source.start([], {}, woke.set)
    order: list[object] = []
    try:
        def step() -> bool:
            reading = source.read()
            order.extend(reading.updates)
            order.extend(line for e in reading.entries for line in e.lines)
            woke.wait(0.05)
            woke.clear()
            return sum(isinstance(x, str) for x in order) >= 20

        wait_until(step, timeout=10)
    finally:
        source.close()
    records = [i for i, x in enumerate(order) if isinstance(x, RecordContainers)]
    assert len(records) == 1
    first_line = next(i for i, x in enumerate(order) if isinstance(x, str))
    assert records[0] < first_line
    record = order[records[0]]
    assert isinstance(record, RecordContainers)
    assert [(p.id, p.cursor_ns) for p in record.positions] == [(CID, 0)]


def test_an_engine_whose_followed_streams_lose_lines_is_polled_without_follow() -> None:
    world = StubWorld(podman=True)
    world.infos[CID] = ContainerInfo(CID, "web", "img")
    world.logs[CID] = [(T0 + (i // 100) * S, Stream.STDOUT, b"%d" % i) for i in range(300)]

    def more_lines() -> None:  # written while the source polls
        wait_until(lambda: world.requests >= 2, timeout=10)
        with world.lock:
            world.logs[CID] += [(T0 + 3 * S, Stream.STDOUT, b"%d" % i) for i in range(300, 400)]

    writer = threading.Thread(target=more_lines)
    writer.start()
    source = ContainerSource(settings(), lambda url: StubEngine(world))
    lines, _ = drive(source, lambda got: len(got) >= 400)
    writer.join()
    assert lines == [str(i) for i in range(400)]
    assert world.follows and not any(world.follows)
