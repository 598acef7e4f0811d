"""The engine watch: the thread that finds containers, follows the engine's events and says
whether the engine is reachable.

It puts on the source's inbox (and calls ``wake``):

* :class:`Seen` — containers found: the whole list, running or not (``full``), after each
  (re)connection, or one running container after its ``start`` or ``rename`` event
  (inspected, so its labels and name are current);
* :class:`Died` — a ``die`` event (the follower ends by itself at the end of the log; the
  source uses this to unstick a stream that does not end);
* :class:`Removed` — ``remove`` (podman) or ``destroy`` (Docker);
* :class:`EngineStatus` — the connection changed: ok, or unreachable with the reason.

Events can repeat or be replayed (each connection asks for the events since one second before
it, and re-lists the running containers): the source's handlers are idempotent. Podman's extra
``init``/``cleanup`` and a missing ``stop`` change nothing: only ``start``, ``die``,
``remove``/``destroy`` and ``rename`` are used.

Watchdog: the event stream is opened with an idle timeout (:data:`EVENTS_IDLE_S`); when it
fires, or the stream ends or fails, the watch connects again (a new list is the probe). A hung
daemon makes that list time out, so the engine is reported unreachable within about
``EVENTS_IDLE_S`` + the call timeout. Failures retry with backoff (:data:`RETRY_MAX_S`), logged
once per new reason.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcap.runtime.restarts import Backoff
from logcap.sources.containers.engine import (
    ContainerGone,
    ContainerInfo,
    Engine,
    EngineError,
    StreamIdle,
)
from logcap.sources.containers.handoff import hand_off

__all__ = ["EVENTS_IDLE_S", "RETRY_MAX_S", "Died", "EngineStatus", "EngineWatch", "Removed",
           "Seen", "parse_events"]

log = logging.getLogger(__name__)

EVENTS_IDLE_S = 5.0
"""An event stream quiet this long is re-opened (and the containers re-listed)."""
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
"""Backoff between failed connections to the engine."""
MAX_EVENT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Seen:
    infos: tuple[ContainerInfo, ...]
    full: bool


@dataclass(frozen=True, slots=True)
class Died:
    container_id: str


@dataclass(frozen=True, slots=True)
class Removed:
    container_id: str


@dataclass(frozen=True, slots=True)
class EngineStatus:
    ok: bool
    reason: str = ""


def parse_events(buffer: bytearray) -> list[dict[str, Any]]:
    """The complete JSON objects at the start of ``buffer`` (removed from it); an incomplete
    one stays. Bytes that are not JSON are dropped up to the next newline (logged)."""
    out: list[dict[str, Any]] = []
    while True:
        newline = buffer.find(b"\n")
        if newline < 0:
            if len(buffer) > MAX_EVENT_BYTES:
                log.warning("containers: an event longer than %d bytes was dropped",
                            MAX_EVENT_BYTES)
                buffer.clear()
            return out
        raw = bytes(buffer[:newline]).strip()
        del buffer[:newline + 1]
        if not raw:
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("containers: an event that is not JSON was dropped: %r", raw[:200])
            continue
        if isinstance(event, dict):
            out.append(event)


def _event_id(event: dict[str, Any]) -> str:
    actor = event.get("Actor") or {}
    return str(actor.get("ID") or event.get("id") or "")


class EngineWatch:
    """The watch thread (module docstring) over its own engine client."""

    def __init__(self, engine_factory: Callable[[], Engine], inbox: queue.Queue[object],
                 wake: Callable[[], None], *, idle_s: float = EVENTS_IDLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine_factory = engine_factory
        self._inbox = inbox
        self._wake = wake
        self._idle_s = idle_s
        self._clock = clock
        self._stopped = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._ok: bool | None = None
        self._reason = ""
        self.connections = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="engine-watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.abort()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _put(self, item: object) -> None:
        hand_off(self._inbox, item, self._stopped, self._wake)

    def _status(self, ok: bool, reason: str = "") -> None:
        if ok == self._ok and reason == self._reason:
            return
        if ok:
            log.info("containers: engine connected")
        else:
            log.warning("containers: engine unreachable: %s (retrying with backoff)", reason)
        self._ok, self._reason = ok, reason
        self._put(EngineStatus(ok, reason))

    def _run(self) -> None:
        engine = self._engine_factory()
        backoff = Backoff(RETRY_MIN_S, RETRY_MAX_S)
        try:
            while not self._stopped.is_set():
                try:
                    self._session(engine, backoff)
                except EngineError as exc:
                    if self._stopped.is_set():
                        break
                    self._status(False, str(exc))
                    engine.close()
                    self._stopped.wait(backoff.next_delay(self._clock()))
                except Exception:  # never die quietly
                    log.exception("containers: the engine watch failed; retrying")
                    self._stopped.wait(RETRY_MAX_S)
        finally:
            engine.close()

    def _session(self, engine: Engine, backoff: Backoff) -> None:
        """One connection: open the events, list the running containers, read events until
        the stream ends, fails or is idle."""
        stream = engine.events(int(time.time()) - 1, self._idle_s)
        with self._lock:
            self._stream = stream
        try:
            if self._stopped.is_set():
                return
            infos = engine.listing()
            self.connections += 1
            self._status(True)
            backoff.attempts = 0
            self._put(Seen(tuple(infos), full=True))
            buffer = bytearray()
            while not self._stopped.is_set():
                try:
                    data = stream.read()
                except StreamIdle:
                    return
                if not data:
                    return
                buffer += data
                for event in parse_events(buffer):
                    self._on_event(engine, event)
        finally:
            with self._lock:
                self._stream = None
            stream.close()

    def _on_event(self, engine: Engine, event: dict[str, Any]) -> None:
        if str(event.get("Type", "container")) != "container":
            return
        action = str(event.get("Action") or event.get("status") or "")
        cid = _event_id(event)
        if not cid:
            return
        if action in ("start", "rename"):
            try:
                info = engine.inspect(cid)
            except ContainerGone:
                return
            if info.running:
                self._put(Seen((info,), full=False))
        elif action == "die":
            self._put(Died(cid))
        elif action in ("remove", "destroy"):
            self._put(Removed(cid))
