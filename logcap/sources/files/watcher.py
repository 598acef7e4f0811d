"""Directory watches through inotify: the wake-up call of the file tailers.

:class:`DirWatcher` runs one daemon thread that blocks on an inotify descriptor watching a
set of directories, and calls ``on_change()`` after any event in them (writes, creations,
renames, deletions, attribute changes, including those of files reached through them).
Events are coalesced: the callback is the wake-up, the tailer then looks at its files. It
is called ``delay_s`` (the source's ``read_delay``, :data:`DEFAULT_READ_DELAY_S`) after the
first event not yet told, and :meth:`DirWatcher.take_seen` says when that event was seen: the
shard's batch deadline counts from then (:class:`~logcap.dispatch.batcher.Batcher`), so the
delay is spent inside the line's latency budget (``dispatcher.batch_timeout``), not added to
it. If
inotify is unavailable or a watch cannot be added (limit reached, permission), the error is
recorded and the periodic ``os.stat`` sweep of the tailer remains the fallback.

**Opened at once.** With a ``wanted`` predicate (the globs), the thread also follows creations
and renames by name (:class:`~logcap.sources.files.moves.MoveTracker`) and *opens* every file
created at, or moved from, a wanted path the moment it reads the event, before calling
``on_change``: a file created and rotated away (or deleted) between two looks of the tailer is
still held by that descriptor. The descriptors wait in :meth:`DirWatcher.take_arrivals` as
:class:`Arrival` s, for the tailer to adopt (or close: a file it already follows is never read
twice). A file that cannot be opened is left to the sweep.

**What changed.** :meth:`DirWatcher.take_touched` gives the paths that had events since the
last call, so the tailer ``stat`` s only those at each read (every path at each sweep).

**Two inotify instances.** Name events (creations, moves, deletions; :data:`NAME_MASK`) and
content events (writes, closes, attribute changes; :data:`CONTENT_MASK`) are watched through
separate descriptors. Name events are read the moment they come (the opening at once above).
Content events only say "look again": the first one after a wake-up is read the moment it
comes (it starts the delay: its time is the lines' *seen* time); then the content descriptor
is not waited on until the delay has passed, its events waiting in the kernel's queue, where
repeated identical events (a writer's writes to one file) are merged into one. So a steady
writer costs the thread two waits per delay (the first event, the end of the delay) instead
of one per write, and the tailer one read per delay: at 10,000 lines/s written 100 times a
second and the default 50 ms, ~18 reads a second (one per push at a 50 ms batch timeout).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from logcap.sources.files.generation import open_log
from logcap.sources.files.moves import (
    CREATE,
    DELETE,
    MOVED_FROM,
    MOVED_TO,
    DirEvent,
    MoveTracker,
)

__all__ = ["CONTENT_MASK", "DEFAULT_READ_DELAY_S", "NAME_MASK", "WATCH_MASK", "Arrival",
           "DirWatcher", "dir_events"]

log = logging.getLogger(__name__)

try:
    from inotify_simple import INotify
    from inotify_simple import flags as _flags

    NAME_MASK = (_flags.CREATE | _flags.DELETE | _flags.MOVED_FROM | _flags.MOVED_TO
                 | _flags.DELETE_SELF | _flags.MOVE_SELF)
    CONTENT_MASK = _flags.MODIFY | _flags.CLOSE_WRITE | _flags.ATTRIB
except ImportError:  # pragma: no cover - not Linux
    INotify = None
    NAME_MASK = CONTENT_MASK = 0
WATCH_MASK = NAME_MASK | CONTENT_MASK
"""Every event the watcher follows: names (read at once) and contents (read per interval)."""

DEFAULT_READ_DELAY_S = 0.05
"""``sources.files[].read_delay``: ``on_change`` is called this long after the first event not
yet told (0: at once). A read and a wake-up of the tailer cost about what hundreds of lines
cost at a steady pace (cold caches, a hop between threads), so reading once per delay
instead of once per write is most of the source's CPU at 10,000 lines/s. It costs no latency
as long as it is at most the shards' batch timeout: a batch closes ``batch_timeout`` after
its oldest lines were *seen* (:meth:`DirWatcher.take_seen`), so lines read late wait less in
the shard, and at once when its sources read again only after that deadline
(``Entries.next_read_at``). The latency budget: a line is sent at most
``max(read_delay, batch_timeout)`` after its write is seen, plus the time to read, process
and push it; with ``batch_timeout`` under twice the delay, one read is one batch, sent
about ``read_delay`` after its first line (50 ms here and the timeout in ``bench/peers.py``).
50 rather than 40 ms (2026-12-04): at 10,000 lines/s, 20 reads and pushes a second instead of
25, and as many fewer wake-ups of each thread, which cost more than the lines do: logcap's CPU
5.0 -> 4.0 % of a core (memory mode; 5.9 -> 5.0 % with the disk buffer), p99 latency 44 -> 54
ms (``bench/peers.py``, two runs each). The default ``batch_timeout`` (200 ms) is longer still,
so with the defaults it adds no latency."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A file first seen at the wanted path ``origin``, opened at ``path`` as ``fd`` (the
    tailer owns the descriptor once it takes it)."""

    origin: str
    path: str
    fd: int


def dir_events(events: Iterable[Any], directories: dict[int, str]) -> list[DirEvent]:
    """inotify events (``wd, mask, cookie, name``) as :class:`DirEvent` s of the
    directories ``directories`` (watch descriptor -> path); other events are left out."""
    if INotify is None:  # pragma: no cover - not Linux
        return []
    out = []
    for event in events:
        directory = directories.get(event.wd)
        if directory is None or not event.name:
            continue
        mask = event.mask
        if mask & _flags.ISDIR:
            continue
        if mask & _flags.CREATE:
            kind = CREATE
        elif mask & _flags.MOVED_FROM:
            kind = MOVED_FROM
        elif mask & _flags.MOVED_TO:
            kind = MOVED_TO
        elif mask & _flags.DELETE:
            kind = DELETE
        else:
            continue
        out.append(DirEvent(kind, directory, event.name, event.cookie))
    return out


class DirWatcher:
    def __init__(self, on_change: Callable[[], None], name: str = "logcap-inotify",
                 wanted: Callable[[str], bool] | None = None,
                 delay_s: float = DEFAULT_READ_DELAY_S) -> None:
        self._on_change = on_change
        self.delay_s = delay_s
        self._seen: float | None = None  # the first event recorded since take_seen (monotonic)
        self._tracker = MoveTracker(wanted) if wanted is not None else None
        self._arrivals: deque[Arrival] = deque()
        self._touched: set[str] = set()
        self._all_touched = True  # until the first take: nothing is known yet
        self._touched_lock = threading.Lock()
        self._dirs: dict[int, str] = {}  # name instance's watch descriptor -> directory
        self._content_dirs: dict[int, str] = {}  # the same for the content instance
        self._watched: set[str] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._inotify = self._content = None
        if INotify is None:
            self.errors.append("inotify is not available: polling only")
            self._thread: threading.Thread | None = None
            return
        try:
            self._inotify = INotify()
            self._content = INotify()
        except OSError as exc:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None
            self.errors.append(f"inotify_init failed: {exc.strerror}: polling only")
            self._thread = None
            return
        # :meth:`close` writes a byte here to end the thread's wait: without events the
        # thread sleeps in ``poll`` with no timeout (no wake-ups while idle)
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        """Events are being read (inotify is open and its thread runs)."""
        return self._inotify is not None and self._thread is not None \
            and self._thread.is_alive()

    def watches(self, directory: str) -> bool:
        """``directory`` is watched (its events are seen)."""
        return directory in self._watched

    def watch(self, directories: Iterable[str]) -> None:
        """Watch every directory in ``directories`` not yet watched (idempotent)."""
        if self._inotify is None or self._content is None:
            return
        for directory in directories:
            if directory in self._watched or not os.path.isdir(directory):
                continue
            try:
                wd = self._inotify.add_watch(directory, NAME_MASK)
                self._dirs[wd] = directory
                self._content_dirs[self._content.add_watch(directory, CONTENT_MASK)] = directory
                self._watched.add(directory)
            except OSError as exc:
                message = f"cannot watch {directory}: {exc.strerror}"
                if message not in self.errors:
                    self.errors.append(message)
                    log.warning("%s (the periodic sweep still sees it)", message)

    def watched(self) -> list[str]:
        return sorted(self._watched)

    def _run(self) -> None:
        assert self._inotify is not None and self._content is not None
        names, content = self._inotify, self._content
        waiter = select.poll()
        waiter.register(names.fileno(), select.POLLIN)
        waiter.register(content.fileno(), select.POLLIN)
        waiter.register(self._wake_read, select.POLLIN)
        names_fd, content_fd = names.fileno(), content.fileno()
        delay = self.delay_s
        due: float | None = None  # when to tell (None: nothing recorded and not told yet)
        blind_since = 0.0  # the content queue was last read then (while ``due`` is set)
        while not self._stop.is_set():
            timeout: int | None
            if due is None:
                timeout = None  # until an event, or close()
            else:  # the content queue waits until then: only names can end the wait
                timeout = max(0, int((due - time.monotonic()) * 1000) + 1)
                waiter.modify(content_fd, 0)
            try:
                ready = waiter.poll(timeout)
                if due is not None:
                    waiter.modify(content_fd, select.POLLIN)
                now = time.monotonic()
                name_events = names.read(timeout=0) \
                    if any(fd == names_fd for fd, _ in ready) else []
                content_events = content.read(timeout=0) \
                    if due is None or now >= due else []
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("inotify read failed: %s; polling only", exc)
                return
            if self._stop.is_set():
                return
            if name_events:
                if self._tracker is not None:
                    self._open_sightings(name_events)
                self._record(name_events, self._dirs, now)
            if content_events:  # queued since blind_since at the earliest when due was set
                self._record(content_events, self._content_dirs,
                             now if due is None else blind_since)
            if due is None and (name_events or content_events):
                due, blind_since = now + delay, now
            if due is not None and now >= due:
                due = None
                self._on_change()

    def _record(self, events: Iterable[Any], watches: dict[int, str], now: float) -> None:
        directories = dict(watches)
        with self._touched_lock:
            if self._seen is None:
                self._seen = now
            for event in events:
                directory = directories.get(event.wd)
                if directory is None or not event.name:
                    self._all_touched = True  # overflow, or an event on a directory itself
                else:
                    self._touched.add(os.path.join(directory, event.name))

    def take_touched(self) -> set[str] | None:
        """The paths that had events since the last call; None when anything may have
        changed (no inotify, a queue overflow, an event on a watched directory itself, the
        thread stopped): then look at every path."""
        alive = self._thread is not None and self._thread.is_alive()
        with self._touched_lock:
            touched, everything = self._touched, self._all_touched or not alive
            self._touched, self._all_touched = set(), False
        return None if everything else touched

    def take_seen(self) -> float | None:
        """When the first event recorded since the last call was seen (monotonic; None: no
        event since); at the latest when it happened (content events read at the end of a
        delay count from its start). Taken with :meth:`take_touched` by each read: a line it
        finds that an earlier read did not leave was written then or later."""
        with self._touched_lock:
            seen, self._seen = self._seen, None
        return seen

    def _open_sightings(self, events: Iterable[Any]) -> None:
        assert self._tracker is not None
        for sighting in self._tracker.feed(dir_events(events, dict(self._dirs))):
            try:
                fd = open_log(sighting.path)
            except OSError:
                continue  # gone again, or unreadable: the sweep reports it
            self._arrivals.append(Arrival(sighting.origin, sighting.path, fd))

    def take_arrivals(self) -> list[Arrival]:
        """The files opened since the last call (the caller owns their descriptors)."""
        taken = []
        while self._arrivals:
            taken.append(self._arrivals.popleft())
        return taken

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")
            self._thread.join(timeout=2)
            self._thread = None  # a second close() must not write to a reused descriptor
            for fd in (self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)
        for instance in (self._inotify, self._content):
            if instance is not None:
                instance.close()
        self._inotify = self._content = None
        for arrival in self.take_arrivals():
            with contextlib.suppress(OSError):
                os.close(arrival.fd)
