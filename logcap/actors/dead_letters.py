"""DeadLetterQueue: the actor that owns the DLQ store and re-sends its entries on request.

Messages taken (all in the control lane):

* :class:`~logcap.state.dlq.DeadLetter` (tell): a batch a sink rejected for good. Stored and
  fsynced (:meth:`~logcap.state.dlq.DeadLetterStore.add`), counted by sink and reason; over
  ``max_total_size``, retention runs at once. If the write fails (disk full, I/O error) the entry
  is kept in memory (up to :data:`MAX_UNWRITTEN` entries) and written again on a timer; past
  that bound it is dropped, counted (``reason="write_error"``) and logged, never silently.
* :class:`DlqStats` (ask): the store's stats plus the reprocessing under way.
* :class:`Reprocess` (ask): select entries by sink, reason, ids and time. A dry run only says
  what would be sent. Otherwise the selected entries are *claimed* in the idempotency ledger
  (durably, before anything is sent) and only the newly claimed ones are queued, so a repeated
  or concurrent reprocess never sends an entry twice. Queued entries go, at most
  :data:`MAX_IN_FLIGHT` at a time, as a :class:`~logcap.messages.Deliver` (``shard`` = this
  actor's name, lines with their original timestamps) to the entry's sink; a refused send
  (full mailbox, sink restarting) is retried on a timer.
* :class:`~logcap.messages.SinkResult` (tell, from a sink): delivered -> done; rejected again ->
  done, logged and counted (the entry stays in the DLQ, its claim recorded); retry -> resent
  with exponential backoff and full jitter; after :data:`MAX_REPROCESS_ATTEMPTS` failures the
  claim is released, so a later reprocess may try again. For the answer to reach this actor,
  the sinks must list its handle among their ``shards``.
* :class:`~logcap.actors.shard.SinkStarted` (tell): a sink restarted; what it was sent and did
  not answer is sent again.
* ``_Maintain`` (timer, every :data:`MAINTAIN_INTERVAL_S`): retention by age and size (dropped
  lines counted by cause), outcomes of resends written to the ledger.

Start: open the store (problems found are logged as warnings; bad data never stops it),
schedule ``_Maintain`` and, :data:`RESUME_DELAY_S` later (once the supervisor has bound this
actor's name), resume the resends a crash interrupted (claimed, no outcome recorded). A resend
whose answer never comes (lost with a restart) is sent again after :data:`ANSWER_TIMEOUT_S`.
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

from logcap.actors.shard import SinkStarted
from logcap.dispatch.retry import retry_delay
from logcap.messages import Deliver, Entries, Outcome, SinkResult
from logcap.metrics import (
    DLQ_DROPPED_LINES,
    DLQ_ENTRIES,
    DLQ_LINES,
    DLQ_REPROCESSED,
    DLQ_SIZE,
)
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle
from logcap.runtime.mailbox import DeliveryRefused
from logcap.runtime.timers import Scheduler, TimerHandle
from logcap.state.dlq import DeadLetter, DeadLetterStore, DlqFilter, Dropped

__all__ = ["ANSWER_TIMEOUT_S", "MAINTAIN_INTERVAL_S", "MAX_IN_FLIGHT", "MAX_REPROCESS_ATTEMPTS",
           "MAX_UNWRITTEN", "RESUME_DELAY_S", "DeadLetterQueue", "DlqStats", "Reprocess"]

log = logging.getLogger(__name__)

MAINTAIN_INTERVAL_S = 60.0
MAX_IN_FLIGHT = 8
"""Entries being re-sent at once (the rest wait as ids: memory stays bounded)."""
MAX_REPROCESS_ATTEMPTS = 10
DEFAULT_RETRY_BASE_DELAY_S = 1.0
DEFAULT_RETRY_MAX_DELAY_S = 60.0
REFUSED_RETRY_S = 0.05
"""First delay before offering a resend again to a sink that refused it (doubles, capped)."""
MAX_UNWRITTEN = 64
WRITE_RETRY_S = 5.0
RESUME_DELAY_S = 1.0
"""Interrupted resends are resumed this long after start: by then the supervisor has bound
this actor's name, so the sinks' answers reach it."""
ANSWER_TIMEOUT_S = 300.0
"""A resend with no answer after this long (the answer was lost) counts as failed and is
sent again."""

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
    batch_id: int


@dataclass(frozen=True, slots=True)
class _WriteAgain:
    pass


@dataclass(frozen=True, slots=True)
class _Resume:
    pass


@dataclass(frozen=True, slots=True)
class _AnswerDue:
    batch_id: int
    send: int


@dataclass(slots=True)
class _Resend:
    entry_id: str
    sink: str
    parts: tuple[Entries, ...]
    lines: int
    attempt: int = 1
    failures: int = 0
    refusals: int = 0
    sends: int = 0
    waiting: bool = False


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
        self.sinks = sinks
        self.scheduler = scheduler
        self.clock = clock
        self.rng = rng or random.Random()
        self.retry_base_delay_s = retry_base_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self.problems: list[str] = []
        self._queue: deque[str] = deque()
        self._in_flight: dict[int, _Resend] = {}
        self._batch_ids = itertools.count(time.time_ns())  # unique across restarts
        self._unwritten: list[DeadLetter] = []
        self._maintain_timer: TimerHandle | None = None

    def handle_start(self) -> None:
        self.problems = self.store.open()
        for problem in self.problems:
            log.warning("%s: %s", self.name, problem)
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

    def handle(self, message: Any) -> Any:
        if isinstance(message, DeadLetter):
            self._store(message)
        elif isinstance(message, SinkResult):
            self._on_result(message)
        elif isinstance(message, _Retry):
            resend = self._in_flight.get(message.batch_id)
            if resend is not None and resend.waiting:
                self._send(message.batch_id)
        elif isinstance(message, _AnswerDue):
            resend = self._in_flight.get(message.batch_id)
            if resend is not None and not resend.waiting and resend.sends == message.send:
                self._failed(message.batch_id, resend, "no answer", None)
        elif isinstance(message, _Resume):
            busy = {*self._queue, *(r.entry_id for r in self._in_flight.values())}
            resumed = [i for i in self.store.unfinished() if i not in busy]
            if resumed:
                log.info("%s: resuming %d interrupted resends", self.name, len(resumed))
                self._queue.extend(resumed)
                self._pump()
        elif isinstance(message, SinkStarted):
            for batch_id, resend in list(self._in_flight.items()):
                if resend.sink == message.sink and not resend.waiting:
                    self._send(batch_id)
        elif isinstance(message, Reprocess):
            return self._reprocess(message)
        elif isinstance(message, DlqStats):
            return {**self.store.stats(), "problems": list(self.problems),
                    "reprocessing": {"queued": len(self._queue),
                                     "in_flight": len(self._in_flight)}}
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

    def _store(self, entry: DeadLetter, keep: bool = True) -> None:
        try:
            self.store.add(entry)
        except OSError as exc:
            if not keep or len(self._unwritten) >= MAX_UNWRITTEN:
                DLQ_DROPPED_LINES.labels("write_error").inc(entry.line_count)
                log.error("%s: DLQ entry %s (%d lines from %s) lost: cannot write: %s",
                          self.name, entry.id, entry.line_count, entry.sink, exc)
                return
            if not self._unwritten:
                self._later(WRITE_RETRY_S, _WriteAgain())
            self._unwritten.append(entry)
            log.warning("%s: cannot write DLQ entry %s (%s); retrying in %.0fs", self.name,
                        entry.id, exc, WRITE_RETRY_S)
            return
        DLQ_ENTRIES.labels(entry.sink, entry.reason).inc()
        DLQ_LINES.labels(entry.sink, entry.reason).inc(entry.line_count)
        if self.store.total_bytes > self.store.max_total_size:
            self._count_dropped(self.store.collect(self.clock()))
        DLQ_SIZE.set(self.store.total_bytes)

    def _maintain(self) -> None:
        self._count_dropped(self.store.collect(self.clock()))
        self.store.flush_ledger()
        DLQ_SIZE.set(self.store.total_bytes)

    def _count_dropped(self, dropped: dict[str, Dropped]) -> None:
        for cause, gone in dropped.items():
            DLQ_DROPPED_LINES.labels(cause).inc(gone.lines)
            log.warning("%s: retention (%s) dropped %d DLQ entries, %d lines, %d files",
                        self.name, cause, gone.entries, gone.lines, gone.files)

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
        while self._queue and len(self._in_flight) < MAX_IN_FLIGHT:
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
            batch_id = next(self._batch_ids)
            self._in_flight[batch_id] = _Resend(entry_id, entry.sink, entry.to_parts(),
                                                entry.line_count)
            self._send(batch_id)
        if not self._queue and not self._in_flight:
            self.store.flush_ledger()

    def _send(self, batch_id: int) -> None:
        resend = self._in_flight[batch_id]
        message = Deliver(batch_id, self.name, resend.parts, resend.lines, resend.attempt,
                          ordered=False)
        try:
            self.sinks[resend.sink].tell(message)
            resend.waiting = False
            resend.sends += 1
            self._later(ANSWER_TIMEOUT_S, _AnswerDue(batch_id, resend.sends))
        except DeliveryRefused:
            resend.refusals += 1
            resend.waiting = True
            delay = min(self.retry_max_delay_s,
                        REFUSED_RETRY_S * 2.0 ** min(resend.refusals - 1, 20))
            self._later(delay, _Retry(batch_id))

    def _on_result(self, result: SinkResult) -> None:
        resend = self._in_flight.get(result.batch_id)
        if resend is None or resend.sink != result.sink or resend.waiting:
            return  # not ours, or from an earlier send
        if result.outcome is Outcome.RETRY:
            self._failed(result.batch_id, resend, result.reason, result.retry_after_s)
            return
        if result.outcome is Outcome.REJECTED:
            log.error("%s: %s rejected DLQ entry %s again (%d lines): %s %s; it stays in the "
                      "DLQ", self.name, resend.sink, resend.entry_id, resend.lines,
                      result.reason, result.detail[:300])
        outcome = "rejected" if result.outcome is Outcome.REJECTED else "delivered"
        self.store.finish([resend.entry_id], outcome)
        self._done(result.batch_id, resend, outcome)

    def _failed(self, batch_id: int, resend: _Resend, reason: str,
                retry_after_s: float | None) -> None:
        resend.failures += 1
        if resend.failures < MAX_REPROCESS_ATTEMPTS:
            resend.attempt += 1
            resend.waiting = True
            delay = retry_delay(resend.failures, self.retry_base_delay_s,
                                self.retry_max_delay_s, self.rng, retry_after_s)
            self._later(delay, _Retry(batch_id))
            return
        log.warning("%s: resend of %s to %s failed %d times (%s); released for a later "
                    "reprocess", self.name, resend.entry_id, resend.sink, resend.failures, reason)
        self.store.release([resend.entry_id])
        self._done(batch_id, resend, "abandoned")

    def _done(self, batch_id: int, resend: _Resend, outcome: str) -> None:
        DLQ_REPROCESSED.labels(resend.sink, outcome).inc()
        del self._in_flight[batch_id]
        self._pump()
