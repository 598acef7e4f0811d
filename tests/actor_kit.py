"""Small actors and waiting helpers shared by the runtime tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory
from logcap.runtime.mailbox import DataMessage
from logcap.runtime.supervisor import ChildSpec, Restart, StartContext


def stop_bound(directory: Directory, names: Iterable[str]) -> None:
    """Stop the actors bound to ``names`` (those that are)."""
    for name in names:
        ref = directory.lookup(name)
        if ref is not None:
            ref.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``predicate`` to hold, re-checking on a short event wait; fail after timeout."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        pause.wait(0.002)


@dataclass(frozen=True, slots=True)
class Crash:
    """Makes a Worker raise."""


@dataclass(frozen=True, slots=True)
class Block:
    """Makes a Worker block its thread until ``release`` is set (a hang)."""

    release: threading.Event


@dataclass(frozen=True, slots=True)
class StopSelf:
    """Makes a Worker stop normally."""


@dataclass(frozen=True, slots=True)
class Batch(DataMessage):
    items: tuple[int, ...]


class Journal:
    """Thread-safe record of what workers did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.start_failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, kind: str, who: str) -> None:
        with self._lock:
            self.events.append((kind, who))

    def of(self, kind: str) -> list[str]:
        with self._lock:
            return [who for k, who in self.events if k == kind]

    def take_start_failure(self, who: str) -> bool:
        with self._lock:
            left = self.start_failures.get(who, 0)
            if left:
                self.start_failures[who] = left - 1
            return left > 0


class Worker(LogcapActor):
    """Records start/stop in a journal; crashes, hangs or stops on command."""

    def __init__(self, journal: Journal, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.journal = journal
        self.short = self.name.rsplit("/", 1)[-1]

    def handle_start(self) -> None:
        if self.journal.take_start_failure(self.short):
            raise RuntimeError(f"{self.short} refuses to start")
        self.journal.add("start", self.short)

    def handle_stop(self) -> None:
        self.journal.add("stop", self.short)

    def handle_crash(self) -> None:
        self.journal.add("release", self.short)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Crash):
            self.journal.add("crash", self.short)
            raise RuntimeError(f"{self.short} crashed on purpose")
        if isinstance(message, Block):
            message.release.wait(30)
            return None
        if isinstance(message, StopSelf):
            self.stop()
            return None
        return super().handle(message)


def worker_spec(
    child_id: str, journal: Journal, restart: Restart = Restart.PERMANENT, **kw: Any
) -> ChildSpec:
    def start(ctx: StartContext) -> Any:
        return Worker.start(journal, link=ctx.link, name=ctx.name)

    return ChildSpec(id=child_id, start=start, restart=restart, **kw)
