"""Stable names for actors that get restarted.

A producer must not hold a raw ``ActorRef``: it dies with the actor, and the restarted actor
has a new one. Producers hold a :class:`Handle` (a name) instead; the supervisor re-binds the
name in the :class:`Directory` each time it (re)starts the child.
"""

from __future__ import annotations

import threading
from typing import Any

from pykka import ActorDeadError, ActorRef

from logcap.runtime.mailbox import ActorUnavailable, BoundedInbox

__all__ = ["Directory", "Handle"]


class Directory:
    """Thread-safe map from stable names to the current ``ActorRef`` bound to them."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef[Any]] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, ref: ActorRef[Any]) -> None:
        with self._lock:
            self._refs[name] = ref

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

    def tell(self, message: Any) -> None:
        try:
            self.ref().tell(message)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc

    def ask(self, message: Any, timeout: float) -> Any:
        """Ask and wait up to ``timeout`` seconds (raises ``pykka.Timeout`` past it)."""
        try:
            return self.ref().ask(message, timeout=timeout)
        except ActorDeadError as exc:
            raise ActorUnavailable(f"{self.name} is not running") from exc

    def has_room(self) -> bool:
        """True if the current actor's data lane has room (racy hint, no guarantee)."""
        ref = self.directory.lookup(self.name)
        if ref is None:
            return False
        inbox = ref.actor_inbox
        return not isinstance(inbox, BoundedInbox) or inbox.has_room()
