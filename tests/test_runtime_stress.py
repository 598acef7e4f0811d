"""1,000 random crashes in a running tree with data flowing: everything comes back."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from logcap.runtime.actor import LogcapActor, Ping
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.mailbox import DeliveryRefused
from logcap.runtime.supervisor import (
    ChildInfo,
    ChildSpec,
    StartContext,
    Supervisor,
    SupFlags,
    WhichChildren,
)
from logcap.runtime.timers import Scheduler, TimerThread
from tests.actor_kit import Batch, Crash, wait_until

CRASHES = 1000


@dataclass(frozen=True, slots=True)
class Mark:
    """A control-lane message whose arrival the collector records."""

    n: int


@dataclass(frozen=True, slots=True)
class PumpTick:
    pass


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.crashes: dict[str, int] = {}
        self.items = 0
        self.marks: list[int] = []

    def crashed(self, who: str) -> None:
        with self.lock:
            self.crashes[who] = self.crashes.get(who, 0) + 1


class Crashable(LogcapActor):
    def __init__(self, tally: Tally, **kw: Any) -> None:
        super().__init__(**kw)
        self.tally = tally

    def handle(self, message: Any) -> Any:
        if isinstance(message, Crash):
            self.tally.crashed(self.name)
            raise RuntimeError("injected")
        return super().handle(message)


class Pump(Crashable):
    """Sends a batch to its relay every tick; on refusal it keeps the batch and retries."""

    def __init__(self, tally: Tally, out: Handle, scheduler: Scheduler, **kw: Any) -> None:
        super().__init__(tally, **kw)
        self.out = out
        self.scheduler = scheduler
        self.n = 0

    def handle_start(self) -> None:
        self.scheduler.call_later(0.001, self.actor_ref, PumpTick())

    def handle(self, message: Any) -> Any:
        if isinstance(message, PumpTick):
            try:
                self.out.tell(Batch(tuple(range(self.n, self.n + 100))))
                self.n += 100
            except DeliveryRefused:
                pass  # paused: the same batch is offered again next tick
            self.scheduler.call_later(0.001, self.actor_ref, PumpTick())
            return None
        return super().handle(message)


class Relay(Crashable):
    def __init__(self, tally: Tally, out: Handle, **kw: Any) -> None:
        super().__init__(tally, **kw)
        self.out = out

    def handle(self, message: Any) -> Any:
        if isinstance(message, Batch):
            try:
                self.out.tell(message)
            except DeliveryRefused:
                pass  # a lost batch is fine here: this test is about the runtime
            return None
        return super().handle(message)


class Collector(LogcapActor):
    def __init__(self, tally: Tally, **kw: Any) -> None:
        super().__init__(**kw)
        self.tally = tally

    def handle(self, message: Any) -> Any:
        with self.tally.lock:
            if isinstance(message, Batch):
                self.tally.items += len(message.items)
            elif isinstance(message, Mark):
                self.tally.marks.append(message.n)
        return None


def build_tree(tally: Tally, directory: Directory, timers: TimerThread) -> Any:
    flags = SupFlags(intensity=100_000, period_s=60, backoff_min_s=0.0005, backoff_max_s=0.005,
                     ping_interval_s=0.5, ping_timeout_s=10)

    def sup(child_id: str, specs: list[ChildSpec]) -> ChildSpec:
        def start(ctx: StartContext) -> Any:
            return Supervisor.start(name=ctx.name, flags=flags, children=specs,
                                    directory=ctx.directory, scheduler=ctx.scheduler,
                                    link=ctx.link)
        return ChildSpec(id=child_id, start=start, supervisor=True)

    def spec(child_id: str, cls: type, *args: Any, capacity: int = 4) -> ChildSpec:
        def start(ctx: StartContext) -> Any:
            return cls.start(tally, *args, link=ctx.link, name=ctx.name, mailbox_capacity=capacity)
        return ChildSpec(id=child_id, start=start)

    collector = directory.handle("root/collector")
    relays = [directory.handle(f"root/relays/r{i}") for i in range(4)]
    children = [
        spec("collector", Collector, capacity=2),
        sup("relays", [spec(f"r{i}", Relay, collector) for i in range(4)]),
        sup("pumps", [spec(f"p{i}", Pump, relays[i % 4], timers) for i in range(4)]),
    ]
    return Supervisor.start(name="root", flags=flags, children=children, directory=directory,
                            scheduler=timers)


def tree_rows(root: Any) -> list[ChildInfo]:
    rows: list[ChildInfo] = []
    for info in root.ask(WhichChildren(), timeout=5):
        rows.append(info)
        if info.supervisor and info.ref is not None:
            rows.extend(tree_rows(info.ref))
    return rows


def test_a_thousand_random_crashes_leave_the_tree_whole_and_every_restart_counted() -> None:
    baseline = threading.active_count()
    tally = Tally()
    directory = Directory()
    timers = TimerThread()
    root = build_tree(tally, directory, timers)
    root.ask(Ping(), timeout=10)
    targets = [f"root/relays/r{i}" for i in range(4)] + [f"root/pumps/p{i}" for i in range(4)]
    rng = random.Random(1234)
    marks_sent = 0
    pause = threading.Event()

    def executed() -> int:
        with tally.lock:
            return sum(tally.crashes.values())

    while executed() < CRASHES:
        try:
            # A Crash queued behind another one dies with its actor, so count executions.
            directory.handle(rng.choice(targets)).tell(Crash())
        except DeliveryRefused:
            pass  # that child is restarting; pick another
        pause.wait(0.0005)
        directory.handle("root/collector").tell(Mark(marks_sent))
        marks_sent += 1

    def settled() -> bool:
        rows = tree_rows(root)
        crashed = sum(r.crashes for r in rows if not r.supervisor)
        return crashed == executed() and all(r.status == "running" for r in rows)

    wait_until(settled, timeout=60, what="all crashes handled and the tree running")
    rows = {r.name: r for r in tree_rows(root)}
    for name, count in tally.crashes.items():
        assert rows[name].crashes == count
        assert rows[name].restarts == count
    assert sum(tally.crashes.values()) >= CRASHES
    wait_until(lambda: len(tally.marks) == marks_sent, what="every control message")
    assert tally.marks == list(range(marks_sent))
    items_before = tally.items
    wait_until(lambda: tally.items > items_before, what="data still flowing")

    assert root.stop(block=True, timeout=30)
    timers.stop()
    wait_until(lambda: threading.active_count() == baseline, what="threads back to baseline")
