"""A follower: the thread that streams one container's log from the engine into the source.

The source (:mod:`logcap.sources.containers.source`) stays non-blocking: each followed
container has a :class:`Follower` thread that does the blocking I/O, decodes the frame headers
(:class:`~logcap.sources.containers.framing.FrameDecoder`) and puts what it read on the
source's bounded inbox (a :class:`queue.Queue`), then calls ``wake``. A full inbox blocks the
follower (and so its socket reads): that is the backpressure, the engine's log file is the
buffer.

What a follower puts on the inbox, in order (each names the container and the *session*, one
per log request):

* :class:`Opened` — a request was answered: the lines that follow are everything after
  ``since_ns`` (0: the whole log); the source re-filters them from its own cursor;
* :class:`Chunk` — the frames of one read;
* :class:`Trouble` — a call failed (the reason); the follower retries with backoff;
* :class:`Ended` — the follower is done: the container stopped (its log was read to the end
  without ``follow``) or was removed (``gone``).

The follow loop (**EOF is not an exit**): inspect the container (TTY or not, running or not),
open ``logs(follow=True, since=<the source's resume point>)``, read until EOF or an error, then
inspect again. Running: open again (at once if data came, else after a backoff: podman ends a
stream when its API service stops while the container keeps running). Not running: reads
without ``follow`` (the end of its log) until two reads from the same point return the same
bytes (podman may say a container exited before its log file holds every line; the source's
resume filter drops what is read twice), then :class:`Ended`. Removed (404): Ended with
``gone``. Engine unreachable: :class:`Trouble`, backoff (0.1 s doubling to
:data:`RECONNECT_MAX_S`, with jitter), try again, until stopped.

**Polling** (an engine whose followed streams lose lines: podman, see
:meth:`~logcap.sources.containers.engine.Engine.follow_loses_lines`): the same loop with reads
*without* ``follow``, each to the end of the log as it is then. After a read that brought
something new (another resume point or another size than the last read), the next one follows
after :data:`POLL_S` without inspecting again; after one that did not, the container is
inspected and the next read waits :data:`POLL_S` doubling to :data:`POLL_IDLE_MAX_S` (a quiet
container costs one inspect and one read a second). Each read re-sends the lines of the resume
point's second (podman's timestamps have whole seconds); the source's resume filter skips them.

:meth:`Follower.restart` (any thread) ends the current request so that the next one starts
from the source's resume point as it is now (a rewind, or the watchdog); :meth:`Follower.stop`
ends the thread. ``last_data_at`` (monotonic) and ``streaming`` are read by the watchdog.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from logcap.runtime.restarts import Backoff
from logcap.sources.containers.cursor import since_seconds
from logcap.sources.containers.engine import (
    ContainerGone,
    ContainerInfo,
    Engine,
    EngineError,
    LogStream,
)
from logcap.sources.containers.framing import Frame, FrameDecoder, FramingError
from logcap.sources.containers.handoff import hand_off

__all__ = ["RECONNECT_MAX_S", "RECONNECT_MIN_S", "Chunk", "Ended", "Follower", "Opened",
           "Trouble"]

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
"""Backoff between failed (or empty) log requests: 0.1 s doubling to 5 s, with jitter."""
DRAIN_SETTLE_S = 0.2
"""Pause between the reads of a stopped container's log (until two agree)."""
POLL_S = 0.5
POLL_IDLE_MAX_S = 1.0
"""Polling: the pause after a read that brought something new, and the most an idle
container's polls are apart (the pause doubles from :data:`POLL_S` up to it)."""


@dataclass(frozen=True, slots=True)
class Opened:
    container_id: str
    session: int
    since_ns: int
    tty: bool
    follow: bool
    polled: bool = False
    """The engine is polled (podman: one time-ordered log for both streams)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    container_id: str
    session: int
    frames: list[Frame]
    nbytes: int


@dataclass(frozen=True, slots=True)
class Trouble:
    container_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ended:
    container_id: str
    gone: bool


class Follower:
    """The follower thread of one container (module docstring). ``since_ns()`` is the
    source's resume point (read at each request, from this thread); ``engine_factory`` makes
    this follower's own engine client."""

    def __init__(self, info: ContainerInfo, engine_factory: Callable[[], Engine],
                 inbox: queue.Queue[object], wake: Callable[[], None],
                 since_ns: Callable[[], int], *, max_frame_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.info = info
        self.container_id = info.id
        self._engine_factory = engine_factory
        self._inbox = inbox
        self._wake = wake
        self._since_ns = since_ns
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stream: LogStream | None = None
        self._restart = False
        self.session = 0
        self.streaming = False
        self.last_data_at = clock()
        self.requests = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"follow-{info.name or info.id[:12]}")

    # -- control (any thread) --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def restart(self) -> None:
        """End the current request; the next starts from the resume point as it is now."""
        with self._lock:
            self._restart = True
            stream = self._stream
        if stream is not None:
            stream.abort()

    def stop(self) -> None:
        """End the thread (without :class:`Ended`)."""
        self._stopped.set()
        self.restart()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------

    def _put(self, item: object) -> bool:
        return hand_off(self._inbox, item, self._stopped, self._wake)

    def _run(self) -> None:
        engine = self._engine_factory()
        try:
            gone = self._follow(engine)
        except Exception:  # a bug here must not kill the process quietly
            log.exception("follower of %s failed", self.info.name)
            gone = False
        finally:
            engine.close()
        if not self._stopped.is_set():
            self._put(Ended(self.container_id, gone))

    def _follow(self, engine: Engine) -> bool:
        """The follow loop; True if the container was removed, False if it stopped (or the
        follower was stopped)."""
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        idle = Backoff(POLL_S, POLL_IDLE_MAX_S)
        draining = False
        last_drain: tuple[int, int] | None = None
        last_poll: tuple[int, int] | None = None
        polling: bool | None = None
        known: ContainerInfo | None = None  # still true: no need to inspect before the read
        while not self._stopped.is_set():
            try:
                if polling is None:
                    polling = engine.follow_loses_lines()
                info = known if known is not None else engine.inspect(self.container_id)
            except ContainerGone:
                return True
            except EngineError as exc:
                self._trouble(str(exc), backoff)
                continue
            known = None
            if not info.running:
                draining = True
            with self._lock:
                self._restart = False
            since_ns = self._since_ns()
            follow = not draining and not polling
            try:
                stream = engine.logs(self.container_id,
                                     since_seconds(since_ns) if since_ns > 0 else None,
                                     tty=info.tty, follow=follow)
            except ContainerGone:
                return True
            except EngineError as exc:
                self._trouble(str(exc), backoff)
                continue
            self.session += 1
            self.requests += 1
            if not self._put(Opened(self.container_id, self.session, since_ns, info.tty,
                                    follow, polling)):
                stream.close()
                return False
            got, error = self._read(stream, info.tty)
            if draining and error is None:
                # podman may report a container exited before its log file has every line:
                # read again until two reads from the same point agree
                if last_drain == (since_ns, got) or self._stopped.is_set():
                    return False
                last_drain = (since_ns, got)
                self._stopped.wait(DRAIN_SETTLE_S)
                continue
            if error is not None:
                self._trouble(error, backoff)
            elif polling:
                backoff.attempts = 0
                fresh = got > 0 and (since_ns, got) != last_poll
                last_poll = (since_ns, got)
                if fresh:
                    idle.attempts = 0
                    known = info  # it wrote: it runs; read again without inspecting
                    self._stopped.wait(POLL_S)
                elif not self._restart_requested():
                    self._wait(idle)
            elif got:
                backoff.attempts = 0
            elif not self._restart_requested():
                self._wait(backoff)
        return False

    def _restart_requested(self) -> bool:
        with self._lock:
            return self._restart

    def _read(self, stream: LogStream, tty: bool) -> tuple[int, str | None]:
        """Read one request to its end; (bytes read, the error or None at EOF/restart)."""
        decoder = FrameDecoder(tty=tty, max_frame_bytes=self._max_frame_bytes)
        got = 0
        with self._lock:
            self._stream = stream
            restart = self._restart
        self.streaming = True
        try:
            if restart:
                return got, None
            while not self._stopped.is_set():
                try:
                    data = stream.read()
                except EngineError as exc:
                    return got, str(exc)
                if not data:
                    return got, None
                got += len(data)
                self.last_data_at = self._clock()
                try:
                    frames = decoder.feed(data)
                except FramingError as exc:
                    return got, str(exc)
                if frames and not self._put(Chunk(self.container_id, self.session, frames,
                                                  len(data))):
                    return got, None
            return got, None
        finally:
            self.streaming = False
            with self._lock:
                self._stream = None
            stream.close()

    def _trouble(self, reason: str, backoff: Backoff) -> None:
        self._put(Trouble(self.container_id, reason))
        self._wait(backoff)

    def _wait(self, backoff: Backoff) -> None:
        self._stopped.wait(backoff.next_delay(self._clock()))
