"""Follow files that appear at watched paths through renames, from directory events.

A log rotated every 100 ms can be created at ``app.log``, written, and renamed to
``app.log.1`` (then ``app.log.2``...) before the tailer looks at the path again; a file
deleted and recreated at once can be gone before the next ``stat``. Its lines are then only
reachable through its new name, or through a descriptor opened the moment it was created.
:class:`MoveTracker` turns one batch of inotify events of the watched directories into
:class:`Sighting` s: for every file that was created at (or moved onto) a *wanted* path
(one the globs select) during the batch, where it is at the end of the batch, and at which
wanted path it was first seen (its ``origin``, the stream its lines belong to). The watcher
opens each sighting at once; the tailer then recognises the file by identity (a file it
already follows is closed again, never read twice).

Semantics of one :meth:`MoveTracker.feed` (events in kernel order)
    - ``create p`` with ``p`` wanted: ``p`` is followed, origin ``p``.
    - ``moved_from p`` (cookie ``c``) then ``moved_to q`` (same ``c``): a followed ``p`` is now
      at ``q``, same origin; a ``p`` not followed yet but wanted is followed from now on
      (origin ``p``: it may be a file the tailer knows under that path, renamed away). The
      name ``q`` may be outside the globs. A ``moved_to`` without its ``moved_from`` (a file
      moved in from an unwatched directory) onto a wanted ``q``: followed, origin ``q``.
    - A ``moved_from`` whose ``moved_to`` has not arrived is remembered for one more batch
      (the kernel may split the pair across two reads), then dropped (moved out of sight).
    - ``delete p``: ``p`` is no longer followed (if it was never opened, nothing can read it).
    - A file renamed onto a followed name replaces it: the name now holds the moved file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["CREATE", "DELETE", "MOVED_FROM", "MOVED_TO", "DirEvent", "MoveTracker", "Sighting"]

CREATE = "create"
DELETE = "delete"
MOVED_FROM = "moved_from"
MOVED_TO = "moved_to"


@dataclass(frozen=True, slots=True)
class DirEvent:
    """One event on the entry ``name`` of the watched ``directory`` (``kind``: the constants
    above; ``cookie`` pairs a ``moved_from`` with its ``moved_to``)."""

    kind: str
    directory: str
    name: str
    cookie: int = 0

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A file first seen at the wanted path ``origin`` and now at ``path``."""

    origin: str
    path: str


class MoveTracker:
    """Turns batches of :class:`DirEvent` into :class:`Sighting` s (module docstring)."""

    def __init__(self, wanted: Callable[[str], bool]) -> None:
        self._wanted = wanted
        self._moving: dict[int, str] = {}  # cookie -> origin, from the previous batch

    def feed(self, events: Iterable[DirEvent]) -> list[Sighting]:
        followed: dict[str, str] = {}  # path now -> origin
        moving = self._moving
        self._moving = {}
        fresh: dict[int, str] = {}
        for event in events:
            path = event.path
            if event.kind == CREATE:
                if self._wanted(path):
                    followed[path] = path
            elif event.kind == MOVED_FROM:
                origin = followed.pop(path, None)
                if origin is None and self._wanted(path):
                    origin = path
                if origin is not None:
                    fresh[event.cookie] = origin
            elif event.kind == MOVED_TO:
                origin = fresh.pop(event.cookie, None) or moving.pop(event.cookie, None)
                if origin is not None:
                    followed[path] = origin
                elif self._wanted(path):
                    followed[path] = path
                else:
                    followed.pop(path, None)
            elif event.kind == DELETE:
                followed.pop(path, None)
        self._moving = fresh
        return [Sighting(origin, path) for path, origin in followed.items()]
