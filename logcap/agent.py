"""The running agent: the supervision tree, its timers, and the admin backend over them.

:class:`Agent` starts the root supervisor (children from :mod:`logcap.tree`), watches it, and
answers the admin API by walking the tree with a deadline: every actor is asked with a timeout,
and a timeout surfaces as :class:`~logcap.api.errors.BackendTimeout` (HTTP 503).

If the root gives up (restart intensity exceeded), :meth:`Agent.wait` returns the reason and
the CLI exits non-zero with one clear log line.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from logcap import __version__
from logcap.actors.dead_letters import DlqStats, Reprocess
from logcap.actors.disk_buffer import BufferStats, Degraded
from logcap.actors.positions_keeper import Snapshot
from logcap.actors.shard import Flush, InFlight
from logcap.actors.source_shell import SourceStatus, StopReading
from logcap.api.errors import BackendTimeout
from logcap.api.health import SinceTracker, component_health, readiness
from logcap.api.recent_errors import RecentErrors
from logcap.api.status import counter_totals, summarize
from logcap.components import wiring as names
from logcap.components.registry import wire
from logcap.config import Config
from logcap.metrics import REGISTRY, InboxCollector
from logcap.pipeline.loading import load_routing
from logcap.pipeline.routing import Routing
from logcap.reloading import Reloader
from logcap.runtime.actor import ChildExited, ExitLink, Ping
from logcap.runtime.childspec import ChildInfo, Strategy, WhichChildren
from logcap.runtime.crash import CrashActor
from logcap.runtime.directory import Directory
from logcap.runtime.health import OK, CheckHealth
from logcap.runtime.mailbox import BoundedInbox, DeliveryRefused
from logcap.runtime.supervisor import Supervisor
from logcap.runtime.timers import TimerThread
from logcap.tree import ROOT, build_root_children, root_flags

__all__ = ["ADMIN_ASK_TIMEOUT_S", "Agent"]

log = logging.getLogger(__name__)

BUFFER = names.qualified("state", names.BUFFER)
DLQ = names.qualified("state", names.DLQ)
POSITIONS = names.qualified("state", names.POSITIONS)

ADMIN_ASK_TIMEOUT_S = 2.0
"""How long one admin request may spend asking actors, in total."""
START_TIMEOUT_S = 60.0
DRAIN_SHARE = 0.5
"""Part of the stop deadline spent waiting for in-flight lines to be delivered."""
DRAIN_MAX_S = 5.0
DRAIN_POLL_S = 0.02
WAIT_CHECK_S = 5.0
""":meth:`Agent.wait` looks up this often (the stop event and the root's exit wake it at
once; the timeout only bounds a missed wake-up)."""


class _RootWatcher:
    """Receives the root supervisor's exit report."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.report: ChildExited | None = None
        self.also_set: threading.Event | None = None  # the event Agent.wait sleeps on

    def tell(self, message: Any) -> None:
        if isinstance(message, ChildExited):
            self.report = message
            self.event.set()
            if self.also_set is not None:
                self.also_set.set()


class Agent:
    def __init__(self, config: Config, config_path: str = "",
                 routing: Routing | None = None) -> None:
        """``routing``: the pipelines (loaded from the config's processing files when not
        given; raises ConfigError if they are invalid)."""
        self.config = config
        self.config_path = config_path
        self.admin_token = config.server.admin_token
        self.chaos_enabled = config.server.chaos
        self.directory = Directory()
        if routing is None:
            routing = load_routing(config, config_file=config_path or "config")
        self.wiring = wire(config, self.directory, routing)
        self.reloader = Reloader(config, routing, self.wiring, config_path)
        self.timers = TimerThread()
        self.watcher = _RootWatcher()
        self.root: ActorRef[Any] | None = None
        self.started_at = time.time()
        self._collector = InboxCollector(self._inbox_snapshot)
        REGISTRY.register(self._collector)
        self.recent_errors = RecentErrors()
        logging.getLogger("logcap").addHandler(self.recent_errors)
        self._started = False  # /ready: set once start() has returned
        self._since = SinceTracker()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the tree; raises RuntimeError if the root could not start."""
        children = build_root_children(self.wiring, self)
        self.root = Supervisor.start(
            name=ROOT, flags=root_flags(self.config, Strategy.REST_FOR_ONE), children=children,
            directory=self.directory, scheduler=self.timers,
            link=ExitLink(self.watcher, ROOT, 1),
        )
        try:
            self.root.ask(Ping(), timeout=START_TIMEOUT_S)
        except (ActorDeadError, pykka.Timeout) as exc:
            raise RuntimeError(self.failure() or f"the supervision tree did not start: {exc}")\
                from exc
        self._started = True

    def failure(self) -> str:
        """Why the root gave up ("" while it runs)."""
        report = self.watcher.report
        return report.error if report is not None and report.crashed else ""

    def wait(self, stop: threading.Event) -> str:
        """Block until ``stop`` is set or the root exits; returns the root's failure, if any."""
        self.watcher.also_set = stop  # the root's exit ends the wait at once
        while not stop.is_set() and not self.watcher.event.is_set():
            stop.wait(WAIT_CHECK_S)
        return self.failure()

    def stop(self, deadline_s: float) -> bool:
        """Drain (see :meth:`drain`, at most ``DRAIN_SHARE`` of the deadline, capped at
        ``DRAIN_MAX_S``), then stop the tree in reverse order within what is left of
        ``deadline_s``; True if it stopped in time."""
        stopped = True
        if self.root is not None and self.root.is_alive():
            started = time.monotonic()
            self.drain(min(DRAIN_MAX_S, deadline_s * DRAIN_SHARE))
            left = max(0.1, deadline_s - (time.monotonic() - started))
            try:
                stopped = bool(self.root.stop(block=True, timeout=left))
            except pykka.Timeout:
                stopped = False
        self.timers.stop()
        REGISTRY.unregister(self._collector)
        logging.getLogger("logcap").removeHandler(self.recent_errors)
        return stopped

    def drain(self, budget_s: float) -> int:
        """Before a stop: sources stop reading, shards send their open batches, and we wait up
        to ``budget_s`` for every batch to be settled, so positions reach what was delivered
        and a restart re-sends nothing (re-read lines get new timestamps, which Loki would keep
        as duplicates). Returns the lines still held when the wait ended (re-read after the
        restart: at-least-once either way)."""
        deadline = time.monotonic() + budget_s
        for name in self.wiring.names("sources"):
            self._ask_quietly(name, StopReading(), deadline)
        held = sum(self._ask_quietly(name, Flush(), deadline) or 0
                   for name in self.wiring.names("dispatchers"))
        pause = threading.Event()
        while held and time.monotonic() < deadline:
            pause.wait(DRAIN_POLL_S)
            held = sum(self._ask_quietly(name, InFlight(), deadline) or 0
                       for name in self.wiring.names("dispatchers"))
        if held:
            log.warning("stopping with %d lines not yet delivered; they are read again after "
                        "the restart", held)
        else:
            log.info("drained: every line read was delivered")
        return held

    def _ask_quietly(self, name: str, message: Any, deadline: float) -> Any:
        """Ask ``name``; None if it is not running or does not answer before ``deadline``."""
        try:
            return self.directory.handle(name).ask(
                message, timeout=max(0.01, deadline - time.monotonic()))
        except (pykka.Timeout, DeliveryRefused):
            return None

    # -- admin backend ---------------------------------------------------------------------

    def _walk(self, deadline: float) -> list[dict[str, Any]]:
        """Every actor's row, asking the supervisors of one level of the tree at once (under
        load each ask waits for its actor's turn: the answer takes the slowest, not the sum)."""
        rows: list[dict[str, Any]] = []
        if self.root is None or not self.root.is_alive():
            raise BackendTimeout("the supervision tree is not running")
        level: list[ActorRef[Any]] = [self.root]
        while level:
            asked = []
            for sup in level:
                try:
                    asked.append((sup, sup.ask(WhichChildren(), block=False)))
                except ActorDeadError:
                    continue
            level = []
            for sup, future in asked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackendTimeout("the supervision tree did not answer in time")
                try:
                    infos: list[ChildInfo] = future.get(timeout=remaining)
                except pykka.Timeout as exc:
                    raise BackendTimeout(f"{sup} did not answer in time") from exc
                except ActorDeadError:
                    continue
                for info in infos:
                    rows.append(self._row(info))
                    if info.ref is not None and info.supervisor:
                        level.append(info.ref)
        rows.sort(key=lambda r: r["name"])
        return rows

    @staticmethod
    def _row(info: ChildInfo) -> dict[str, Any]:
        row: dict[str, Any] = {"name": info.name, "status": info.status,
                               "supervisor": info.supervisor, "restarts": info.restarts,
                               "crashes": info.crashes, "last_error": info.last_error}
        if info.ref is not None:
            inbox = info.ref.actor_inbox
            if isinstance(inbox, BoundedInbox):
                row["mailbox"] = {"data_depth": inbox.data_depth,
                                  "control_depth": inbox.control_depth,
                                  "capacity": inbox.capacity, "handled": inbox.taken,
                                  "full_events": inbox.full_events,
                                  "high_water": inbox.high_water}
        return row

    def _evaluate(self, deadline: float) -> tuple[list[dict[str, Any]], str,
                                                  dict[str, dict[str, Any]],
                                                  dict[str, dict[str, Any]], Any]:
        """Ask what health needs: the rows, each running sink's and the keeper's own report,
        the buffer's degradation, the sources' statuses, the DLQ's stats. Returns the rows,
        the overall state, the components (:func:`logcap.api.health.component_health`), the
        sources' statuses and the DLQ's stats (None when off or not running)."""
        rows = self._walk(deadline)
        running = {r["name"] for r in rows if r["status"] == "running"}
        asks: dict[tuple[str, str], Any] = {}  # (what, actor name) -> message: asked at once
        for name in [*self.wiring.names("sinks"), POSITIONS]:
            if name in running:
                asks[("report", name)] = CheckHealth()
        for name in self.wiring.names("sources"):
            if name in running:
                asks[("source", name)] = SourceStatus()
        if self.config.dispatcher.dlq_enabled and DLQ in running:
            asks[("dlq", DLQ)] = DlqStats()
        if self.config.disk_buffer.enabled and BUFFER in running:
            asks[("buffer", BUFFER)] = Degraded()
        answers = self._ask_all(asks, deadline)
        reports = {name: a for (what, name), a in answers.items() if what == "report"}
        answered = {name: a for (what, name), a in answers.items() if what == "source"}
        dlq = answers.get(("dlq", DLQ))
        degraded = str(answers.get(("buffer", BUFFER)) or "")
        state, components = component_health(
            now=time.time(), rows=rows, reports=reports, buffer=(BUFFER, degraded),
            sources=answered, dlq=(DLQ, dlq) if dlq is not None else None, tracker=self._since)
        return rows, state, components, answered, dlq

    def _ask_all(self, asks: dict[tuple[str, str], Any],
                 deadline: float) -> dict[tuple[str, str], Any]:
        """Ask every actor of ``asks`` (key: (what, actor name), value: the message) at once
        and wait for each answer until ``deadline``; a timeout or a refusal is a
        :class:`BackendTimeout` (HTTP 503), as one ask at a time."""
        futures = {}
        for key, message in asks.items():
            try:
                futures[key] = self.directory.handle(key[1]).ask_later(message)
            except DeliveryRefused as exc:
                raise BackendTimeout(f"{key[1]} did not answer in time") from exc
        answers = {}
        for key, future in futures.items():
            try:
                answers[key] = future.get(timeout=max(0.01, deadline - time.monotonic()))
            except (pykka.Timeout, ActorDeadError) as exc:
                raise BackendTimeout(f"{key[1]} did not answer in time") from exc
        return answers

    def health(self) -> tuple[str, dict[str, Any]]:
        """The overall state and every component's ``health``, ``reason`` and ``since``
        (:mod:`logcap.api.health`: a component not running is failing; a sink failing for
        ``server.sink_degraded_after``, positions that cannot be written, the buffer unable to
        take data, a source with unreadable paths or an include matching nothing, a growing
        DLQ are degraded). Sources also list their ``problems`` and the counts their status
        gives (files followed, open, ...)."""
        _, state, components, _, _ = self._evaluate(time.monotonic() + ADMIN_ASK_TIMEOUT_S)
        return state, components

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready once :meth:`start` has returned and every component runs."""
        if not self._started:
            return readiness(False, [])
        return readiness(True, self._walk(time.monotonic() + ADMIN_ASK_TIMEOUT_S))

    def stats(self) -> dict[str, Any]:
        """Per actor rows; with the disk buffer, its counters and each sink's pending batches
        (stored and not yet acknowledged: the persisted in-flight batches)."""
        deadline = time.monotonic() + ADMIN_ASK_TIMEOUT_S
        rows = self._walk(deadline)
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started_at, 3),
                               "actors": rows}
        sources = {}
        for name in self.wiring.names("sources"):
            status = self._ask_quietly(name, SourceStatus(), deadline)
            if status is not None and "stats" in status:
                sources[status["source"]] = status["stats"]
        if sources:
            out["sources"] = sources
        if self.config.disk_buffer.enabled:
            try:
                out["disk_buffer"] = self.directory.handle(BUFFER).ask(
                    BufferStats(), timeout=max(0.01, deadline - time.monotonic()))
            except (pykka.Timeout, DeliveryRefused) as exc:
                raise BackendTimeout(f"{BUFFER} did not answer in time") from exc
        return out

    def _ask_in_time(self, name: str, message: Any, deadline: float) -> Any:
        """Ask ``name`` within what is left until ``deadline``; a timeout or a refusal is a
        :class:`BackendTimeout` (HTTP 503)."""
        try:
            return self.directory.handle(name).ask(
                message, timeout=max(0.01, deadline - time.monotonic()))
        except (pykka.Timeout, DeliveryRefused) as exc:
            raise BackendTimeout(f"{name} did not answer in time") from exc

    def status(self) -> dict[str, Any]:
        """The status page's summary (:func:`logcap.api.status.summarize`); ``healthy`` is
        the overall health being ``ok``."""
        deadline = time.monotonic() + ADMIN_ASK_TIMEOUT_S
        rows, state, components, answered, dlq_stats = self._evaluate(deadline)
        running = {r["name"] for r in rows if r["status"] == "running"}
        buffer = dlq = None  # disabled; {} while enabled and not running
        if self.config.disk_buffer.enabled:
            buffer = self._ask_in_time(BUFFER, BufferStats(), deadline) \
                if BUFFER in running else {}
        if self.config.dispatcher.dlq_enabled:
            dlq = dlq_stats if dlq_stats is not None else {}
        sources = {name: answered.get(name, {}) for name in self.wiring.names("sources")}
        now = time.time()
        return summarize(
            now=now, uptime_s=now - self.started_at, version=__version__,
            healthy=state == OK, health=state,
            troubles=[{"name": name, "health": c["health"], "reason": c["reason"],
                       "since": c["since"]} for name, c in components.items()
                      if c["health"] != OK], rows=rows, sources=sources,
            sinks={sink: names.qualified("sinks", sink) for sink in self.wiring.sink_names()},
            totals=counter_totals(REGISTRY.collect()), buffer=buffer,
            buffer_capacity=self.config.disk_buffer.max_total_size, dlq=dlq,
            errors=self.recent_errors.recent())

    def effective_config(self) -> dict[str, Any]:
        """The config in force (secrets redacted), its generation (1 at start, +1 per applied
        reload) and the last reload's answer."""
        last = self.reloader.last
        return {"path": self.config_path, "config": self.config.to_dict(redact=True),
                "generation": self.reloader.generation,
                "last_reload": last.to_dict() if last is not None else None}

    def reload_config(self, trigger: str) -> tuple[int, dict[str, Any]]:
        """Reload the config file (:mod:`logcap.reloading`); the HTTP status (200 applied,
        400 invalid, 500 failed or not running) and the answer."""
        if self.root is None or not self.root.is_alive():
            log.error("config reload (%s) refused: the supervision tree is not running",
                      trigger)
            return 503, {"result": "failed", "errors": ["the supervision tree is not running"],
                         "generation": self.reloader.generation}
        outcome = self.reloader.reload(trigger)
        self.config, self.wiring = self.reloader.config, self.reloader.wiring
        return outcome.http_status, outcome.to_dict()

    def positions(self) -> dict[str, Any]:
        if not self.config.positions.enabled:
            return {"enabled": False, "files": [], "containers": []}
        try:
            snap = self.directory.handle(POSITIONS).ask(Snapshot(), timeout=ADMIN_ASK_TIMEOUT_S)
        except (pykka.Timeout, DeliveryRefused) as exc:
            raise BackendTimeout(f"positions keeper: {exc}") from exc
        return dict(snap)

    def _ask_dlq(self, message: Any) -> Any:
        if not self.config.dispatcher.dlq_enabled:
            raise BackendTimeout("the DLQ is disabled (dispatcher.dlq_enabled: false)")
        try:
            return self.directory.handle(DLQ).ask(message, timeout=ADMIN_ASK_TIMEOUT_S)
        except (pykka.Timeout, DeliveryRefused) as exc:
            raise BackendTimeout(f"{DLQ} did not answer in time") from exc

    def dlq_stats(self) -> dict[str, Any]:
        return dict(self._ask_dlq(DlqStats()))

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]:
        """Queue matching entries for re-sending; idempotent (the DLQ's claim ledger)."""
        return dict(self._ask_dlq(Reprocess.from_filters(filters)))

    def actor_statuses(self) -> dict[str, str]:
        """Every actor of the tree but the root, by name: its status (``POST /chaos/crash``)."""
        rows = self._walk(time.monotonic() + ADMIN_ASK_TIMEOUT_S)
        return {r["name"]: r["status"] for r in rows}

    def crash_actor(self, name: str, reason: str) -> bool:
        """Tell ``name`` :class:`CrashActor` (``server.chaos``); False if it is not running."""
        try:
            self.directory.handle(name).tell(CrashActor(reason))
        except DeliveryRefused:
            return False
        return True

    def _inbox_snapshot(self) -> list[tuple[str, int, int, int, int]]:
        out = []
        for name in self.directory.names():
            ref = self.directory.lookup(name)
            inbox = ref.actor_inbox if ref is not None else None
            if isinstance(inbox, BoundedInbox):
                out.append((name, inbox.data_depth, inbox.full_events, inbox.taken,
                            inbox.capacity))
        return out
