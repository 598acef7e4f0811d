"""An OTP-style supervisor for pykka actors.

Vocabulary and semantics follow Erlang/OTP's ``supervisor``:

* :class:`ChildSpec` ``(id, start, restart, shutdown_s, ...)`` describes a child. ``start`` is
  called with a :class:`StartContext` and returns the child's ``ActorRef``; the child must be a
  :class:`~logcap.runtime.actor.LogcapActor` constructed with ``link=ctx.link``.
* :class:`Restart`: ``PERMANENT`` children are always restarted, ``TRANSIENT`` ones only after a
  crash, ``TEMPORARY`` ones never.
* :class:`Strategy`: ``ONE_FOR_ONE`` restarts the crashed child; ``ONE_FOR_ALL`` stops the others
  (in reverse start order) and restarts all; ``REST_FOR_ONE`` stops and restarts the crashed child
  and those started after it.
* Restart intensity (:class:`SupFlags` ``intensity``/``period_s``): one restart more than
  ``intensity`` within ``period_s`` seconds makes the supervisor stop its children and exit as
  crashed, so its own supervisor (or the root watcher) deals with it.

Beyond OTP: a restart waits an exponential backoff with jitter
(:class:`~logcap.runtime.restarts.Backoff`), scheduled as a timer message, never by sleeping;
a child that does not answer a timed :class:`~logcap.runtime.actor.Ping` within
``ping_timeout_s`` is declared hung, abandoned (its thread is told to stop and its name
re-bound) and restarted like a crash.

Start is ordered and synchronous: each child is started and pinged before the next one starts,
so a child sees its left siblings ready. Stop is in reverse order, each child given its
``shutdown_s``; a child that does not stop in time is abandoned.

Messages taken: :class:`ChildExited` (from children), :class:`WhichChildren`,
:class:`CountChildren`, :class:`StartChild`, :class:`TerminateChild`, :class:`ReplaceChild`
(stop one child, start it again from a new spec: a config reload), :class:`UpdateChildSpec`
(the spec of its next restart) (asks), and private timer messages. A crash of the
supervisor's own code is reported to its parent like any child's.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from logcap.metrics import ACTOR_CRASHES, ACTOR_RESTARTS
from logcap.runtime.actor import (
    ChildExited,
    ExitLink,
    LogcapActor,
    Ping,
    abandon,
    describe_error,
)
from logcap.runtime.childspec import (
    DEFAULT_PING_INTERVAL_S,
    DEFAULT_PING_TIMEOUT_S,
    DEFAULT_SHUTDOWN_S,
    DEFAULT_START_TIMEOUT_S,
    ChildInfo,
    ChildSpec,
    ChildStatus,
    CountChildren,
    ReplaceChild,
    Restart,
    StartChild,
    StartContext,
    Strategy,
    SupFlags,
    TerminateChild,
    UpdateChildSpec,
    WhichChildren,
)
from logcap.runtime.directory import Directory
from logcap.runtime.restarts import Backoff, RestartIntensity
from logcap.runtime.timers import Clock, MonotonicClock, Scheduler, TimerHandle

__all__ = [
    "DEFAULT_PING_INTERVAL_S",
    "DEFAULT_PING_TIMEOUT_S",
    "DEFAULT_SHUTDOWN_S",
    "DEFAULT_START_TIMEOUT_S",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "CountChildren",
    "ReplaceChild",
    "Restart",
    "StartChild",
    "StartContext",
    "Strategy",
    "SupFlags",
    "Supervisor",
    "TerminateChild",
    "UpdateChildSpec",
    "WhichChildren",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class _Tick:
    """Timer: time to ping children."""


@dataclass(frozen=True, slots=True)
class _RestartDue:
    """Timer: the backoff of a restart group is over."""

    token: int


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    backoff: Backoff
    status: ChildStatus = ChildStatus.STOPPED
    ref: ActorRef[Any] | None = None
    incarnation: int = 0
    restarts: int = 0
    crashes: int = 0
    last_error: str = ""
    ping: pykka.Future[Any] | None = None
    ping_sent_at: float = 0.0


class Supervisor(LogcapActor):
    """Starts, watches and restarts its children per :class:`SupFlags` (see module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        flags: SupFlags,
        children: list[ChildSpec],
        directory: Directory,
        scheduler: Scheduler,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        link: ExitLink | None = None,
    ) -> None:
        super().__init__(link=link, name=name, directory=directory)
        self.flags = flags
        self.names: Directory = directory
        self.scheduler = scheduler
        self.clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        self.intensity = RestartIntensity(flags.intensity, flags.period_s)
        self.children: list[_Child] = []
        for spec in children:
            self._add(spec)
        self._timers: dict[int, tuple[TimerHandle, frozenset[str]]] = {}
        self._next_token = 0
        self._tick_timer: TimerHandle | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    def handle_start(self) -> None:
        for i in range(len(self.children)):
            child = self.children[i]
            if child.status is not ChildStatus.STOPPED or self._stopping:
                continue
            if not self._start_child(child):
                self._after_exit(i)
                if self.flags.strategy is not Strategy.ONE_FOR_ONE:
                    break
        self._schedule_tick()

    def handle_stop(self) -> None:
        self._stopping = True
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        self._stop_children(range(len(self.children)))

    def handle_crash(self) -> None:
        """A crashed supervisor takes its children down (in OTP they are linked to it), in
        reverse order as at a stop: its restarted successor starts them afresh, and no orphan
        keeps reading, holding a lock or answering to a name."""
        self.handle_stop()

    def handle(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._on_child_exited(message)
        elif isinstance(message, _RestartDue):
            self._on_restart_due(message.token)
        elif isinstance(message, _Tick):
            self._on_tick()
        elif isinstance(message, WhichChildren):
            return [self._info(c) for c in self.children]
        elif isinstance(message, CountChildren):
            active = sum(1 for c in self.children if c.status is ChildStatus.RUNNING)
            sups = sum(1 for c in self.children if c.spec.supervisor)
            return {
                "specs": len(self.children),
                "active": active,
                "supervisors": sups,
                "workers": len(self.children) - sups,
            }
        elif isinstance(message, StartChild):
            if any(c.spec.id == message.spec.id for c in self.children):
                raise ValueError(f"child {message.spec.id!r} already exists in {self.name}")
            child = self._add(message.spec)
            if self._start_child(child):
                return True
            self._after_exit(len(self.children) - 1)
            return False
        elif isinstance(message, TerminateChild):
            for i, child in enumerate(self.children):
                if child.spec.id == message.child_id:
                    self._stop_children([i])
                    del self.children[i]
                    return True
            return False
        elif isinstance(message, ReplaceChild):
            return self._replace(message.spec)
        elif isinstance(message, UpdateChildSpec):
            for child in self.children:
                if child.spec.id == message.spec.id:
                    child.spec = message.spec
                    return True
            return False
        else:
            return super().handle(message)
        return None

    # -- internals -------------------------------------------------------------------------

    def _add(self, spec: ChildSpec) -> _Child:
        flags = self.flags
        backoff = Backoff(flags.backoff_min_s, flags.backoff_max_s, flags.backoff_reset_s,
                          rng=self.rng)
        child = _Child(spec=spec, backoff=backoff)
        self.children.append(child)
        return child

    def _replace(self, spec: ChildSpec) -> bool | None:
        for i, child in enumerate(self.children):
            if child.spec.id != spec.id:
                continue
            # a pending restart timer finds it running and skips it
            self._stop_children([i])
            child.spec = spec
            child.status = ChildStatus.STOPPED
            if self._start_child(child):
                return True
            self._after_exit(i)
            return False
        return None

    def _qualified(self, child: _Child) -> str:
        return f"{self.name}/{child.spec.id}"

    def _info(self, child: _Child) -> ChildInfo:
        return ChildInfo(
            id=child.spec.id,
            name=self._qualified(child),
            status=child.status.value,
            supervisor=child.spec.supervisor,
            restarts=child.restarts,
            crashes=child.crashes,
            last_error=child.last_error,
            ref=child.ref if child.status is ChildStatus.RUNNING else None,
        )

    def _start_child(self, child: _Child) -> bool:
        """Start ``child`` and wait for its first pong; False (and unbound) if it failed."""
        child.incarnation += 1
        name = self._qualified(child)
        link = ExitLink(self.actor_ref, child.spec.id, child.incarnation)
        ctx = StartContext(link=link, name=name, directory=self.names,
                           scheduler=self.scheduler)
        child.ping = None
        ref: ActorRef[Any] | None = None
        try:
            ref = child.spec.start(ctx)
            # bound before its start completes: what the child sends while starting is
            # answered at its name, and an answer to a name not bound yet is lost (a disk
            # buffer feeding its sinks from its start waited for ever for those answers)
            self.names.bind(name, ref)
            ref.ask(Ping(), timeout=self.flags.start_timeout_s)
        except Exception as exc:
            if isinstance(exc, ActorDeadError):
                child.last_error = "crashed while starting"  # its ChildExited says why
            elif isinstance(exc, pykka.Timeout):
                child.last_error = f"start timed out after {self.flags.start_timeout_s}s"
            else:
                child.last_error = describe_error(exc)
            if ref is not None:
                self.names.unbind(name, ref)
                _abandon(ref)
            child.crashes += 1
            ACTOR_CRASHES.labels(name, "start").inc()
            child.ref = None
            child.status = ChildStatus.RESTARTING
            log.error("%s: %s failed to start: %s", self.name, name, child.last_error)
            return False
        child.ref = ref
        child.status = ChildStatus.RUNNING
        child.backoff.restarted(self.clock.monotonic())
        return True

    def _stop_children(self, indices: Any) -> None:
        """Stop the given children in reverse order, each within its shutdown timeout."""
        for i in sorted(indices, reverse=True):
            child = self.children[i]
            ref = child.ref
            child.ref = None
            child.ping = None
            if child.status is ChildStatus.RUNNING:
                child.status = ChildStatus.STOPPED
            if ref is None:
                continue
            self.names.unbind(self._qualified(child), ref)
            try:
                ref.stop(block=True, timeout=child.spec.shutdown_s)
            except pykka.Timeout:
                log.error("%s: %s did not stop within %.1fs; abandoned", self.name,
                          self._qualified(child), child.spec.shutdown_s)
                _abandon(ref)
            except ActorDeadError:
                pass

    def _on_child_exited(self, msg: ChildExited) -> None:
        for i, child in enumerate(self.children):
            if child.spec.id != msg.child_id:
                continue
            if msg.incarnation != child.incarnation:
                return  # a report from an incarnation already replaced
            if child.status is not ChildStatus.RUNNING:
                if msg.crashed and msg.error:
                    child.last_error = msg.error  # why a start failed, or a late crash
                return  # an exit we caused, or a start failure already handled
            if child.ref is not None:
                self.names.unbind(self._qualified(child), child.ref)
            child.ref = None
            child.ping = None
            if msg.crashed:
                child.crashes += 1
                ACTOR_CRASHES.labels(self._qualified(child), "exception").inc()
                child.last_error = msg.error or "crashed"
                log.warning("%s: %s crashed: %s", self.name, self._qualified(child),
                            child.last_error)
            restart = child.spec.restart
            if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not msg.crashed):
                child.status = ChildStatus.STOPPED
                return
            child.status = ChildStatus.RESTARTING
            self._after_exit(i)
            return

    def _group(self, i: int) -> list[int]:
        strategy = self.flags.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return [i]
        if strategy is Strategy.ONE_FOR_ALL:
            return list(range(len(self.children)))
        return list(range(i, len(self.children)))

    def _after_exit(self, i: int) -> None:
        """Child ``i`` is down (status RESTARTING): apply the strategy, or give up."""
        if self._stopping:
            return
        now = self.clock.monotonic()
        if not self.intensity.record(now):
            self._escalate(self.children[i])
            return
        group = self._group(i)
        others = [j for j in group if j != i and self.children[j].status is ChildStatus.RUNNING]
        self._stop_children(others)
        for j in others:
            self.children[j].status = ChildStatus.RESTARTING
        delay = self.children[i].backoff.next_delay(now)
        self._next_token += 1
        token = self._next_token
        timer = self.scheduler.call_later(delay, self.actor_ref, _RestartDue(token))
        self._timers[token] = (timer, frozenset(self.children[j].spec.id for j in group))
        log.info("%s: restarting %s in %.3fs", self.name,
                 ", ".join(self.children[j].spec.id for j in group), delay)

    def _on_restart_due(self, token: int) -> None:
        entry = self._timers.pop(token, None)
        if self._stopping or entry is None:
            return
        group = entry[1]
        for i in range(len(self.children)):
            child = self.children[i]
            if child.status is not ChildStatus.RESTARTING or child.spec.id not in group:
                continue
            child.restarts += 1
            ACTOR_RESTARTS.labels(self._qualified(child)).inc()
            if not self._start_child(child):
                self._after_exit(i)
                if self.flags.strategy is not Strategy.ONE_FOR_ONE:
                    return

    def _escalate(self, culprit: _Child) -> None:
        reason = (f"{culprit.spec.id} exceeded restart intensity "
                  f"({self.flags.intensity} in {self.flags.period_s}s): {culprit.last_error}")
        log.error("%s: giving up: %s", self.name, reason)
        self._stopping = True
        self._stop_children(range(len(self.children)))
        for child in self.children:
            child.status = ChildStatus.FAILED
        self.report_exit(True, reason)
        self.stop()

    def _schedule_tick(self) -> None:
        if self.flags.ping_interval_s > 0 and not self._stopping:
            self._tick_timer = self.scheduler.call_later(
                self.flags.ping_interval_s, self.actor_ref, _Tick()
            )

    def _on_tick(self) -> None:
        now = self.clock.monotonic()
        for i, child in enumerate(self.children):
            if child.status is not ChildStatus.RUNNING or child.ref is None:
                continue
            timeout = child.spec.ping_timeout_s
            if timeout is None:
                timeout = self.flags.ping_timeout_s
            if timeout <= 0:
                continue
            if child.ping is not None:
                try:
                    child.ping.get(timeout=0)
                    child.ping = None
                except pykka.Timeout:
                    if now - child.ping_sent_at >= timeout:
                        self._on_hung(i, child, timeout)
                    continue
                except ActorDeadError:
                    child.ping = None
                    continue  # its ChildExited is on the way
            try:
                child.ping = child.ref.ask(Ping(), block=False)
                child.ping_sent_at = now
            except ActorDeadError:
                child.ping = None
        self._schedule_tick()

    def _on_hung(self, i: int, child: _Child, timeout: float) -> None:
        child.last_error = f"hung: no answer to ping within {timeout:.1f}s"
        child.crashes += 1
        ACTOR_CRASHES.labels(self._qualified(child), "hang").inc()
        log.error("%s: %s %s; restarting", self.name, self._qualified(child), child.last_error)
        if child.ref is not None:
            self.names.unbind(self._qualified(child), child.ref)
            _abandon(child.ref)
        child.ref = None
        child.ping = None
        child.status = ChildStatus.RESTARTING
        self._after_exit(i)


def _abandon(ref: ActorRef[Any]) -> None:
    """Give up on an actor that will not stop (:func:`~logcap.runtime.actor.abandon`)."""
    abandon(ref)
