"""DeadLetterQueue: the actor that owns the DLQ store and re-sends its entries on request.

Messages taken (all in the control lane):

* :class:`~logcap.state.dlq.DeadLetter` (tell): a batch a sink rejected for good. Stored and
  fsynced (:meth:`~logcap.state.dlq.DeadLetterStore.add`), counted by sink and reason; over
  ``max_total_size``, retention runs at once. If the write fails (disk full, I/O error) the entry
  is kept in memory (up to :data:`MAX_UNWRITTEN` entries) and written again on a timer; past
  that bound it is dropped, counted (``reason="write_error"``) and logged, never silently.
* :class:`StoreDeadLetter` (ask): how sinks and the disk buffer hand a batch over. Answers
  True once the entry is stored and fsynced, False if the write failed (nothing is kept: the
  sender still has the batch and answers *retry*, so it comes again). The sender settles the
  batch only on True: told, an entry still in this actor's mailbox when it crashed was lost
  with the mailbox, while the sink had answered *rejected* and the source had committed
  past it; asked, the crash fails the ask and the sender keeps the batch.
* :class:`DlqStats` (ask): the store's stats plus the reprocessing under way.
* :class:`Reprocess` (ask): select entries by sink, reason, ids and time. A dry run only says
  what would be sent. Otherwise the selected entries are *claimed* in the idempotency ledger
  (durably, before anything is sent) and only the newly claimed ones are queued, so a repeated
  or concurrent reprocess never sends an entry twice. Queued entries go, at most
  :data:`MAX_IN_FLIGHT` at a time, as a :class:`~logcap.messages.Deliver` (``reply_to`` = this
  actor's address, ``ordered=False``, lines with their original timestamps) to the entry's
  sink, through an :class:`~logcap.dispatch.outbox.Outbox` (one retry gate per sink, shared by
  the resends to it); a refused send (full mailbox, sink restarting) is offered again on a
  timer.
* :class:`~logcap.messages.SinkResult` (tell, from a sink): delivered -> done; rejected again ->
  done, logged and counted (the entry stays in the DLQ, its claim recorded); retry -> resent
  with exponential backoff and full jitter; after :data:`MAX_REPROCESS_ATTEMPTS` failures the
  claim is released, so a later reprocess may try again.
* :class:`~logcap.runtime.directory.Rebound` (from the directory: this actor watches each
  sink's name): a sink restarted; what it was sent and did not answer is sent again.
* :class:`~logcap.messages.SinksChanged` (ask, a reload): entries of an added sink can be
  reprocessed; resends under way to a removed sink are given up and their entries released.
* ``_Maintain`` (timer, every :data:`MAINTAIN_INTERVAL_S`): retention by age and size (dropped
  lines counted by cause), outcomes of resends written to the ledger.

Start: open the store (problems found are logged as warnings; bad data never stops it), watch
the sinks' names, schedule ``_Maintain`` and, :data:`RESUME_DELAY_S` later (once the supervisor
has bound this actor's name), resume the resends a crash interrupted (claimed, no outcome
recorded). A resend whose answer never comes (lost with a restart) counts as a failure after
:data:`ANSWER_TIMEOUT_S` (:meth:`~logcap.dispatch.outbox.Outbox.overdue`) and is sent again.
Stop: write the ledger, close the store. Resends still under way stay claimed without an
outcome and are resumed at the next start (at least once, with the original timestamps).
Failure: an unexpected exception crashes the actor; the supervisor restarts it, and the restart
resumes the interrupted resends the same way.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from logcap.actors.sink_set import change_sinks
from logcap.dispatch.outbox import Failure, Gate, Outbox, Send
from logcap.dispatch.retry import DEFAULT_RETRY_BASE_DELAY_S, DEFAULT_RETRY_MAX_DELAY_S
from logcap.messages import Deliver, Entries, Outcome, SinkResult, SinksChanged
from logcap.metrics import (
    DLQ_DROPPED_LINES,
    DLQ_ENTRIES,
    DLQ_LINES,
    DLQ_REPROCESSED,
    DLQ_SIZE,
    RESENT_LINES,
)
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle, Rebound
from logcap.runtime.mailbox import DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle
from logcap.state.dlq import DeadLetter, DeadLetterStore, DlqFilter, Dropped

__all__ = ["ANSWER_TIMEOUT_S", "HAND_OVER_TIMEOUT_S", "MAINTAIN_INTERVAL_S", "MAX_IN_FLIGHT",
           "MAX_REPROCESS_ATTEMPTS", "MAX_UNWRITTEN", "RESUME_DELAY_S", "DeadLetterQueue",
           "DlqStats", "Reprocess", "StoreDeadLetter", "hand_over"]

log = logging.getLogger(__name__)

MAINTAIN_INTERVAL_S = 60.0
MAX_IN_FLIGHT = 8
"""Entries being re-sent at once (the rest wait as ids: memory stays bounded)."""
MAX_REPROCESS_ATTEMPTS = 10
MAX_UNWRITTEN = 64
WRITE_RETRY_S = 5.0
RESUME_DELAY_S = 1.0
"""Interrupted resends are resumed this long after start: by then the supervisor has bound
this actor's name, so the sinks' answers reach it."""
ANSWER_TIMEOUT_S = 300.0
"""A resend with no answer after this long (the answer was lost) counts as failed and is
sent again."""

HAND_OVER_TIMEOUT_S = 5.0
"""How long a sender waits for :class:`StoreDeadLetter`'s answer before it answers *retry*."""


@dataclass(frozen=True, slots=True)
class StoreDeadLetter:
    """Ask: store ``entry`` now; True once fsynced, False if it could not be written."""

    entry: DeadLetter


def hand_over(dlq: Handle, entry: DeadLetter) -> str:
    """Hand ``entry`` to the DLQ and wait until it is stored: ``""`` when it is, else why not
    (the DLQ is restarting, full, crashed meanwhile, too slow, or its disk refused the write);
    then the caller keeps the batch and tries again later. An ask that timed out may still be
    stored: the batch then reaches the DLQ twice, never zero times."""
    try:
        stored = dlq.ask(StoreDeadLetter(entry), timeout=HAND_OVER_TIMEOUT_S)
    except DeliveryRefused as exc:
        return str(exc) or type(exc).__name__
    except pykka.Timeout:
        return f"no answer within {HAND_OVER_TIMEOUT_S:.0f}s"
    except pykka.ActorDeadError:
        return f"{dlq.name} stopped before storing it"
    return "" if stored else "the write failed"


@dataclass(frozen=True, slots=True)
class DlqStats:
    """Ask: the DLQ's stats (a dict)."""


@dataclass(frozen=True, slots=True)
class Reprocess:
    """Ask: re-send the matching entries (all given filters must match; ``since``/``until``
    bound the time an entry was dead-lettered, unix seconds, inclusive). Answers a dict:
    ``dry_run``, ``matched`` (count), ``queued`` (ids sent, or that would be),
    ``skipped_already_reprocessed``, ``skipped_unknown_sink`` (ids), ``not_found`` (requested
    ids that are not in the DLQ or do not match the other filters)."""

    sink: str | None = None
    reason: str | None = None
    ids: tuple[str, ...] | None = None
    since: float | None = None
    until: float | None = None
    dry_run: bool = False

    @classmethod
    def from_filters(cls, filters: dict[str, Any]) -> Reprocess:
        """From the filters of ``POST /dlq/reprocess``
        (:func:`logcap.api.dlq_routes.parse_reprocess_filters`)."""
        ids = filters.get("ids")
        return cls(filters.get("sink"), filters.get("reason"),
                   None if ids is None else tuple(ids), filters.get("since"),
                   filters.get("until"), bool(filters.get("dry_run", False)))


@dataclass(frozen=True, slots=True)
class _Maintain:
    pass


@dataclass(frozen=True, slots=True)
class _Retry:
    """Timer: ``sink``'s retry gate opens; the resends waiting for it go."""

    sink: str


@dataclass(frozen=True, slots=True)
class _WriteAgain:
    pass


@dataclass(frozen=True, slots=True)
class _Resume:
    pass


@dataclass(frozen=True, slots=True)
class _AnswerDue:
    """Timer, ANSWER_TIMEOUT_S after a send: resends unanswered that long count as failed."""


@dataclass(frozen=True, slots=True)
class _Resend:
    entry_id: str
    sink: str
    parts: tuple[Entries, ...]
    lines: int


class DeadLetterQueue(LogcapActor):
    def __init__(
        self,
        store: DeadLetterStore,
        sinks: dict[str, Handle],
        scheduler: Scheduler,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        retry_base_delay_s: float = DEFAULT_RETRY_BASE_DELAY_S,
        retry_max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.store = store
        self.sinks = dict(sinks)  # its own: a reload changes it (SinksChanged)
        self.scheduler = scheduler
        self.clock = clock
        self.rng = rng or random.Random()
        self.problems: list[str] = []
        self._queue: deque[str] = deque()
        self.outbox: Outbox[_Resend] = Outbox(
            sinks, max_retries=MAX_REPROCESS_ATTEMPTS - 1, base_delay_s=retry_base_delay_s,
            max_delay_s=retry_max_delay_s, clock=clock, rng=self.rng)
        self._sink_of = {handle.name: sink for sink, handle in sinks.items()}
        self._batch_ids = itertools.count(time.time_ns())  # unique across restarts
        self._unwritten: list[DeadLetter] = []
        self._maintain_timer: TimerHandle | None = None

    def handle_start(self) -> None:
        self.problems = self.store.open()
        for problem in self.problems:
            log.warning("%s: %s", self.name, problem)
        for handle in self.sinks.values():
            handle.watch(self.address)
        self._later(RESUME_DELAY_S, _Resume())
        DLQ_SIZE.set(self.store.total_bytes)
        self._maintain_timer = self._later(MAINTAIN_INTERVAL_S, _Maintain())

    def handle_stop(self) -> None:
        if self._maintain_timer is not None:
            self._maintain_timer.cancel()
        pending, self._unwritten = self._unwritten, []
        for entry in pending:  # a last try; what still fails is counted and logged
            self._store(entry, keep=False)
        self.store.close()

    def handle_crash(self) -> None:
        """As at a stop: a last try to store the entries not yet written (they have no
        other copy), then the store closed (its ledger written, its file released)."""
        self.handle_stop()

    def handle(self, message: Any) -> Any:
        if isinstance(message, StoreDeadLetter):
            return self._store(message.entry, keep=False, handed=True)
        if isinstance(message, DeadLetter):
            self._store(message)
        elif isinstance(message, SinkResult):
            self._on_result(message)
        elif isinstance(message, _Retry):
            self.outbox.open_gate(message.sink)
            self._send_ready()
        elif isinstance(message, _AnswerDue):
            for batch_id, late in self.outbox.overdue(ANSWER_TIMEOUT_S):
                self._failed(batch_id, late, "no answer", None)
        elif isinstance(message, _Resume):
            busy = {*self._queue, *(r.entry_id for r in self.outbox.payloads())}
            resumed = [i for i in self.store.unfinished() if i not in busy]
            if resumed:
                log.info("%s: resuming %d interrupted resends", self.name, len(resumed))
                self._queue.extend(resumed)
                self._pump()
        elif isinstance(message, Rebound):
            restarted = self._sink_of.get(message.name)
            if restarted is not None:
                self.outbox.restarted(restarted)
                self._send_ready()
        elif isinstance(message, SinksChanged):
            self._change_sinks(message)
            return True
        elif isinstance(message, Reprocess):
            return self._reprocess(message)
        elif isinstance(message, DlqStats):
            return {**self.store.stats(), "problems": list(self.problems),
                    "reprocessing": {"queued": len(self._queue),
                                     "in_flight": len(self.outbox)}}
        elif isinstance(message, _Maintain):
            self._maintain()
            self._maintain_timer = self._later(MAINTAIN_INTERVAL_S, _Maintain())
        elif isinstance(message, _WriteAgain):
            pending, self._unwritten = self._unwritten, []
            for entry in pending:
                self._store(entry)
        else:
            return super().handle(message)
        return None

    def _later(self, delay: float, message: Any) -> TimerHandle:
        """A timer message to self (one that fires after a stop is dropped by the scheduler)."""
        return self.scheduler.call_later(delay, self.actor_ref, message)

    # -- storing ---------------------------------------------------------------------------

    def _store(self, entry: DeadLetter, keep: bool = True, handed: bool = False) -> bool:
        """Store ``entry``; True if written. A write failure keeps a told entry in memory
        (``keep``) to write again on a timer; a ``handed`` one (asked) is the sender's to
        hand over again, so nothing is counted as lost."""
        try:
            self.store.add(entry)
        except OSError as exc:
            if handed:
                log.warning("%s: cannot write DLQ entry %s (%s); its sender keeps it and "
                            "retries", self.name, entry.id, exc)
                return False
            if not keep or len(self._unwritten) >= MAX_UNWRITTEN:
                DLQ_DROPPED_LINES.labels("write_error").inc(entry.line_count)
                log.error("%s: DLQ entry %s (%d lines from %s) lost: cannot write: %s",
                          self.name, entry.id, entry.line_count, entry.sink, exc)
                return False
            if not self._unwritten:
                self._later(WRITE_RETRY_S, _WriteAgain())
            self._unwritten.append(entry)
            log.warning("%s: cannot write DLQ entry %s (%s); retrying in %.0fs", self.name,
                        entry.id, exc, WRITE_RETRY_S)
            return False
        DLQ_ENTRIES.labels(entry.sink, entry.reason).inc()
        DLQ_LINES.labels(entry.sink, entry.reason).inc(entry.line_count)
        if self.store.total_bytes > self.store.max_total_size:
            self._count_dropped(self.store.collect(self.clock()))
        DLQ_SIZE.set(self.store.total_bytes)
        return True

    def _maintain(self) -> None:
        self._count_dropped(self.store.collect(self.clock()))
        self.store.flush_ledger()
        DLQ_SIZE.set(self.store.total_bytes)

    def _count_dropped(self, dropped: dict[str, Dropped]) -> None:
        for cause, gone in dropped.items():
            DLQ_DROPPED_LINES.labels(cause).inc(gone.lines)
            log.warning("%s: retention (%s) dropped %d DLQ entries, %d lines, %d files",
                        self.name, cause, gone.entries, gone.lines, gone.files)

    def _change_sinks(self, change: SinksChanged) -> None:
        """A reload added or removed sinks: entries for an added sink can be reprocessed; the
        resends under way to a removed one are given up and their entries released (unclaimed,
        still stored: reprocessing them later needs that sink back)."""
        released, _ = change_sinks(change, self.sinks, self._sink_of, self.outbox,
                                   self.address)
        for sink, resends in released.items():
            if resends:
                log.warning("%s: sink %s was removed; %d entries being reprocessed to it are "
                            "released", self.name, sink, len(resends))
                self.store.release([resend.entry_id for resend in resends])
        self._pump()

    # -- reprocessing ----------------------------------------------------------------------

    def _reprocess(self, request: Reprocess) -> dict[str, Any]:
        wanted = DlqFilter(request.sink, request.reason,
                           None if request.ids is None else frozenset(request.ids),
                           request.since, request.until)
        matched = self.store.ids(wanted)
        sendable = [i for i in matched if self.store.sink_of(i) in self.sinks]
        unknown_sink = [i for i in matched if self.store.sink_of(i) not in self.sinks]
        if request.dry_run:
            before = self.store.claimed(sendable)
            queued = [i for i in sendable if i not in before]
        else:
            queued = self.store.claim(sendable)
        fresh = set(queued)
        found = set(matched)
        answer = {"dry_run": request.dry_run, "matched": len(matched), "queued": queued,
                  "skipped_already_reprocessed": [i for i in sendable if i not in fresh],
                  "skipped_unknown_sink": unknown_sink,
                  "not_found": [i for i in request.ids or () if i not in found]}
        if not request.dry_run and queued:
            log.info("%s: reprocessing %d entries", self.name, len(queued))
            self._queue.extend(queued)
            self._pump()
        return answer

    def _pump(self) -> None:
        while self._queue and len(self.outbox) < MAX_IN_FLIGHT:
            entry_id = self._queue.popleft()
            entry = self.store.get(entry_id)
            if entry is None:  # removed by retention meanwhile
                self.store.finish([entry_id], "gone")
                DLQ_REPROCESSED.labels("unknown", "gone").inc()
                continue
            if entry.sink not in self.sinks:
                log.warning("%s: entry %s is for sink %s, which is not running; released",
                            self.name, entry_id, entry.sink)
                self.store.release([entry_id])
                continue
            if not entry.line_count:  # nothing to send
                self.store.finish([entry_id], "delivered")
                DLQ_REPROCESSED.labels(entry.sink, "delivered").inc()
                continue
            self.outbox.add(next(self._batch_ids), _Resend(entry_id, entry.sink,
                                                           entry.to_parts(), entry.line_count),
                            [entry.sink])
        self._send_ready()
        if not self._queue and not len(self.outbox):
            self.store.flush_ledger()

    def _send_ready(self) -> None:
        for gate in self.outbox.pump(self._transmit):
            self._arm(gate)

    def _transmit(self, send: Send[_Resend]) -> bool:
        resend = send.payload
        message = Deliver(send.batch_id, resend.parts, resend.lines, self.address, send.attempt,
                          ordered=False)
        try:
            self.sinks[resend.sink].tell(message)
        except DeliveryRefused:
            return False
        if send.resend:
            RESENT_LINES.labels(self.name, resend.sink).inc(resend.lines)
        self._later(ANSWER_TIMEOUT_S, _AnswerDue())
        return True

    def _arm(self, gate: Gate | None) -> None:
        if gate is not None:
            self._later(gate.delay_s, _Retry(gate.sink))

    def _on_result(self, result: SinkResult) -> None:
        resend = self.outbox.payload(result.batch_id)
        if resend is None or resend.sink != result.sink:
            return  # not ours, or already settled
        if result.outcome is Outcome.RETRY:
            self._failed(result.batch_id, result.sink, result.reason, result.retry_after_s)
            return
        if result.outcome is Outcome.REJECTED:
            log.error("%s: %s rejected DLQ entry %s again (%d lines): %s %s; it stays in the "
                      "DLQ", self.name, resend.sink, resend.entry_id, resend.lines,
                      result.reason, result.detail[:300])
        outcome = "rejected" if result.outcome is Outcome.REJECTED else "delivered"
        self.store.finish([resend.entry_id], outcome)
        self.outbox.settle(result.batch_id, result.sink)
        self._done(resend, outcome)

    def _failed(self, batch_id: int, sink: str, reason: str,
                retry_after_s: float | None) -> None:
        failure: Failure | None = self.outbox.failed(batch_id, sink, retry_after_s)
        resend = self.outbox.payload(batch_id)
        if failure is None or resend is None:
            return  # an answer to an earlier send
        if not failure.exhausted:
            self._arm(failure.gate)
            return
        log.warning("%s: resend of %s to %s failed %d times (%s); released for a later "
                    "reprocess", self.name, resend.entry_id, sink, failure.failures, reason)
        self.store.release([resend.entry_id])
        self.outbox.abandon(failure)
        self._done(resend, "abandoned")

    def _done(self, resend: _Resend, outcome: str) -> None:
        DLQ_REPROCESSED.labels(resend.sink, outcome).inc()
        self._pump()
