"""Directory watches through inotify: the wake-up call of the file tailers.

:class:`DirWatcher` runs one daemon thread that blocks on an inotify descriptor watching a
set of directories, and calls ``on_change()`` after any event in them (writes, creations,
renames, deletions, attribute changes, including those of files reached through them).
Events are coalesced: the callback is the wake-up, the tailer then looks at its files. If
inotify is unavailable or a watch cannot be added (limit reached, permission), the error is
recorded and the periodic ``os.stat`` sweep of the tailer remains the fallback.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

__all__ = ["WATCH_MASK", "DirWatcher"]

log = logging.getLogger(__name__)

try:
    from inotify_simple import INotify
    from inotify_simple import flags as _flags

    WATCH_MASK = (
        _flags.MODIFY | _flags.CREATE | _flags.DELETE | _flags.MOVED_FROM | _flags.MOVED_TO
        | _flags.CLOSE_WRITE | _flags.ATTRIB | _flags.DELETE_SELF | _flags.MOVE_SELF
    )
except ImportError:  # pragma: no cover - not Linux
    INotify = None
    WATCH_MASK = 0

READ_TIMEOUT_MS = 500
"""How often the watcher thread looks up from inotify to see if it should stop."""


class DirWatcher:
    def __init__(self, on_change: Callable[[], None], name: str = "logcap-inotify") -> None:
        self._on_change = on_change
        self._watched: dict[str, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._inotify = None
        if INotify is None:
            self.errors.append("inotify is not available: polling only")
            self._thread: threading.Thread | None = None
            return
        try:
            self._inotify = INotify()
        except OSError as exc:
            self.errors.append(f"inotify_init failed: {exc.strerror}: polling only")
            self._thread = None
            return
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def watch(self, directories: Iterable[str]) -> None:
        """Watch every directory in ``directories`` not yet watched (idempotent)."""
        if self._inotify is None:
            return
        for directory in directories:
            if directory in self._watched or not os.path.isdir(directory):
                continue
            try:
                self._watched[directory] = self._inotify.add_watch(directory, WATCH_MASK)
            except OSError as exc:
                message = f"cannot watch {directory}: {exc.strerror}"
                if message not in self.errors:
                    self.errors.append(message)
                    log.warning("%s (the periodic sweep still sees it)", message)

    def watched(self) -> list[str]:
        return sorted(self._watched)

    def _run(self) -> None:
        assert self._inotify is not None
        while not self._stop.is_set():
            try:
                events = self._inotify.read(timeout=READ_TIMEOUT_MS)
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("inotify read failed: %s; polling only", exc)
                return
            if events and not self._stop.is_set():
                self._on_change()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
