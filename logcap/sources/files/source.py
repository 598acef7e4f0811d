"""FileSource: the :class:`~logcap.sources.base.Source` of one ``sources.files[]`` entry.

It runs a :class:`~logcap.sources.files.tailer.SourceTailer` (discovery, rotation, reading,
read window, commits) and adds the file source's own wake-ups:

* an inotify thread (:class:`~logcap.sources.files.watcher.DirWatcher`) on the glob roots and
  the directories of followed files calls ``wake``; :meth:`FileSource.on_wake` re-scans the
  globs (new files), at most every ``WAKE_RESCAN_MIN_S``;
* :meth:`FileSource.on_tick`, every ``SWEEP_INTERVAL_S``: a ``stat`` of every path happens at
  each read anyway (rotation, growth); every ``DEEP_CHECK_EVERY`` ticks (and on every tick
  without inotify) also a re-scan of the globs and a fingerprint check (inode reuse). The
  fallback when inotify misses something. It also sets the files and lag gauges.

Files it cannot read are logged once per new reason, counted
(``logcap_source_errors_total``), and listed in :meth:`status`; they never fail the source.

Multi-line joining: ``multiline_for(path)`` gives the multiline spec of a path (None: lines as
they are); its files are read through a
:class:`~logcap.sources.files.joining.JoiningReader`, so every read is whole entries and
positions commit only whole entries. Entries closed are counted by reason
(``logcap_source_multiline_entries_total``, and ``multiline`` in :meth:`status`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from logcap.metrics import (
    POSITIONS_LAG,
    SOURCE_ERRORS,
    SOURCE_FILES,
    SOURCE_MULTILINE_ENTRIES,
    SOURCE_ROTATIONS,
)
from logcap.origin import FILE_KIND, Buffered, ReadToken
from logcap.sources.base import Reading
from logcap.sources.files.discovery import has_magic
from logcap.sources.files.joining import JoinCounts, reader_factory
from logcap.sources.files.tailer import SourceTailer, TailerSettings
from logcap.sources.files.watcher import DirWatcher
from logcap.sources.multiline import MultilineRule, MultilineSpec
from logcap.state.positions import FilePosition
from logcap.state.positions_messages import (
    CommitFiles,
    ForgetFiles,
    GetFilePositions,
    PositionsUpdate,
)

__all__ = ["DEEP_CHECK_EVERY", "SWEEP_INTERVAL_S", "WAKE_RESCAN_MIN_S", "FileSource",
           "file_source_settings"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0
DEEP_CHECK_EVERY = 10
"""Every this many sweeps (and on every sweep without inotify): re-scan the globs and compare
fingerprints (inode reuse). Other sweeps only ``stat`` the paths (rotation, growth)."""
WAKE_RESCAN_MIN_S = 0.2
"""A directory event re-scans the globs (new files) at most this often."""


def file_source_settings(source: Any, config: Any) -> TailerSettings:
    """TailerSettings from a ``sources.files[]`` entry and the dispatcher section."""
    return TailerSettings(
        source=source.name,
        include=tuple(source.include),
        exclude=tuple(source.exclude),
        labels=tuple(sorted(dict(source.labels).items())),
        start_at=source.start_at,
        max_line_bytes=source.max_line_bytes,
        encoding=source.encoding,
        batch_lines=config.dispatcher.batch_size,
    )


def _glob_roots(patterns: tuple[str, ...]) -> list[str]:
    """The deepest directory of each pattern before its first wildcard."""
    roots = []
    for pattern in patterns:
        parts = os.path.abspath(pattern).split(os.sep)
        fixed = []
        for part in parts[:-1]:
            if has_magic(part):
                break
            fixed.append(part)
        roots.append(os.sep.join(fixed) or os.sep)
    return roots


class FileSource:
    """The files of one ``sources.files[]`` entry (module docstring)."""

    kind = FILE_KIND
    positions_query = GetFilePositions()
    tick_interval_s = SWEEP_INTERVAL_S

    def __init__(self, settings: TailerSettings,
                 clock: Callable[[], float] = time.monotonic,
                 multiline_for: Callable[[str], MultilineSpec | None] = lambda path: None,
                 ) -> None:
        self.name = settings.source
        self.settings = settings
        self.clock = clock
        self.multiline_for = multiline_for
        self._rules: dict[MultilineSpec, MultilineRule] = {}
        self.joined = JoinCounts()
        self._tailer: SourceTailer | None = None
        self.watcher: DirWatcher | None = None
        self._last_rescan = 0.0
        self._sweeps = 0

    @property
    def tailer(self) -> SourceTailer:
        assert self._tailer is not None, "FileSource used before start()"
        return self._tailer

    def start(self, stored: Sequence[Any], buffered: Buffered,
              wake: Callable[[], None]) -> None:
        positions = [p for p in stored if isinstance(p, FilePosition)]
        make_reader = reader_factory(self.settings.max_line_bytes, self.settings.encoding,
                                     self._rule_for, self.joined, self.clock)
        self._tailer = SourceTailer(self.settings, positions, clock=self.clock,
                                    buffered=buffered, make_reader=make_reader)
        self._report(self.tailer.rescan())
        self.watcher = DirWatcher(wake, name=f"inotify-{self.name}")
        self._watch()

    def _rule_for(self, path: str) -> MultilineRule | None:
        spec = self.multiline_for(path)
        if spec is None:
            return None
        rule = self._rules.get(spec)
        if rule is None:
            rule = self._rules[spec] = MultilineRule.of(spec)
        return rule

    def _watch(self) -> None:
        assert self.watcher is not None
        dirs = set(_glob_roots(self.settings.include))
        dirs.update(os.path.dirname(p) for p in self.tailer.current)
        self.watcher.watch(sorted(dirs))

    def _report(self, problems: list[str]) -> None:
        for problem in problems:
            if "compressed (" in problem:
                log.warning("%s: %s", self.name, problem)
                reason = "compressed"
            else:
                log.warning("%s: cannot read %s", self.name, problem)
                reason = "permission_denied" if "permission" in problem else "io_error"
            SOURCE_ERRORS.labels(self.name, reason).inc()

    def on_wake(self) -> None:
        now = self.clock()
        if now - self._last_rescan >= WAKE_RESCAN_MIN_S:
            self._last_rescan = now
            self._report(self.tailer.rescan())

    def on_tick(self) -> None:
        tailer = self.tailer
        self._sweeps += 1
        deep = self._sweeps % DEEP_CHECK_EVERY == 0
        if deep or not (self.watcher and self.watcher.active):
            self._report(tailer.rescan())
            self._watch()
        if deep:
            tailer.check_rotation(deep=True)  # each read does the shallow check
        SOURCE_FILES.labels(self.name).set(len(tailer.current))
        POSITIONS_LAG.labels(self.name).set(tailer.lag_bytes())

    def read(self) -> Reading:
        tailer = self.tailer
        tailer.check_rotation()
        result = tailer.poll()
        for kind in result.rotations:
            SOURCE_ROTATIONS.labels(self.name, kind).inc()
        for reason, count in self.joined.take().items():
            SOURCE_MULTILINE_ENTRIES.labels(self.name, reason).inc(count)
        updates: list[PositionsUpdate] = []
        if result.forget:
            updates.append(ForgetFiles(tuple(result.forget)))
        return Reading(result.entries, result.more, result.lines, result.bytes,
                       result.truncated_lines, updates)

    def ack(self, tokens: Sequence[ReadToken]) -> list[PositionsUpdate]:
        positions = self.tailer.ack(tokens)
        return [CommitFiles(tuple(positions))] if positions else []

    def rewind(self, selects: Callable[[str], bool]) -> int:
        return self.tailer.rewind(selects)

    def status(self) -> dict[str, Any]:
        tailer = self.tailer
        return {"files": tailer.describe(), "errors": dict(tailer.errors),
                "lag_bytes": tailer.lag_bytes(),
                "inotify": self.watcher.active if self.watcher else False,
                "multiline": dict(self.joined.total)}

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self._tailer is not None:
            self._tailer.close()
