"""The base class of every logcap actor: bounded mailbox, exit reporting, liveness ping.

A :class:`LogcapActor` is a ``pykka.ThreadingActor`` whose inbox is a
:class:`~logcap.runtime.mailbox.BoundedInbox` and which tells its supervisor, through an
:class:`ExitLink`, every way it ends:

* a crash in :meth:`handle_start` (pykka's ``on_start``) -> ``ChildExited(crashed=True)``;
* an exception from a ``tell``-ed message (pykka's ``on_failure``) -> ``ChildExited(crashed=True)``;
* a normal stop (pykka's ``on_stop``) -> ``ChildExited(crashed=False)``;
  an exception in :meth:`handle_stop` makes it a crash.

Subclasses override :meth:`handle_start`, :meth:`handle`, :meth:`handle_stop` and
:meth:`handle_crash` (not pykka's ``on_*`` hooks). pykka does not call ``on_stop`` after a crash,
so an actor that holds descriptors, locks, threads or children releases them in
:meth:`handle_crash`, which runs after a crash (in start or in a message), before the
supervisor is told: the restarted actor can take them again, and nothing leaks.

Every actor answers :class:`Ping` with ``"pong"`` (used by the supervisor's
hang detection), and raises :class:`~logcap.runtime.crash.InjectedCrash` when told
:class:`~logcap.runtime.crash.CrashActor` (the chaos harness's fault), both before its own
handler sees them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka
from pykka._envelope import Envelope

from logcap.runtime.crash import CrashActor, InjectedCrash
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.mailbox import DEFAULT_MAILBOX_CAPACITY, BoundedInbox

__all__ = ["ChildExited", "ExitLink", "LogcapActor", "Ping"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness probe; every LogcapActor answers ``"pong"``."""


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A supervised actor ended. ``incarnation`` tells stale reports from current ones."""

    child_id: str
    incarnation: int
    crashed: bool
    error: str = ""


class ExitLink:
    """Where an actor reports its exit: a supervisor's ref (or any ``tell``-able) and its id."""

    __slots__ = ("child_id", "incarnation", "target")

    def __init__(self, target: Any, child_id: str, incarnation: int) -> None:
        self.target = target
        self.child_id = child_id
        self.incarnation = incarnation

    def report(self, crashed: bool, error: str = "") -> None:
        try:
            self.target.tell(ChildExited(self.child_id, self.incarnation, crashed, error))
        except Exception:  # the supervisor itself is gone: nobody left to tell
            log.debug("exit of %s not reported: supervisor gone", self.child_id)


@dataclass(frozen=True, slots=True)
class _Abandoned:
    """Put in an abandoned actor's inbox by :func:`abandon`: wakes its loop, which then ends."""


def abandon(ref: pykka.ActorRef[Any]) -> None:
    """Give up on an actor that will not stop (hung, or not stopped in time): unregistered,
    its stopped flag set, and its loop woken (an idle loop would wait in its inbox for ever);
    the loop ends when its handler returns, and the actor releases what it holds
    (:meth:`LogcapActor._actor_loop_teardown`)."""
    pykka.ActorRegistry.unregister(ref)
    ref.actor_stopped.set()
    ref.actor_inbox.put(Envelope(_Abandoned()))


def describe_error(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}"[:500]


class LogcapActor(pykka.ThreadingActor):
    """A pykka actor with a bounded two-lane inbox that reports its exit to its supervisor.

    Keyword arguments: ``link`` (an :class:`ExitLink`, None when unsupervised),
    ``mailbox_capacity`` (data-lane size in messages), ``name`` (its name in the directory, for
    logs and stats), ``directory`` (where that name is bound; gives :attr:`handle`).
    Threads are daemons, so an abandoned (hung) actor cannot keep the process alive.
    """

    use_daemon_thread = True

    def __init__(
        self,
        *,
        link: ExitLink | None = None,
        mailbox_capacity: int = DEFAULT_MAILBOX_CAPACITY,
        name: str = "",
        directory: Directory | None = None,
    ) -> None:
        self.link = link
        self.name = name or type(self).__name__
        self.directory = directory
        self._mailbox_capacity = mailbox_capacity
        self._exit_reported = False
        self._released = False  # handle_stop or handle_crash has run
        super().__init__()

    def _create_actor_inbox(self) -> BoundedInbox:  # type: ignore[override]
        return BoundedInbox(self._mailbox_capacity, name=self.name)

    @property
    def address(self) -> Handle:
        """This actor's stable address (survives its restarts): what it puts in ``reply_to``
        and gives to :meth:`Handle.watch`. Needs the ``directory`` keyword."""
        if self.directory is None:
            raise RuntimeError(f"{self.name} was started without a directory")
        return Handle(self.directory, self.name)

    @property
    def inbox(self) -> BoundedInbox:
        inbox = self.actor_inbox
        assert isinstance(inbox, BoundedInbox)
        return inbox

    # -- hooks for subclasses -------------------------------------------------------------

    def handle_start(self) -> None:
        """Set up; runs in the actor's thread before any message. Raising is a crash."""

    def handle(self, message: Any) -> Any:
        """Handle one message; the return value answers an ``ask``."""
        log.warning("%s: unexpected message %r", self.name, message)
        return None

    def handle_stop(self) -> None:
        """Clean up on a normal stop (flush what must be flushed). Raising is a crash."""

    def handle_crash(self) -> None:
        """Release what the actor holds after a crash (descriptors, locks, threads, children),
        without the orderly work of :meth:`handle_stop` where that work is not needed for
        safety. Runs in the actor's thread after a crash in start or in a message, before the
        supervisor is told; must cope with a partly started actor. Raising is logged."""

    def on_ping(self) -> None:
        """Called at each liveness ``Ping``: check what the actor's own threads are doing. To
        crash, tell yourself a message whose handler raises (an exception during an ask goes
        to the asker, and the actor would keep running)."""

    # -- pykka hooks, final -----------------------------------------------------------------

    def _release_after_crash(self) -> None:
        self._released = True
        try:
            self.handle_crash()
        except Exception as exc:
            log.error("%s: releasing after its crash failed: %s", self.name, describe_error(exc))

    def report_exit(self, crashed: bool, error: str = "") -> None:
        """Tell the supervisor once; later calls are ignored."""
        if self._exit_reported:
            return
        self._exit_reported = True
        if self.link is not None:
            self.link.report(crashed, error)

    def on_start(self) -> None:
        try:
            self.handle_start()
        except Exception as exc:
            log.error("%s crashed while starting: %s", self.name, describe_error(exc))
            self._release_after_crash()
            self.report_exit(True, describe_error(exc))
            raise

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Abandoned):
            return None  # the loop ends now (its stopped flag is set); the teardown releases
        if isinstance(message, Ping):
            self.on_ping()
            return "pong"
        if isinstance(message, CrashActor):
            raise InjectedCrash(message.reason)
        return self.handle(message)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release_after_crash()
        self.report_exit(True, describe_error(exception_value))

    def on_stop(self) -> None:
        try:
            self.handle_stop()
        except Exception as exc:
            log.error("%s crashed while stopping: %s", self.name, describe_error(exc))
            self._release_after_crash()
            self.report_exit(True, describe_error(exc))
            raise
        self._released = True
        self.report_exit(False)

    def _actor_loop_teardown(self) -> None:
        """pykka's last step of the actor's thread. An actor its supervisor abandoned (hung,
        or not stopped in time: :func:`abandon`) leaves its loop without pykka's ``on_stop``:
        it releases what it holds here, as after a crash (a Loki sink's connections stayed
        open for good: one socket per abandoned sink in the chaos runs)."""
        if not self._released:
            log.warning("%s: abandoned by its supervisor; releasing what it holds", self.name)
            self._release_after_crash()
        super()._actor_loop_teardown()
