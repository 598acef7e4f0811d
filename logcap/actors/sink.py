"""SinkActor: the thin shell around one :class:`~logcap.sinks.base.SinkBackend`.

Messages taken: :class:`~logcap.messages.Deliver` (data). Each is handed to the backend
synchronously (one request at a time per sink) and its verdict goes to the message's
``reply_to`` as a :class:`~logcap.messages.SinkResult` (control lane, always accepted; a sender
that is not running is skipped: it resends after its own restart). The sink knows no sender.
Metrics are updated once per request (``logcap_sink_lines_total`` counts the outcome of each;
a sender's resends are its own counter). On start the backend is made: senders watch this
sink's name and resend what a crashed predecessor had not answered when the name is re-bound.
On stop the backend is closed. A backend exception crashes the actor; the supervisor restarts
it.
A batch rejected for good goes to the DLQ (when enabled) before its verdict is sent; if the DLQ
refuses it (full, restarting) the verdict becomes *retry* with reason ``dlq_unavailable``.
With ``deduplication`` on, parts whose bytes this sink already delivered are not sent again
(:mod:`logcap.dispatch.dedup`).

**Health** (:class:`~logcap.runtime.health.CheckHealth`, ask): a run of *retry* verdicts from
the backend (refused connections, timeouts, 429, 5xx alike; ``held`` answers are not requests)
is a :class:`~logcap.runtime.health.FailureStreak`: the first failure is logged at once with
``target`` (the URL, credentials redacted) and the error, a summary every
``summary_interval_s`` while it lasts, one line when a request succeeds again; the sink is
``degraded`` once the run has lasted ``degraded_after_s``. A rejection (4xx) is an answer, not a
failure of the sink: its lines go to the DLQ, whose health says so.

**Order through a failure.** A sender (shard or disk buffer) keeps several batches in this
sink's mailbox. When batch N fails with *retry*, the batches after it are already queued; if the
backend recovered a moment later they would be delivered before N's resend, and a stream would
reach Loki out of order. So after a *retry* verdict for batch N from a sender, the sink answers
*retry* with reason :data:`~logcap.messages.HELD` (without trying them) to that sender's
batches with an id above N, until the sender sends a batch with an id of N or below (the resend
of N: senders resend oldest first), or tells :class:`~logcap.messages.ReleaseHold` (N was
settled another way, or the sender restarted). Batches sent with ``ordered=False`` (the DLQ's
resends) neither set nor wait for a hold.

**Preparing ahead.** With a :class:`~logcap.sinks.base.PreparingBackend` (Loki), when another
``Deliver`` waits in the mailbox behind the one being handled, the sink hands this batch's send
to a thread of its own (``<sink>-send``, made at the first such moment) and meanwhile prepares
the next (groups, encodes, compresses: the answer does not change it), then waits for the send
and answers as before. The next message taken is that ``Deliver`` (the data lane is first in,
first out), and it is sent prepared. Sends stay one at a time and in order; a batch answered
``held``, not taken next, or some of whose parts deduplication takes out when its turn comes
(what was delivered meanwhile) is prepared again from what is left or not sent (the prepared
form is dropped). So in a burst the encoding of batch N+1 overlaps Loki's handling of batch N;
at a steady pace nothing waits behind a batch and it is sent from the actor's thread, as before
(no extra thread hop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from prometheus_client.metrics import MetricWrapperBase

from logcap.actors.dead_letters import hand_over
from logcap.dispatch.dedup import DeliveredRanges
from logcap.messages import HELD, Deliver, Entries, Outcome, ReleaseHold, SinkResult
from logcap.metrics import DEDUP_DROPPED, SINK_BATCH_LINES, SINK_LATENCY, SINK_LINES, SINK_REQUESTS
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle
from logcap.runtime.health import FIRST, RECOVERED, STILL, CheckHealth, FailureStreak
from logcap.runtime.mailbox import DeliveryRefused
from logcap.sinks.base import PreparingBackend, SinkBackend, Verdict
from logcap.state.dlq import DeadLetter

__all__ = ["SinkActor"]

log = logging.getLogger(__name__)

DEFAULT_DEGRADED_AFTER_S = 30.0
FAILURE_SUMMARY_INTERVAL_S = 60.0
"""While a sink keeps failing, one summary line at most this often."""

_OUTCOME_METRIC = {Outcome.DELIVERED: "sent", Outcome.RETRY: "failed",
                   Outcome.REJECTED: "rejected"}


class SinkActor(LogcapActor):
    def __init__(
        self,
        sink_name: str,
        make_backend: Callable[[], SinkBackend],
        dlq: Handle | None = None,
        dedup: DeliveredRanges | None = None,
        target: str = "",
        degraded_after_s: float = DEFAULT_DEGRADED_AFTER_S,
        summary_interval_s: float = FAILURE_SUMMARY_INTERVAL_S,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.target = target or sink_name
        self.degraded_after_s = degraded_after_s
        self.streak = FailureStreak(summary_interval_s)
        self.dlq = dlq
        self.dedup = dedup
        self.sink_name = sink_name
        self.make_backend = make_backend
        self.backend: SinkBackend | None = None
        self._holds: dict[str, int] = {}  # sender -> id of its batch that failed here
        self._ahead: tuple[Deliver, object] | None = None  # the next Deliver, prepared
        self._sender: ThreadPoolExecutor | None = None  # sends while the next is prepared
        self._preparing = False  # the backend prepares and sends in two steps
        self._children: dict[tuple[MetricWrapperBase, str], Any] = {}

    def _series(self, metric: MetricWrapperBase, label: str = "") -> Any:
        """This sink's series of ``metric`` (labelled by the sink's name, then ``label`` when
        given), looked up once: ``labels()`` takes the metric's lock and checks the labels
        on each call, a few µs four times per request."""
        child = self._children.get((metric, label))
        if child is None:
            child = metric.labels(self.sink_name, label) if label \
                else metric.labels(self.sink_name)
            self._children[(metric, label)] = child
        return child

    def handle_start(self) -> None:
        self.backend = self.make_backend()
        self._preparing = isinstance(self.backend, PreparingBackend)

    def handle(self, message: Any) -> Any:
        if isinstance(message, ReleaseHold):
            self._holds.pop(message.sender, None)
            return None
        if isinstance(message, CheckHealth):
            return self.streak.health(time.time(), self.degraded_after_s,
                                      f"requests to {self.target}")
        if not isinstance(message, Deliver):
            return super().handle(message)
        assert self.backend is not None
        if message.ordered and self._held(message):
            self._answer(message, SinkResult(message.batch_id, self.sink_name, Outcome.RETRY,
                                             HELD, None, "an older batch is being retried"))
            return None
        parts = message.parts
        if self.dedup is not None:
            fresh = tuple(p for p in parts if not self.dedup.delivered(p))
            if len(fresh) < len(parts):
                skipped = sum(len(p.lines) for p in parts) - sum(len(p.lines) for p in fresh)
                DEDUP_DROPPED.labels(self.sink_name).inc(skipped)
                parts = fresh
        started = time.perf_counter()
        verdict = self._deliver(message, parts) if parts else Verdict(Outcome.DELIVERED)
        if parts:
            self._follow(verdict)
        if self.dedup is not None and verdict.outcome is Outcome.DELIVERED:
            for part in parts:
                self.dedup.add(part)
        if verdict.outcome is Outcome.REJECTED:
            log.error("%s rejected batch %d (%d lines) for good: %s %s", self.sink_name,
                      message.batch_id, message.lines, verdict.reason, verdict.detail[:300])
            if not self._dead_letter(message, verdict):
                verdict = Verdict(Outcome.RETRY, "dlq_unavailable", None,
                                  f"rejected ({verdict.reason}) and the DLQ cannot take it now")
        series = self._series
        series(SINK_LATENCY).observe(time.perf_counter() - started)
        series(SINK_REQUESTS, verdict.reason).inc()
        series(SINK_BATCH_LINES).observe(message.lines)
        series(SINK_LINES, _OUTCOME_METRIC[verdict.outcome]).inc(message.lines)
        if verdict.outcome is Outcome.RETRY and message.ordered:
            self._holds[message.sender] = message.batch_id
        self._answer(message, SinkResult(message.batch_id, self.sink_name, verdict.outcome,
                                         verdict.reason, verdict.retry_after_s, verdict.detail))
        return None

    def _deliver(self, message: Deliver, parts: tuple[Entries, ...]) -> Verdict:
        """The backend's verdict on ``parts`` (see "Preparing ahead" in the module docstring)."""
        backend = self.backend
        assert backend is not None
        ahead, self._ahead = self._ahead, None
        if not self._preparing:
            return backend.deliver(parts)
        backend = cast(PreparingBackend, backend)  # checked once, at the start
        prepared = ahead[1] if ahead is not None and ahead[0] is message \
            and parts is message.parts else backend.prepare(parts)  # (dedup took none out)
        following = self.inbox.peek_data()
        if not isinstance(following, Deliver) or not following.parts:
            return backend.send(prepared)  # nothing waits: send from this thread
        if self._sender is None:
            self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"{self.sink_name}-send")
        sending = self._sender.submit(backend.send, prepared)
        try:
            self._ahead = (following, backend.prepare(following.parts))
        finally:
            verdict = sending.result()  # waited for even when preparing the next failed
        return verdict

    def _follow(self, verdict: Verdict) -> None:
        """Log a run of failed requests: its start, a summary now and then, its end."""
        streak = self.streak
        if verdict.outcome is not Outcome.RETRY:
            if streak.since is None:  # no run of failures to end: the usual case
                return
            lasted, summary = streak.duration(time.time()), streak.summary()
            if streak.succeeded() == RECOVERED:
                log.info("%s: requests to %s succeed again after %.0fs of failures (%s)",
                         self.sink_name, self.target, lasted, summary)
            return
        said = streak.failed(time.time(), verdict.reason, verdict.detail[:300])
        if said == FIRST:
            log.warning("%s: request to %s failed: %s; retrying (lines wait, nothing is lost)",
                        self.sink_name, self.target, verdict.detail[:300])
        elif said == STILL:
            log.warning("%s: requests to %s still failing after %.0fs: %s; last: %s",
                        self.sink_name, self.target, streak.duration(time.time()),
                        streak.summary(), verdict.detail[:300])

    def _held(self, message: Deliver) -> bool:
        """Whether ``message`` waits behind its sender's failed batch (class docstring)."""
        failed = self._holds.get(message.sender)
        if failed is None:
            return False
        if message.batch_id <= failed:  # the resend of the failed batch (or a restarted sender)
            del self._holds[message.sender]
            return False
        return True

    def _answer(self, message: Deliver, result: SinkResult) -> None:
        try:
            message.reply_to.tell(result)
        except DeliveryRefused:
            log.debug("%s: sender %s gone; it resends after its restart", self.sink_name,
                      message.sender)

    def _dead_letter(self, message: Deliver, verdict: Verdict) -> bool:
        """Hand a rejected batch to the DLQ (not one the DLQ itself is re-sending: it keeps
        that entry). Stored (fsynced, :func:`hand_over` waits) before the verdict, so the source
never moves past lines that are nowhere.
        False when the DLQ is enabled but refused it (full or restarting): the batch is then
        answered *retry*, so it is rejected again later and nothing is lost."""
        if self.dlq is None or message.sender == self.dlq.name:
            return True
        now = time.time()
        entry = DeadLetter.from_parts(self.sink_name, verdict.reason, None, message.attempt,
                                      now, now, verdict.detail, message.parts)
        why = hand_over(self.dlq, entry)
        if why:
            log.warning("%s: the DLQ cannot take rejected batch %d now (%s); it will be "
                        "retried", self.sink_name, message.batch_id, why)
            return False
        return True

    def handle_stop(self) -> None:
        self._ahead = None
        if self._sender is not None:  # idle: every send is waited for inside a message
            self._sender.shutdown(wait=True)
            self._sender = None
        if self.backend is not None:
            self.backend.close()

    def handle_crash(self) -> None:
        """Close the backend (its connections or file) as at a stop."""
        self.handle_stop()
