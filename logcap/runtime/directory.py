"""Stable names for actors that get restarted.

A producer must not hold a raw ``ActorRef``: it dies with the actor, and the restarted actor
has a new one. Producers hold a :class:`Handle` (a name) instead; the supervisor re-binds the
name in the :class:`Directory` each time it (re)starts the child.

An actor that must know when another one restarted (a sender whose unanswered messages died
with the receiver) **watches** its name: each later (re)bind of that name sends the watcher
:class:`Rebound` on its control lane. So a receiver never needs a list of who sends to it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from logcap.runtime.mailbox import ActorUnavailable, BoundedInbox

__all__ = ["Directory", "Handle", "Rebound"]


@dataclass(frozen=True, slots=True)
class Rebound:
    """To a watcher: ``name`` was bound to a new actor (a restart); what was sent to the
    previous one and not answered is lost."""

    name: str


class Directory:
    """Thread-safe map from stable names to the current ``ActorRef`` bound to them."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef[Any]] = {}
        self._watchers: dict[str, dict[str, Handle]] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, ref: ActorRef[Any]) -> None:
        """Bind ``name`` to ``ref`` and tell its watchers :class:`Rebound` (a watcher that is
        not running is skipped: a restarted watcher starts from its own state anyway)."""
        with self._lock:
            self._refs[name] = ref
            watchers = list(self._watchers.get(name, {}).values())
        for watcher in watchers:
            try:
                watcher.tell(Rebound(name))
            except ActorUnavailable:
                pass

    def watch(self, name: str, watcher: Handle) -> None:
        """From now on, tell ``watcher`` :class:`Rebound` at each bind of ``name``
        (idempotent: a watcher is kept once per name, by its own name)."""
        with self._lock:
            self._watchers.setdefault(name, {})[watcher.name] = watcher

    def unbind(self, name: str, ref: ActorRef[Any] | None = None) -> None:
        """Remove ``name``; with ``ref``, only if the name is still bound to that ref."""
        with self._lock:
            if ref is None or self._refs.get(name) is ref:
                self._refs.pop(name, None)

    def lookup(self, name: str) -> ActorRef[Any] | None:
        with self._lock:
            return self._refs.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._refs)

    def handle(self, name: str) -> Handle:
        return Handle(self, name)


class Handle:
    """A stable address: ``tell``/``ask`` go to whichever actor currently holds ``name``.

    Raises :class:`ActorUnavailable` when no live actor holds the name (it is restarting),
    and :class:`~logcap.runtime.mailbox.MailboxFull` when its data lane is full.
    """

    __slots__ = ("directory", "name")

    def __init__(self, directory: Directory, name: str) -> None:
        self.directory = directory
        self.name = name

    def __repr__(self) -> str:
        return f"Handle({self.name!r})"

    def ref(self) -> ActorRef[Any]:
        ref = self.directory.lookup(self.name)
        if ref is None or not ref.is_alive():
            raise ActorUnavailable(f"{self.name} is not running")
        return ref

    def watch(self, watcher: Handle) -> None:
        """Tell ``watcher`` :class:`Rebound` whenever this name is bound to a new actor."""
        self.directory.watch(self.name, watcher)

    def tell(self, message: Any) -> None:
        try:
            self.ref().tell(message)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc

    def tell_incarnation(self, urn: str | None, message: Any) -> bool:
        """Tell ``message`` only to the actor bound to this name with ``urn`` (its
        ``actor_urn``): False, nothing sent, when the name is bound to another actor (it
        restarted) or to none. Raises as :meth:`tell` otherwise. One look-up for both."""
        ref = self.directory.lookup(self.name)
        if ref is None or ref.actor_urn != urn:
            return False
        try:
            ref.tell(message)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc
        return True

    def ask(self, message: Any, timeout: float) -> Any:
        """Ask and wait up to ``timeout`` seconds (raises ``pykka.Timeout`` past it)."""
        try:
            return self.ref().ask(message, timeout=timeout)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc

    def ask_later(self, message: Any) -> pykka.Future[Any]:
        """Ask without waiting: the answer's future (``get(timeout)`` raises
        ``pykka.Timeout`` past it), so several actors can be asked at once."""
        try:
            return self.ref().ask(message, block=False)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc

    def has_room(self) -> bool:
        """True if the current actor's data lane has room (racy hint, no guarantee)."""
        ref = self.directory.lookup(self.name)
        if ref is None:
            return False
        inbox = ref.actor_inbox
        return not isinstance(inbox, BoundedInbox) or inbox.has_room()
