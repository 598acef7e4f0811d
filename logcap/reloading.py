"""Config reload (``SIGHUP``, ``POST /config/reload``): :class:`Reloader`.

A reload reads the config from the path the agent was started with, and its pipelines and
routing files, with the code ``check-config`` runs (:func:`~logcap.pipeline.loading.
load_checked`). An invalid one is refused with those errors and changes nothing. A valid one
is compared with the running config (:func:`~logcap.components.diff.diff_configs`, which also
names what needs a restart and is not applied), then applied in this order:

1. every file source removed or changed is told :class:`StopReading` and the shards are told
   :class:`Flush` until the source has nothing unacknowledged (:class:`Unsettled`: no entry
   waiting for a shard, no byte read and not acknowledged), at most ``drain_s``; so its lines
   are delivered and its positions committed before it stops;
2. each changed sink is restarted from its new spec (:class:`ReplaceChild`); its senders (the
   shards, or the disk buffer and the DLQ) watch its name and resend to the new incarnation
   what the old one had not answered, with the original timestamps. Added sinks are started;
   then the senders' specs are updated and each sender is told :class:`SinksChanged` (an added
   sink gets what is dispatched from then on: with the disk buffer, the records stored after;
   a removed one is sent nothing more and what it had not settled is given up for it, its
   batches released to the sources when every other sink has them); then removed sinks are
   stopped (:class:`TerminateChild`);
3. with the pipelines or the routing changed, the shards' specs are updated (their next
   restart compiles the new pipelines) and each shard is told :class:`ReplaceRouting`;
4. removed sources are stopped and dropped (:class:`TerminateChild`), changed ones restarted
   from their new spec (they resume from the committed positions), added ones started
   (:class:`StartChild`).

If a source's drain does not finish in time (a sink down), it is stopped anyway and what it
had not had acknowledged is read again by its successor (at-least-once: those lines may be
kept twice by Loki); the answer and the log name such sources. A step that fails (a child that
does not start) makes the reload ``failed``: the answer says which step; what was done before
it stays done, and the running config is the new one for what was applied (generation +1).

Reloads are serialised by a lock; each answers an :class:`ReloadOutcome`, counted in
``logcap_config_reloads_total{result}``, and logged in one line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka

from logcap.actors.shard import Flush, ReplaceRouting
from logcap.actors.source_shell import StopReading, Unsettled
from logcap.components import wiring as names
from logcap.components.diff import ConfigDiff, diff_configs
from logcap.components.registry import child_spec, wire
from logcap.components.wiring import Wiring
from logcap.config import Config, ConfigError
from logcap.messages import SinksChanged
from logcap.metrics import CONFIG_GENERATION, CONFIG_RELOADS
from logcap.pipeline.loading import load_checked
from logcap.pipeline.routing import Routing
from logcap.runtime.childspec import ReplaceChild, StartChild, TerminateChild, UpdateChildSpec
from logcap.runtime.directory import Directory
from logcap.runtime.mailbox import ActorUnavailable, DeliveryRefused

__all__ = ["DEFAULT_RELOAD_DRAIN_S", "ReloadOutcome", "Reloader"]

log = logging.getLogger(__name__)

DEFAULT_RELOAD_DRAIN_S = 10.0
"""How long a removed or changed source may take to have its read lines acknowledged."""
CHILD_ASK_TIMEOUT_S = 60.0
"""How long a group supervisor may take to stop and start one child."""
ASK_TIMEOUT_S = 5.0
DRAIN_POLL_S = 0.05
FLUSH_EVERY_S = 0.2


@dataclass
class ReloadOutcome:
    """The answer to one reload: ``result`` is ``applied``, ``invalid`` or ``failed``."""

    result: str
    trigger: str
    generation: int
    errors: list[str] = field(default_factory=list)
    diff: ConfigDiff | None = None
    undrained: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def http_status(self) -> int:
        return {"applied": 200, "invalid": 400}.get(self.result, 500)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result, "trigger": self.trigger,
                               "generation": self.generation, "errors": self.errors,
                               "duration_s": round(self.duration_s, 3)}
        if self.diff is not None:
            out.update(self.diff.to_dict())
            out["undrained_sources"] = self.undrained
        return out

    def summary(self) -> str:
        if self.result == "invalid":
            return "refused, the running config stays: " + "; ".join(self.errors)
        text = self.diff.summary() if self.diff is not None else ""
        if self.undrained:
            text += f"; not drained in time (lines may be read twice): {', '.join(self.undrained)}"
        if self.errors:
            text += "; error: " + "; ".join(self.errors)
        return text


class Reloader:
    """Holds the config in force (``config``, ``routing``, ``wiring``, ``generation``) and
    applies reloads to the running tree in ``directory`` (module docstring)."""

    def __init__(self, config: Config, routing: Routing | None, wiring: Wiring,
                 config_path: str, *, env: Mapping[str, str] | None = None,
                 drain_s: float = DEFAULT_RELOAD_DRAIN_S) -> None:
        self.config = config
        self.routing = routing
        self.wiring = wiring
        self.config_path = config_path
        self.env = env
        self.drain_s = drain_s
        self.generation = 1
        self.last: ReloadOutcome | None = None
        self._lock = threading.Lock()
        CONFIG_GENERATION.set(self.generation)

    @property
    def directory(self) -> Directory:
        return self.wiring.directory

    def reload(self, trigger: str) -> ReloadOutcome:
        """Read, validate and apply the config at ``config_path`` (one reload at a time)."""
        with self._lock:
            started = time.monotonic()
            outcome = self._reload(trigger)
            outcome.duration_s = time.monotonic() - started
            self.last = outcome
        CONFIG_RELOADS.labels(outcome.result).inc()
        level = logging.INFO if outcome.result == "applied" else logging.ERROR
        log.log(level, "config reload (%s) %s, generation %d: %s", trigger, outcome.result,
                outcome.generation, outcome.summary())
        return outcome

    def _reload(self, trigger: str) -> ReloadOutcome:
        if not self.config_path:
            return ReloadOutcome("failed", trigger, self.generation,
                                 ["the agent was started without a config file"])
        try:
            config, routing = load_checked(self.config_path,
                                           os.environ if self.env is None else self.env)
        except ConfigError as exc:
            return ReloadOutcome("invalid", trigger, self.generation, str(exc).splitlines())
        diff = diff_configs(self.config, self.routing, config, routing)
        wired = wire(diff.effective, self.directory, routing)
        outcome = ReloadOutcome("applied", trigger, self.generation, diff=diff)
        try:
            self._apply(diff, wired, routing, outcome)
        except _StepFailed as exc:
            outcome.result = "failed"
            outcome.errors.append(str(exc))
        self.config, self.routing, self.wiring = diff.effective, routing, wired
        self.generation += 1
        outcome.generation = self.generation
        CONFIG_GENERATION.set(self.generation)
        return outcome

    # -- applying --------------------------------------------------------------------------

    def _apply(self, diff: ConfigDiff, wired: Wiring, routing: Routing | None,
               outcome: ReloadOutcome) -> None:
        sources = [k for k in diff.kinds if k.group == "sources"]
        leaving = [name for k in sources for name in (*k.removed, *k.changed)]
        if leaving:
            outcome.undrained = self._drain(leaving)
        sinks = [k for k in diff.kinds if k.group == "sinks"]
        for kind in sinks:
            for name in kind.changed:
                self._child("sinks", ReplaceChild(child_spec("sinks", name, wired)),
                            f"restart sink {name}")
        added = [name for k in sinks for name in k.added]
        removed = [name for k in sinks for name in k.removed]
        if added or removed:
            self._change_sinks(added, removed, wired)
        if diff.routing_changed:
            for name in wired.names("dispatchers"):
                short = name.rsplit("/", 1)[-1]
                self._child("dispatchers", UpdateChildSpec(child_spec("dispatchers", short,
                                                                      wired)),
                            f"update the spec of {short}")
                try:
                    self._ask(name, ReplaceRouting(routing), f"replace the pipelines of {short}")
                except _NotRunning:
                    pass  # restarting: its next incarnation starts from the updated spec
        for kind in sources:
            for name in kind.removed:
                self._child("sources", TerminateChild(name), f"stop source {name}")
            for name in kind.changed:
                self._child("sources", ReplaceChild(child_spec("sources", name, wired)),
                            f"restart source {name}")
            for name in kind.added:
                self._child("sources", StartChild(child_spec("sources", name, wired)),
                            f"start source {name}")

    def _change_sinks(self, added: list[str], removed: list[str], wired: Wiring) -> None:
        """Start the ``added`` sinks, tell every sender (the shards, or the disk buffer, and
        the DLQ) which sinks joined and left (their specs first, so a sender restarting
        meanwhile starts with the new set), then stop the ``removed`` sinks."""
        for name in added:
            self._child("sinks", StartChild(child_spec("sinks", name, wired)),
                        f"start sink {name}")
        senders = [("state", names.DLQ)] if wired.state(names.DLQ) is not None else []
        if wired.state(names.BUFFER) is not None:
            senders.insert(0, ("state", names.BUFFER))
        else:
            senders[:0] = [("dispatchers", n.rsplit("/", 1)[-1])
                           for n in wired.names("dispatchers")]
        handles = wired.sinks()
        change = SinksChanged(added=tuple((name, handles[name]) for name in added),
                              removed=tuple(removed))
        for group, short in senders:
            self._child(group, UpdateChildSpec(child_spec(group, short, wired)),
                        f"update the spec of {short}")
            try:
                self._ask(names.qualified(group, short), change,
                          f"tell {short} the sinks changed")
            except _NotRunning:
                pass  # restarting: its next incarnation starts from the updated spec
        for name in removed:
            self._child("sinks", TerminateChild(name), f"stop sink {name}")

    def _drain(self, sources: list[str]) -> list[str]:
        """Stop ``sources`` reading and wait until each has nothing unacknowledged; the names
        of those that still had something when ``drain_s`` ran out."""
        qualified = [names.qualified("sources", s) for s in sources]
        for name in qualified:
            self._quietly(name, StopReading())
        deadline = time.monotonic() + self.drain_s
        waiting = list(qualified)
        pause = threading.Event()
        flushed_at = 0.0
        while waiting:
            now = time.monotonic()
            if now - flushed_at >= FLUSH_EVERY_S:
                flushed_at = now
                for shard in self.wiring.names("dispatchers"):
                    self._quietly(shard, Flush())
            waiting = [name for name in waiting if not _settled(self._quietly(name,
                                                                              Unsettled()))]
            if not waiting or time.monotonic() >= deadline:
                break
            pause.wait(DRAIN_POLL_S)
        return [name.rsplit("/", 1)[-1] for name in waiting]

    def _child(self, group: str, message: Any, step: str) -> None:
        """Ask ``group``'s supervisor; a refusal, a timeout or a child that did not start is
        a failed step."""
        answer = self._ask(f"{names.ROOT}/{group}", message, step, CHILD_ASK_TIMEOUT_S)
        if answer is not True:
            raise _StepFailed(f"{step}: {'no such child' if answer is None else 'failed'}")

    def _ask(self, name: str, message: Any, step: str,
             timeout: float = ASK_TIMEOUT_S) -> Any:
        try:
            return self.directory.handle(name).ask(message, timeout=timeout)
        except ActorUnavailable as exc:
            raise _NotRunning(f"{step}: {name} is not running") from exc
        except (pykka.Timeout, DeliveryRefused) as exc:
            raise _StepFailed(f"{step}: {name} did not answer ({exc})") from exc
        except Exception as exc:  # the supervisor's own refusal (e.g. a duplicate child)
            raise _StepFailed(f"{step}: {exc}") from exc

    def _quietly(self, name: str, message: Any) -> Any:
        """Ask ``name``; None when it is not running or does not answer in time."""
        try:
            return self.directory.handle(name).ask(message, timeout=ASK_TIMEOUT_S)
        except (pykka.Timeout, DeliveryRefused):
            return None


def _settled(answer: dict[str, int] | None) -> bool:
    """A source's :class:`Unsettled` answer says it holds nothing (None: it is not running,
    so it holds nothing either)."""
    return answer is None or (not answer["pending"] and not answer["inflight_bytes"])


class _StepFailed(Exception):
    """One step of applying a reload failed (the message names it)."""


class _NotRunning(_StepFailed):
    """The actor asked is not running (between two incarnations)."""

