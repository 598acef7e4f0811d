"""The DeadLetterQueue actor: storing dead letters, and re-sending them exactly once through a
real SinkActor whose backend is scripted."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logcap.actors import dead_letters
from logcap.actors.dead_letters import DeadLetterQueue, DlqStats, Reprocess
from logcap.actors.sink import SinkActor
from logcap.api.dlq_routes import parse_reprocess_filters
from logcap.messages import Deliver, Entries, Outcome, SinkResult
from logcap.origin import FILE_KIND, ReadToken
from logcap.runtime.actor import Ping
from logcap.runtime.crash import CrashActor
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.timers import ManualScheduler
from logcap.sinks.base import Verdict
from logcap.state.dlq import DeadLetter, DeadLetterStore
from tests.actor_kit import wait_until
from tests.sink_kit import ResultRecorder, ScriptedBackend

DLQ = "root/state/dlq"
SINK = "root/sinks/loki"
MiB = 1024 * 1024
ASK_S = 5.0


class SinkHandle(Handle):
    """The DLQ's handle to the sink; with ``answers_lost`` every answer is lost (each Deliver's
    ``reply_to`` is replaced by a name nobody holds)."""

    __slots__ = ("answers_lost",)

    def __init__(self, directory: Directory, name: str) -> None:
        super().__init__(directory, name)
        self.answers_lost = False

    def tell(self, message: Any) -> None:
        if self.answers_lost and isinstance(message, Deliver):
            message = dataclasses.replace(message, reply_to=Handle(self.directory, "nobody"))
        super().tell(message)


class Rig:
    def __init__(self, path: Path, backend: ScriptedBackend) -> None:
        self.path = path
        self.backend = backend
        self.directory = Directory()
        self.scheduler = ManualScheduler()  # its clock is the DLQ's too (answer timeouts)
        self.store = DeadLetterStore(path, 64 * MiB, 7 * 86_400.0)
        self.dlq = self.directory.handle(DLQ)
        self.sink = SinkHandle(self.directory, SINK)

    def start_sink(self, answers: bool = True) -> None:
        self.sink.answers_lost = not answers
        ref = SinkActor.start("loki", lambda: self.backend, name=SINK)
        ref.ask(Ping(), timeout=ASK_S)
        self.directory.bind(SINK, ref)

    def start_dlq(self) -> None:
        ref = DeadLetterQueue.start(self.store, {"loki": self.sink}, self.scheduler,
                                    clock=self.scheduler.clock.monotonic,
                                    retry_base_delay_s=1.0, retry_max_delay_s=2.0, name=DLQ,
                                    directory=self.directory)
        ref.ask(Ping(), timeout=ASK_S)  # started (as the supervisor waits before binding)
        self.directory.bind(DLQ, ref)

    def ask(self, message: Any) -> Any:
        return self.dlq.ask(message, timeout=ASK_S)

    def retries(self) -> list[float]:
        """Delays of the scheduled resends."""
        return self.scheduler.delays(lambda m: type(m).__name__ == "_Retry")

    def wait_for_retry(self) -> list[float]:
        wait_until(lambda: self.retries() != [], what="a resend scheduled")
        return self.retries()

    def settled(self) -> bool:
        return self.ask(DlqStats())["reprocessing"] == {"queued": 0, "in_flight": 0}


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def rig(tmp_path: Path, backend: ScriptedBackend) -> Iterator[Rig]:
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink()
    yield rig


def letter(lines: int = 3, ts_ns: int = 1_700_000_000_000_000_000) -> DeadLetter:
    part = Entries("mysql", "/var/log/e.log", (("job", "mysql"),),
                   [f"l{i}" for i in range(lines)], ts_ns,
                   ReadToken("mysql", FILE_KIND, None, 0, 1, "k", 0))
    return DeadLetter.from_parts("loki", "bad_request", 400, 1, 10.0, 20.0, "too old", (part,))


def fill(rig: Rig, count: int) -> list[str]:
    entries = [letter() for _ in range(count)]
    for entry in entries:
        rig.dlq.tell(entry)
    wait_until(lambda: rig.ask(DlqStats())["entries"] == count, what="entries stored")
    return [entry.id for entry in entries]


def test_a_dead_letter_told_to_the_queue_is_stored_durably(rig: Rig) -> None:
    [entry_id] = fill(rig, 1)
    other = DeadLetterStore(rig.path, 64 * MiB, 86_400.0)
    assert other.open() == []
    assert other.ids() == [entry_id]
    assert rig.ask(DlqStats())["by_reason"]["bad_request"]["lines"] == 3


def test_reprocess_asked_twice_concurrently_sends_each_entry_exactly_once(
        rig: Rig, backend: ScriptedBackend) -> None:
    ids = fill(rig, 20)
    start = threading.Barrier(2)
    answers: list[dict[str, Any]] = []

    def ask() -> None:
        start.wait()
        answers.append(rig.ask(Reprocess()))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued = [answer["queued"] for answer in answers]
    assert sorted(queued[0] + queued[1]) == sorted(ids)
    assert not set(queued[0]) & set(queued[1])
    backend.wait_for(20)
    wait_until(rig.settled, what="every resend settled")
    assert sorted(backend.entry_ids()) == sorted(ids)
    again = rig.ask(Reprocess(sink="loki"))
    assert again["queued"] == [] and sorted(again["skipped_already_reprocessed"]) == sorted(ids)
    assert len(backend.batches) == 20


def test_resent_lines_keep_their_labels_and_original_timestamps(
        rig: Rig, backend: ScriptedBackend) -> None:
    entry = letter(lines=4, ts_ns=1234)
    rig.dlq.tell(entry)
    assert rig.ask(Reprocess(ids=(entry.id,)))["queued"] == [entry.id]
    backend.wait_for(1)
    [parts] = backend.batches
    assert [(p.labels, p.ts_ns, p.lines) for p in parts] == [
        ((("job", "mysql"),), 1234, ["l0", "l1", "l2", "l3"])]


def test_a_dry_run_sends_nothing_and_claims_nothing(rig: Rig, backend: ScriptedBackend) -> None:
    ids = fill(rig, 3)
    answer = rig.ask(Reprocess(dry_run=True))
    assert answer["dry_run"] and sorted(answer["queued"]) == sorted(ids)
    assert rig.sink.ask("anything", timeout=ASK_S) is None  # the sink has drained its inbox
    assert backend.batches == []
    assert sorted(rig.ask(Reprocess())["queued"]) == sorted(ids)
    backend.wait_for(3)


def test_filters_and_unknown_ids_are_reported_in_the_answer(rig: Rig) -> None:
    ids = fill(rig, 2)
    filters = parse_reprocess_filters({"ids": [ids[0], "f" * 32], "dry_run": True})
    answer = rig.ask(Reprocess.from_filters(filters))
    assert answer["queued"] == [ids[0]] and answer["not_found"] == ["f" * 32]
    assert rig.ask(Reprocess(reason="other", dry_run=True))["matched"] == 0


def test_a_retry_verdict_resends_the_entry_after_a_backoff(tmp_path: Path) -> None:
    backend = ScriptedBackend([Verdict(Outcome.RETRY, "server_error", retry_after_s=1.5)])
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink()
    [entry_id] = fill(rig, 1)
    rig.ask(Reprocess())
    backend.wait_for(1)
    assert min(rig.wait_for_retry()) >= 1.5
    rig.scheduler.advance(2.0)
    backend.wait_for(2)
    wait_until(rig.settled, what="the resend settled")
    assert backend.entry_ids() == [entry_id, entry_id]


def test_a_refused_send_is_kept_and_retried_on_a_timer(tmp_path: Path) -> None:
    backend = ScriptedBackend()
    rig = Rig(tmp_path, backend)
    rig.start_dlq()  # no sink running yet: sends are refused
    [entry_id] = fill(rig, 1)
    assert rig.ask(Reprocess())["queued"] == [entry_id]
    assert not rig.settled()
    rig.start_sink()
    rig.scheduler.advance(1.0)
    backend.wait_for(1)
    wait_until(rig.settled, what="the resend settled")


def test_a_sink_rejecting_again_leaves_the_entry_in_the_dlq_with_its_claim(
        tmp_path: Path) -> None:
    backend = ScriptedBackend([Verdict(Outcome.REJECTED, "bad_request", detail="still old")])
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink()
    [entry_id] = fill(rig, 1)
    rig.ask(Reprocess())
    backend.wait_for(1)
    wait_until(rig.settled, what="the resend settled")
    assert rig.ask(DlqStats())["entries"] == 1
    assert rig.ask(Reprocess())["skipped_already_reprocessed"] == [entry_id]


def test_resends_that_keep_failing_are_released_for_a_later_reprocess(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dead_letters, "MAX_REPROCESS_ATTEMPTS", 2)
    backend = ScriptedBackend([Verdict(Outcome.RETRY, "server_error")] * 2)
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink()
    [entry_id] = fill(rig, 1)
    rig.ask(Reprocess())
    backend.wait_for(1)
    rig.wait_for_retry()
    rig.scheduler.advance(5.0)
    backend.wait_for(2)
    wait_until(rig.settled, what="the resend given up")
    assert rig.ask(Reprocess())["queued"] == [entry_id]
    backend.wait_for(3)


def test_interrupted_resends_are_resumed_when_the_queue_starts(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, 64 * MiB, 86_400.0)
    store.open()
    entry = letter()
    store.add(entry)
    store.claim([entry.id])  # claimed, then a crash before any outcome was recorded
    store.close()
    backend = ScriptedBackend()
    rig = Rig(tmp_path, backend)
    rig.start_sink()
    rig.start_dlq()
    rig.scheduler.advance(dead_letters.RESUME_DELAY_S)
    backend.wait_for(1)
    wait_until(rig.settled, what="the resumed resend settled")
    assert backend.entry_ids() == [entry.id]
    assert rig.ask(Reprocess())["queued"] == []


def test_a_restarted_sink_is_sent_again_what_it_had_not_answered(tmp_path: Path) -> None:
    release = threading.Event()

    class Stuck(ScriptedBackend):
        def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
            verdict = super().deliver(parts)
            if len(self.batches) == 1:
                release.wait(10)
                raise RuntimeError("sink crashed mid-request")
            return verdict

    backend = Stuck()
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink()
    [entry_id] = fill(rig, 1)
    rig.ask(Reprocess())
    backend.wait_for(1)
    old = rig.directory.lookup(SINK)
    release.set()
    assert old is not None
    wait_until(lambda: not old.is_alive(), what="the sink crashed")
    rig.start_sink()  # as its supervisor would: the bind tells the watching DLQ Rebound
    # The resend may come before the supervisor binds the new sink: then it is retried soon.
    wait_until(lambda: len(backend.batches) >= 2 or rig.retries() != [], what="a resend")
    rig.scheduler.advance(1.0)
    backend.wait_for(2)
    wait_until(rig.settled, what="the resend settled")
    assert backend.entry_ids() == [entry_id, entry_id]


def test_stop_writes_the_outcomes_to_the_ledger(rig: Rig, backend: ScriptedBackend) -> None:
    ids = fill(rig, 2)
    rig.ask(Reprocess())
    backend.wait_for(2)
    wait_until(rig.settled, what="every resend settled")
    ref = rig.directory.lookup(DLQ)
    assert ref is not None
    ref.stop()
    store = DeadLetterStore(rig.path, 64 * MiB, 86_400.0)
    store.open()
    assert store.unfinished() == [] and store.claimed(ids) == set(ids)


def test_a_resend_whose_answer_is_lost_is_sent_again_after_the_answer_timeout(
        tmp_path: Path) -> None:
    backend = ScriptedBackend()
    rig = Rig(tmp_path, backend)
    rig.start_dlq()
    rig.start_sink(answers=False)
    [entry_id] = fill(rig, 1)
    rig.ask(Reprocess())
    backend.wait_for(1)
    rig.scheduler.advance(dead_letters.ANSWER_TIMEOUT_S)
    rig.scheduler.advance(rig.wait_for_retry()[0])
    backend.wait_for(2)
    assert backend.entry_ids() == [entry_id, entry_id]


def test_an_entry_the_disk_refused_is_kept_and_written_again_on_a_timer(tmp_path: Path) -> None:
    class FullOnce(DeadLetterStore):
        full = True

        def add(self, entry: DeadLetter) -> str:
            if self.full:
                self.full = False
                raise OSError(28, "No space left on device")
            return super().add(entry)

    rig = Rig(tmp_path, ScriptedBackend())
    rig.store = FullOnce(tmp_path, 64 * MiB, 86_400.0)
    rig.start_dlq()
    entry = letter()
    rig.dlq.tell(entry)
    assert rig.ask(DlqStats())["entries"] == 0
    rig.scheduler.advance(dead_letters.WRITE_RETRY_S)
    wait_until(lambda: rig.ask(DlqStats())["entries"] == 1, what="the entry written")
    assert rig.store.ids() == [entry.id]


def test_a_rejected_batch_the_dlq_cannot_take_is_answered_retry_never_dropped(
    tmp_path: Path
) -> None:
    directory = Directory()
    results: list[SinkResult] = []
    shard = ResultRecorder.start(results, name="root/dispatchers/shard-0")
    shard_handle = directory.handle("root/dispatchers/shard-0")
    directory.bind(shard_handle.name, shard)
    backend = ScriptedBackend([Verdict(Outcome.REJECTED, "bad_request", None, "too old")])
    unbound_dlq = directory.handle(DLQ)  # the DLQ is restarting: not running
    sink = SinkActor.start("loki", lambda: backend, unbound_dlq, name=SINK)
    try:
        part = letter().to_parts()[0]
        sink.tell(Deliver(7, (part,), len(part.lines), shard_handle, 1))
        wait_until(lambda: len(results) == 1, what="the verdict")
        assert (results[0].batch_id, results[0].outcome, results[0].reason) == (
            7, Outcome.RETRY, "dlq_unavailable")
    finally:
        sink.stop()
        shard.stop()



def test_a_rejected_batch_is_not_lost_when_the_dlq_crashes_before_storing_it(
    tmp_path: Path
) -> None:
    """The DLQ crashes while the sink's hand-over waits in its mailbox: the sink must not have
    answered *rejected* for a batch the DLQ never stored (its source would commit past lines
    that are nowhere). Told, the entry died in the mailbox; asked, the hand-over fails with
    the crash and the sink answers retry."""
    gate = threading.Event()

    class Slow(DeadLetterStore):
        def add(self, entry: DeadLetter) -> str:
            gate.wait(10)
            return super().add(entry)

    rig = Rig(tmp_path, ScriptedBackend())
    rig.store = Slow(tmp_path, 64 * MiB, 86_400.0)
    rig.start_dlq()
    results: list[SinkResult] = []
    shard = ResultRecorder.start(results, name="root/dispatchers/shard-0")
    shard_handle = rig.directory.handle("root/dispatchers/shard-0")
    rig.directory.bind(shard_handle.name, shard)
    backend = ScriptedBackend([Verdict(Outcome.REJECTED, "bad_request", None, "too old")])
    sink = SinkActor.start("loki", lambda: backend, rig.dlq, name=SINK)
    dlq_ref = rig.directory.lookup(DLQ)
    assert dlq_ref is not None
    try:
        rig.dlq.tell(letter())  # the DLQ is busy storing this one...
        rig.dlq.tell(CrashActor("chaos"))  # ...then it crashes
        part = letter().to_parts()[0]
        sink.tell(Deliver(7, (part,), len(part.lines), shard_handle, 1))
        backend.wait_for(1)
        wait_until(lambda: dlq_ref.actor_inbox.control_depth >= 2 or bool(results),
                   what="the hand-over queued behind the crash")
        gate.set()
        wait_until(lambda: len(results) == 1, what="the verdict")
        wait_until(lambda: not dlq_ref.is_alive(), what="the DLQ crashed")
        reopened = DeadLetterStore(tmp_path, 64 * MiB, 86_400.0)
        assert reopened.open() == []
        stored = len(reopened.ids())
        reopened.close()
        outcome = results[0].outcome
        assert outcome is Outcome.RETRY or stored == 2, (
            f"answered {outcome.name} but the DLQ holds {stored} of 2 entries")
    finally:
        gate.set()
        sink.stop()
        shard.stop()
