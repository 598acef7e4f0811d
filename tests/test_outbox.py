"""The outbox (logcap.dispatch.outbox): a model-based test through any interleaving of sends,
answers, refusals, gate timers, timeouts and sink restarts, plus examples of the API."""

from __future__ import annotations

import random
from collections.abc import Callable

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from logcap.dispatch.outbox import PARTIAL_FAILURE_WINDOW_S, Failure, Gate, Outbox, Send
from logcap.dispatch.retry import REFUSED_RETRY_S

SINKS = ("a", "b", "c")
MAX_RETRIES = 2
TIMEOUT_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class OutboxMachine(RuleBasedStateMachine):
    """The model: per (batch, sink) a state (queued, sent, settled), the counted failures and
    the time of the last send; per sink whether its gate is closed; the batches released."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.outbox: Outbox[int] = Outbox(SINKS, max_retries=MAX_RETRIES, base_delay_s=0.5,
                                          max_delay_s=4.0, clock=self.clock,
                                          rng=random.Random(7))
        self.next_id = 1
        self.state: dict[tuple[int, str], str] = {}
        self.failures: dict[tuple[int, str], int] = {}
        self.sent_at: dict[tuple[int, str], float] = {}
        self.ever_sent: set[tuple[int, str]] = set()
        self.targets: dict[int, set[str]] = {}
        self.closed: set[str] = set()
        self.released: list[int] = []

    # -- helpers ---------------------------------------------------------------------------

    def _of(self, state: str, sink: str | None = None) -> list[tuple[int, str]]:
        return sorted(k for k, v in self.state.items()
                      if v == state and (sink is None or k[1] == sink))

    def _gate(self, sink: str, gate: Gate | None) -> None:
        assert (gate is not None) == (sink not in self.closed)
        if gate is not None:
            assert gate.sink == sink and gate.delay_s >= 0
            self.closed.add(sink)

    def _transmit(self, refuse: frozenset[str]) -> Callable[[Send[int]], bool]:
        def transmit(send: Send[int]) -> bool:
            key = (send.batch_id, send.sink)
            assert send.sink not in self.closed, "sent through a closed gate"
            assert self.state.get(key) == "queued", f"{key} sent while {self.state.get(key)}"
            older = [k for k in self._of("queued", send.sink) if k[0] < send.batch_id]
            assert not older, f"{key} sent before the older {older}"
            assert send.payload == send.batch_id
            assert send.attempt == 1 + self.failures[key]
            assert send.resend == (key in self.ever_sent)
            if send.sink in refuse:
                return False
            self.state[key] = "sent"
            self.sent_at[key] = self.clock.now
            self.ever_sent.add(key)
            return True
        return transmit

    def _settled(self, key: tuple[int, str], payload: int | None) -> None:
        batch_id = key[0]
        was = self.state[key]
        self.state[key] = "settled"
        done = all(self.state[(batch_id, s)] == "settled" for s in self.targets[batch_id])
        if was == "settled":
            assert payload is None
        elif done:
            assert payload == batch_id, "not released when every sink settled it"
            assert batch_id not in self.released, "released twice"
            self.released.append(batch_id)
        else:
            assert payload is None, "released before every sink settled it"

    # -- rules -----------------------------------------------------------------------------

    @rule(sinks=st.sets(st.sampled_from(SINKS), min_size=1))
    def add(self, sinks: set[str]) -> None:
        batch_id = self.next_id
        self.next_id += 1
        self.outbox.add(batch_id, batch_id, sorted(sinks))
        self.targets[batch_id] = set(sinks)
        for sink in sinks:
            self.state[(batch_id, sink)] = "queued"
            self.failures[(batch_id, sink)] = 0

    @rule(refuse=st.frozensets(st.sampled_from(SINKS)))
    def pump(self, refuse: frozenset[str]) -> None:
        was_closed = set(self.closed)
        gates = self.outbox.pump(self._transmit(refuse))
        for gate in gates:
            assert gate.sink in refuse and gate.sink not in was_closed
            assert gate.delay_s == REFUSED_RETRY_S
            self.closed.add(gate.sink)
        for sink in set(SINKS) - self.closed:
            assert not self._of("queued", sink), f"{sink}'s gate is open, yet batches wait"

    @precondition(lambda self: self._of("sent"))
    @rule(data=st.data(), outcome=st.sampled_from(["delivered", "rejected", "fail", "held"]),
          retry_after=st.none() | st.floats(0, 400))
    def answer(self, data: st.DataObject, outcome: str, retry_after: float | None) -> None:
        key = data.draw(st.sampled_from(self._of("sent")))
        batch_id, sink = key
        if outcome in ("delivered", "rejected"):
            self._settled(key, self.outbox.settle(batch_id, sink))
        elif outcome == "fail":
            self._fail(key, retry_after)
        else:
            gate = self.outbox.held(batch_id, sink)
            self._gate(sink, gate)
            if gate is not None:
                assert gate.delay_s == REFUSED_RETRY_S
            self.state[key] = "queued"

    def _fail(self, key: tuple[int, str], retry_after: float | None) -> None:
        failure = self.outbox.failed(*key, retry_after)
        assert isinstance(failure, Failure)
        self.failures[key] += 1
        assert failure.failures == self.failures[key]
        assert failure.exhausted == (self.failures[key] > MAX_RETRIES)
        assert 0 <= failure.delay_s <= max(4.0, min(retry_after or 0.0, 300.0))
        if retry_after:
            assert failure.delay_s >= min(retry_after, 300.0)
        self._gate(key[1], failure.gate)
        self.state[key] = "queued"

    @precondition(lambda self: self._of("queued") or self._of("settled"))
    @rule(data=st.data(), outcome=st.sampled_from(["fail", "held"]))
    def stale_answer_is_ignored(self, data: st.DataObject, outcome: str) -> None:
        key = data.draw(st.sampled_from(self._of("queued") + self._of("settled")))
        if outcome == "fail":
            assert self.outbox.failed(*key) is None
        else:
            assert self.outbox.held(*key) is None

    @precondition(lambda self: self._of("queued") or self._of("settled"))
    @rule(data=st.data())
    def late_settlement(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self._of("queued") + self._of("settled")))
        self._settled(key, self.outbox.settle(*key))

    @precondition(lambda self: self.closed)
    @rule(data=st.data())
    def gate_timer_fires(self, data: st.DataObject) -> None:
        sink = data.draw(st.sampled_from(sorted(self.closed)))
        self.outbox.open_gate(sink)
        self.closed.discard(sink)

    @rule(sink=st.sampled_from(SINKS))
    def sink_restarts(self, sink: str) -> None:
        self.outbox.restarted(sink)
        for key in self._of("sent", sink):
            self.state[key] = "queued"

    @rule(seconds=st.floats(0, 2 * TIMEOUT_S))
    def time_passes_and_unanswered_ones_time_out(self, seconds: float) -> None:
        self.clock.now += seconds
        due = [k for k in self._of("sent") if self.clock.now - self.sent_at[k] >= TIMEOUT_S]
        assert self.outbox.overdue(TIMEOUT_S) == due
        for key in due:
            self._fail(key, None)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_outbox_holds_exactly_the_unreleased_batches(self) -> None:
        assert len(self.outbox) == len(self.targets) - len(self.released)
        for sink in SINKS:
            assert self.outbox.unsettled(sink) == len(self._of("queued", sink)) + len(
                self._of("sent", sink))
            assert self.outbox.gate_closed(sink) == (sink in self.closed)

    def teardown(self) -> None:
        """Once failures stop, every batch is released, each once."""
        for _ in range(len(self.targets) + 2):
            for sink in list(self.closed):
                self.outbox.open_gate(sink)
                self.closed.discard(sink)
            assert self.outbox.pump(self._transmit(frozenset())) == []
            for key in self._of("sent"):
                self._settled(key, self.outbox.settle(*key))
        assert sorted(self.released) == sorted(self.targets)
        assert len(self.outbox) == 0


OutboxMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_the_outbox_keeps_order_counts_attempts_and_releases_each_batch_once = \
    OutboxMachine.TestCase


# -- examples ----------------------------------------------------------------------------------


def sender(log: list[tuple[int, str, int]],
           refuse: set[str] | None = None) -> Callable[[Send[str]], bool]:
    def transmit(send: Send[str]) -> bool:
        if refuse and send.sink in refuse:
            return False
        log.append((send.batch_id, send.sink, send.attempt))
        return True
    return transmit


def make(sinks: tuple[str, ...] = ("loki",), **kw: object) -> Outbox[str]:
    return Outbox(sinks, base_delay_s=1.0, max_delay_s=8.0, rng=random.Random(1),
                  **kw)


def test_a_batch_is_released_only_when_every_sink_settled_it() -> None:
    outbox = make(("file", "loki"))
    log: list[tuple[int, str, int]] = []
    outbox.add(1, "one")
    outbox.pump(sender(log))
    assert log == [(1, "file", 1), (1, "loki", 1)]
    assert outbox.settle(1, "file") is None
    assert outbox.settle(1, "loki") == "one"
    assert outbox.settle(1, "loki") is None and len(outbox) == 0


def test_a_failure_closes_only_that_sinks_gate_and_resends_oldest_first() -> None:
    outbox = make(("file", "loki"))
    log: list[tuple[int, str, int]] = []
    for batch_id in (1, 2):
        outbox.add(batch_id, str(batch_id))
    outbox.pump(sender(log))
    failure = outbox.failed(1, "loki", retry_after_s=3.0)
    assert failure is not None and failure.gate == Gate("loki", failure.delay_s)
    assert failure.delay_s >= 3.0 and failure.failures == 1 and not failure.exhausted
    assert outbox.held(2, "loki") is None  # the gate is closed already: no second timer
    outbox.add(3, "3")
    log.clear()
    outbox.pump(sender(log))
    assert log == [(3, "file", 1)]  # loki's batches wait behind batch 1
    outbox.open_gate("loki")
    outbox.pump(sender(log))
    assert log[1:] == [(1, "loki", 2), (2, "loki", 1), (3, "loki", 1)]


def test_a_refused_send_counts_no_attempt_and_keeps_the_later_batches_waiting() -> None:
    outbox = make()
    log: list[tuple[int, str, int]] = []
    outbox.add(1, "1")
    outbox.add(2, "2")
    assert outbox.pump(sender(log, refuse={"loki"})) == [Gate("loki", REFUSED_RETRY_S)]
    assert outbox.pump(sender(log)) == [] and log == []  # the gate is closed
    outbox.open_gate("loki")
    outbox.pump(sender(log))
    assert log == [(1, "loki", 1), (2, "loki", 1)]


def test_past_max_retries_a_failure_is_exhausted() -> None:
    outbox = make(max_retries=1)
    log: list[tuple[int, str, int]] = []
    outbox.add(1, "1")
    exhausted = []
    for _ in range(3):
        outbox.pump(sender(log))
        failure = outbox.failed(1, "loki")
        assert failure is not None
        exhausted.append(failure.exhausted)
        outbox.open_gate("loki")
    assert exhausted == [False, True, True]
    assert [attempt for _, _, attempt in log] == [1, 2, 3]


def test_a_restarted_sink_is_sent_again_what_it_had_not_answered() -> None:
    outbox = make()
    log: list[tuple[int, str, int]] = []
    for batch_id in (1, 2, 3):
        outbox.add(batch_id, str(batch_id))
    outbox.pump(sender(log))
    outbox.settle(2, "loki")
    outbox.restarted("loki")
    log.clear()
    outbox.pump(sender(log))
    assert log == [(1, "loki", 1), (3, "loki", 1)]


def test_deliveries_unanswered_past_a_timeout_are_listed() -> None:
    clock = Clock()
    outbox = make(clock=clock)
    outbox.add(1, "1")
    outbox.pump(sender([]))
    clock.now += 5
    outbox.add(2, "2")
    outbox.pump(sender([]))
    clock.now += 5
    assert outbox.overdue(10.0) == [(1, "loki")]
    assert outbox.overdue(5.0) == [(1, "loki"), (2, "loki")]


def _fail_once(outbox: Outbox[str], batch_id: int) -> float:
    """Send ``batch_id`` to loki (added if new) and fail it; the delay drawn."""
    if outbox.payload(batch_id) is None:
        outbox.add(batch_id, str(batch_id))
    outbox.open_gate("loki")
    outbox.pump(sender([]))
    failure = outbox.failed(batch_id, "loki")
    assert failure is not None
    return failure.delay_s


def _deliver(outbox: Outbox[str], batch_id: int) -> None:
    outbox.open_gate("loki")
    outbox.pump(sender([]))
    assert outbox.settle(batch_id, "loki") == str(batch_id)


def test_the_backoff_grows_only_in_an_outage_and_resets_on_success() -> None:
    clock = Clock()
    outbox = make(max_retries=100, clock=clock)
    for _ in range(5):
        _fail_once(outbox, 1)  # never a success: an outage
    assert outbox.level("loki") == 5
    assert outbox.attempt(1, "loki") == 6
    _deliver(outbox, 1)
    assert outbox.level("loki") == 0
    assert _fail_once(outbox, 2) <= 1.0  # base_delay_s: the sink was just up
    assert outbox.level("loki") == 1


def test_under_random_failures_a_batch_unlucky_many_times_still_retries_at_the_base_delay(
        ) -> None:
    clock = Clock()
    outbox = make(max_retries=100, clock=clock)
    outbox.add(1, "1")
    _deliver(outbox, 1)  # the sink served a request: it is up
    delays = []
    for _ in range(20):
        clock.now += (PARTIAL_FAILURE_WINDOW_S - 1) / 20
        delays.append(_fail_once(outbox, 2))
    assert max(delays) <= 1.0 and outbox.level("loki") == 1
    assert outbox.attempt(2, "loki") == 21  # the batch's attempts still count
    clock.now += 1  # no success for PARTIAL_FAILURE_WINDOW_S: an outage, the backoff grows
    _fail_once(outbox, 2)
    _fail_once(outbox, 2)
    assert outbox.level("loki") == 3


def test_a_sink_added_gets_the_batches_added_after_it_and_not_the_earlier_ones() -> None:
    outbox = make(("loki",))
    log: list[tuple[int, str, int]] = []
    outbox.add(1, "one")
    outbox.add_sink("audit")
    outbox.add(2, "two")
    outbox.pump(sender(log))
    assert log == [(1, "loki", 1), (2, "loki", 1), (2, "audit", 1)]
    assert outbox.settle(1, "loki") == "one"  # audit never had it
    assert outbox.settle(2, "loki") is None and outbox.settle(2, "audit") == "two"


def test_a_sink_removed_gives_up_what_it_held_and_releases_what_only_it_held() -> None:
    outbox = make(("loki", "audit"))
    log: list[tuple[int, str, int]] = []
    for batch_id in (1, 2, 3):
        outbox.add(batch_id, str(batch_id))
    outbox.pump(sender(log))
    outbox.settle(1, "loki")
    outbox.settle(3, "loki")
    failure = outbox.failed(2, "audit")
    assert failure is not None and outbox.gate_closed("audit")
    assert outbox.remove_sink("audit") == ["1", "3"]  # loki had settled them; 2 waits for loki
    assert not outbox.gate_closed("audit") and outbox.unsettled("loki") == 1
    assert outbox.settle(2, "audit") is None  # a late answer of the removed sink
    assert outbox.settle(2, "loki") == "2" and len(outbox) == 0
    log.clear()
    outbox.add(4, "4")
    outbox.pump(sender(log))
    assert log == [(4, "loki", 1)]
    assert outbox.remove_sink("audit") == []  # unknown: ignored
