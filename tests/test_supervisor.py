"""The supervisor behaves as OTP's documents: strategies, restart types, intensity, backoff."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from pykka import ActorRef

from logcap.runtime.actor import ChildExited, LogcapActor, Ping, abandon
from logcap.runtime.directory import Directory, Rebound
from logcap.runtime.mailbox import ActorUnavailable
from logcap.runtime.supervisor import (
    ChildInfo,
    ChildSpec,
    CountChildren,
    ReplaceChild,
    Restart,
    StartChild,
    StartContext,
    Strategy,
    Supervisor,
    SupFlags,
    TerminateChild,
    UpdateChildSpec,
    WhichChildren,
)
from logcap.runtime.timers import ManualScheduler
from tests.actor_kit import Block, Crash, Journal, StopSelf, Worker, wait_until, worker_spec


class Watcher:
    """Stands in for a parent: collects the supervisor's exit report."""

    def __init__(self) -> None:
        self.exits: list[ChildExited] = []
        self.event = threading.Event()

    def tell(self, message: Any) -> None:
        self.exits.append(message)
        self.event.set()


def start_sup(
    specs: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    scheduler: ManualScheduler | None = None,
    watcher: Watcher | None = None,
    **flags: Any,
) -> tuple[ActorRef[Any], Directory, ManualScheduler]:
    from logcap.runtime.actor import ExitLink

    scheduler = scheduler or ManualScheduler()
    directory = Directory()
    flags.setdefault("ping_interval_s", 0)
    flags.setdefault("backoff_min_s", 0.1)
    flags.setdefault("backoff_max_s", 1.0)
    link = ExitLink(watcher, "sup", 1) if watcher else None
    ref = Supervisor.start(
        name="sup",
        flags=SupFlags(strategy=strategy, **flags),
        children=specs,
        directory=directory,
        scheduler=scheduler,
        clock=scheduler.clock,
        rng=random.Random(7),
        link=link,
    )
    ref.ask(Ping(), timeout=10)  # answered once on_start (all children started) is done
    return ref, directory, scheduler


def children(ref: ActorRef[Any]) -> dict[str, ChildInfo]:
    return {c.id: c for c in ref.ask(WhichChildren(), timeout=5)}


def statuses(ref: ActorRef[Any]) -> dict[str, str]:
    return {k: v.status for k, v in children(ref).items()}


def crash(directory: Directory, name: str) -> None:
    directory.handle(f"sup/{name}").tell(Crash())


def restart_pending(scheduler: ManualScheduler) -> bool:
    return bool(scheduler.delays())


def run_backoff(ref: ActorRef[Any], scheduler: ManualScheduler) -> None:
    wait_until(lambda: restart_pending(scheduler), what="a restart timer")
    scheduler.advance(2.0)
    wait_until(lambda: set(statuses(ref).values()) <= {"running", "stopped"}, what="restart")


def test_children_start_in_order_and_stop_in_reverse_order() -> None:
    journal = Journal()
    ref, _, _ = start_sup([worker_spec(n, journal) for n in "abc"])
    assert journal.of("start") == ["a", "b", "c"]
    ref.stop(block=True, timeout=10)
    assert journal.of("stop") == ["c", "b", "a"]


def test_one_for_one_restarts_only_the_crashed_child() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec(n, journal) for n in "abc"])
    before = children(ref)
    crash(directory, "b")
    run_backoff(ref, scheduler)
    after = children(ref)
    assert journal.of("start") == ["a", "b", "c", "b"]
    assert after["a"].ref is before["a"].ref and after["c"].ref is before["c"].ref
    assert after["b"].restarts == 1 and after["b"].crashes == 1
    assert "crashed on purpose" in after["b"].last_error


def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [worker_spec(n, journal) for n in "abc"], Strategy.ONE_FOR_ALL
    )
    crash(directory, "b")
    run_backoff(ref, scheduler)
    assert journal.of("stop") == ["c", "a"]
    assert journal.of("start") == ["a", "b", "c", "a", "b", "c"]
    assert all(c.restarts == 1 for c in children(ref).values())


def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [worker_spec(n, journal) for n in "abcd"], Strategy.REST_FOR_ONE
    )
    crash(directory, "b")
    run_backoff(ref, scheduler)
    assert journal.of("stop") == ["d", "c"]
    assert journal.of("start") == ["a", "b", "c", "d", "b", "c", "d"]
    assert children(ref)["a"].restarts == 0


def test_more_restarts_than_the_intensity_escalate_to_the_parent() -> None:
    journal = Journal()
    watcher = Watcher()
    ref, directory, scheduler = start_sup(
        [worker_spec(n, journal) for n in "ab"], watcher=watcher, intensity=2, period_s=60
    )
    for _ in range(2):
        crash(directory, "a")
        run_backoff(ref, scheduler)
    crash(directory, "a")
    assert watcher.event.wait(10)
    report = watcher.exits[0]
    assert report.crashed and "restart intensity" in report.error
    wait_until(lambda: not ref.is_alive(), what="supervisor exit")
    assert journal.of("stop")[-2:] == ["b", "a"] or journal.of("stop")[-1] == "b"


def test_restarts_spread_beyond_the_period_do_not_escalate() -> None:
    journal = Journal()
    watcher = Watcher()
    ref, directory, scheduler = start_sup(
        [worker_spec("a", journal)], watcher=watcher, intensity=1, period_s=10
    )
    for _ in range(4):
        crash(directory, "a")
        run_backoff(ref, scheduler)
        scheduler.advance(11)
    assert not watcher.exits and children(ref)["a"].restarts == 4


def test_backoff_delays_grow_exponentially_and_cap_at_the_maximum() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [worker_spec("a", journal)], intensity=100, backoff_min_s=0.1, backoff_max_s=1.0,
        backoff_reset_s=1000,
    )
    delays = []
    for _ in range(7):
        crash(directory, "a")
        wait_until(lambda: restart_pending(scheduler), what="restart timer")
        delays.append(scheduler.delays()[0])
        scheduler.advance(2.0)
        wait_until(lambda: statuses(ref)["a"] == "running", what="restart")
    expected = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    for got, base in zip(delays, expected, strict=True):
        assert base * 0.8 - 1e-9 <= got <= base + 1e-9


def test_backoff_resets_after_a_quiet_period() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [worker_spec("a", journal)], intensity=100, backoff_min_s=0.1, backoff_max_s=10,
        backoff_reset_s=30,
    )
    for _ in range(3):
        crash(directory, "a")
        run_backoff(ref, scheduler)
    scheduler.advance(31)
    crash(directory, "a")
    wait_until(lambda: restart_pending(scheduler), what="restart timer")
    assert scheduler.delays()[0] <= 0.1


def test_a_crash_in_on_start_counts_as_a_crash_and_is_retried() -> None:
    journal = Journal()
    journal.start_failures["b"] = 2
    ref, _, scheduler = start_sup([worker_spec(n, journal) for n in "ab"], intensity=10)
    for _ in range(2):
        wait_until(lambda: restart_pending(scheduler), what="a restart timer")
        scheduler.advance(2.0)
    wait_until(lambda: statuses(ref)["b"] == "running", what="b running")
    info = children(ref)["b"]
    assert info.crashes == 2 and info.restarts == 2
    assert journal.of("start") == ["a", "b"]


def test_a_hung_child_is_detected_by_ping_and_restarted() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [worker_spec("a", journal)], ping_interval_s=1.0, ping_timeout_s=3.0
    )
    release = threading.Event()
    try:
        old = children(ref)["a"].ref
        directory.handle("sup/a").tell(Block(release))
        for _ in range(20):  # ping ticks, one second apart, until the hang is noticed
            info = children(ref)["a"]
            if info.status != "running" or info.ref is not old:
                break
            wait_until(lambda: restart_pending(scheduler), what="next tick")
            scheduler.advance(1.0)
        scheduler.advance(2.0)
        wait_until(lambda: statuses(ref)["a"] == "running" and children(ref)["a"].ref
                   is not old, what="a replaced")
        assert "hung" in children(ref)["a"].last_error
        assert journal.of("release") == []  # still in its handler
        release.set()
        # once its handler returns, the abandoned incarnation releases what it holds
        wait_until(lambda: journal.of("release") == ["a"], what="the hung child's release")
    finally:
        release.set()


def test_an_idle_abandoned_actor_wakes_ends_and_releases_once() -> None:
    journal = Journal()
    ref = Worker.start(journal, name="sup/idle")
    wait_until(lambda: journal.of("start") == ["idle"], what="started")
    abandon(ref)
    wait_until(lambda: journal.of("release") == ["idle"], what="the release")
    assert not ref.is_alive() and journal.of("stop") == []


def test_a_transient_child_that_stops_normally_is_not_restarted() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec("t", journal, Restart.TRANSIENT)])
    directory.handle("sup/t").tell(StopSelf())
    wait_until(lambda: statuses(ref)["t"] == "stopped", what="t stopped")
    scheduler.advance(100)
    assert statuses(ref)["t"] == "stopped" and journal.of("start") == ["t"]


def test_a_transient_child_that_crashes_is_restarted() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec("t", journal, Restart.TRANSIENT)])
    crash(directory, "t")
    run_backoff(ref, scheduler)
    assert statuses(ref)["t"] == "running" and journal.of("start") == ["t", "t"]


def test_a_temporary_child_is_never_restarted() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec("x", journal, Restart.TEMPORARY)])
    crash(directory, "x")
    wait_until(lambda: statuses(ref)["x"] == "stopped", what="x stopped")
    scheduler.advance(100)
    assert journal.of("start") == ["x"]


def test_a_permanent_child_that_stops_normally_is_restarted() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec("p", journal)])
    directory.handle("sup/p").tell(StopSelf())
    run_backoff(ref, scheduler)
    assert journal.of("start") == ["p", "p"]


def test_a_handle_reaches_the_restarted_child_and_refuses_while_it_is_down() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([worker_spec("a", journal)])
    handle = directory.handle("sup/a")
    crash(directory, "a")
    wait_until(lambda: statuses(ref)["a"] == "restarting")
    with pytest.raises(ActorUnavailable):
        handle.tell(Crash())
    run_backoff(ref, scheduler)
    assert handle.ask("hello", timeout=5) is None  # answered by the new incarnation


def test_count_children_and_dynamic_children() -> None:
    journal = Journal()
    ref, _, _ = start_sup([worker_spec("a", journal)])
    assert ref.ask(StartChild(worker_spec("b", journal)), timeout=5) is True
    assert ref.ask(CountChildren(), timeout=5) == {
        "specs": 2, "active": 2, "supervisors": 0, "workers": 2,
    }
    assert ref.ask(TerminateChild("a"), timeout=5) is True
    assert list(children(ref)) == ["b"] and journal.of("stop") == ["a"]


def versioned_spec(child_id: str, journal: Journal, version: str) -> ChildSpec:
    """A worker whose start also records ``version`` (which spec started it)."""
    def start(ctx: StartContext) -> Any:
        journal.add("version", f"{child_id}:{version}")
        return Worker.start(journal, link=ctx.link, name=ctx.name)

    return ChildSpec(id=child_id, start=start)


def test_replace_child_restarts_one_child_from_its_new_spec_in_its_place() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup(
        [versioned_spec("a", journal, "1"), versioned_spec("b", journal, "1")])
    assert ref.ask(ReplaceChild(versioned_spec("a", journal, "2")), timeout=5) is True
    assert list(children(ref)) == ["a", "b"]  # same place in the start order
    assert journal.of("stop") == ["a"] and journal.of("version")[-1] == "a:2"
    assert statuses(ref) == {"a": "running", "b": "running"}
    assert ref.ask(ReplaceChild(versioned_spec("zz", journal, "1")), timeout=5) is None
    crash(directory, "a")  # a later crash restarts it from the new spec
    run_backoff(ref, scheduler)
    assert journal.of("version")[-1] == "a:2"


def test_update_child_spec_changes_the_next_restart_without_restarting_now() -> None:
    journal = Journal()
    ref, directory, scheduler = start_sup([versioned_spec("a", journal, "1")])
    assert ref.ask(UpdateChildSpec(versioned_spec("a", journal, "2")), timeout=5) is True
    assert journal.of("stop") == [] and journal.of("version") == ["a:1"]
    crash(directory, "a")
    run_backoff(ref, scheduler)
    assert journal.of("version") == ["a:1", "a:2"]
    assert ref.ask(UpdateChildSpec(versioned_spec("zz", journal, "1")), timeout=5) is False


def test_nested_supervisors_restart_a_crashed_subtree() -> None:
    journal = Journal()
    scheduler = ManualScheduler()

    def inner(ctx: StartContext) -> Any:
        return Supervisor.start(
            name=ctx.name, flags=SupFlags(ping_interval_s=0, intensity=0),
            children=[worker_spec(n, journal) for n in "xy"], directory=ctx.directory,
            scheduler=ctx.scheduler, clock=scheduler.clock, link=ctx.link,
        )

    ref, directory, _ = start_sup(
        [ChildSpec(id="inner", start=inner, supervisor=True)], scheduler=scheduler
    )
    directory.handle("sup/inner/x").tell(Crash())  # intensity 0: inner gives up at once
    wait_until(lambda: restart_pending(scheduler), what="inner restart timer")
    scheduler.advance(2.0)
    wait_until(lambda: statuses(ref)["inner"] == "running")
    assert journal.of("start") == ["x", "y", "x", "y"]
    assert children(ref)["inner"].crashes == 1


def test_a_watcher_hears_of_each_rebind_of_a_name_and_not_of_the_first_bind_before_it() -> None:
    directory = Directory()
    heard: list[Any] = []

    class Watcher(LogcapActor):
        def handle(self, message: Any) -> Any:
            heard.append(message)
            return None

    watcher = Watcher.start(name="w", directory=directory)
    directory.bind("w", watcher)
    first = Watcher.start(name="x")
    directory.bind("x", first)  # bound before anyone watches: nobody is told
    directory.handle("x").watch(directory.handle("w"))
    directory.handle("x").watch(directory.handle("w"))  # idempotent
    second = Watcher.start(name="x")
    directory.bind("x", second)
    assert watcher.ask(Ping(), timeout=5) == "pong"
    assert heard == [Rebound("x")]
    for ref in (watcher, first, second):
        ref.stop()
