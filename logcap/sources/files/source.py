"""FileSource: the :class:`~logcap.sources.base.Source` of one ``sources.files[]`` entry.

It runs a :class:`~logcap.sources.files.tailer.SourceTailer` (discovery, rotation, reading,
read window, commits) and adds the file source's own wake-ups:

* an inotify thread (:class:`~logcap.sources.files.watcher.DirWatcher`) on the glob roots and
  the directories of followed files calls ``wake``; :meth:`FileSource.on_wake` re-scans the
  globs (new files) when a name other than a followed file had an event, at most every
  ``WAKE_RESCAN_MIN_S``;
* each read ``stat`` s the paths that had directory events since the last read (every path
  without inotify, or after an overflow) and adopts the files the watcher opened at once; a
  wake also reopens the closed files among those paths that changed. The watcher wakes the
  source ``read_delay`` after the first event, and each read's entries carry when that
  event was seen (``Entries.seen``; kept for the next read while ``more`` is ready), from
  which the shard's batch deadline counts, and when it reads again at the earliest
  (``Entries.next_read_at``: now + ``read_delay``, the next event being still to come;
  None while ``more`` is ready or without inotify), so the shard need not wait for it;
* :meth:`FileSource.on_tick`, every ``SWEEP_INTERVAL_S``: a ``stat`` of every path (rotation,
  growth), idle files closed (``close_inactive``), closed files that changed reopened under
  ``max_open_files``; every ``DEEP_CHECK_EVERY`` ticks (and on every tick without inotify)
  also a re-scan of the globs and a fingerprint check (inode reuse). The fallback when
  inotify misses something. It also sets the files, open files and lag gauges.

Files it cannot read are logged once per new reason, counted
(``logcap_source_errors_total``), and listed in :meth:`status`; they never fail the source.

Timestamps (``journal_path``): each read's timestamps are recorded in the source's
:class:`~logcap.sources.files.timestamp_journal.TimestampJournal` before its lines are handed
on, and a read of bytes read before (after a crash, a restart or a rewind) gets the
timestamps they were sent with, so Loki absorbs the copies
(``logcap_source_timestamps_replayed_lines_total``). The journal is told each commit
and each file forgotten; its problems are logged as warnings.

Multi-line joining: ``multiline_for(path)`` gives the multiline spec of a path (None: lines as
they are); its files are read through a
:class:`~logcap.sources.files.joining.JoiningReader`, so every read is whole entries and
positions commit only whole entries. Entries closed are counted by reason
(``logcap_source_multiline_entries_total``, and ``multiline`` in :meth:`status`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from logcap.metrics import (
    POSITIONS_LAG,
    SOURCE_BINARY_RUNS,
    SOURCE_ERRORS,
    SOURCE_FILES,
    SOURCE_FILES_CLOSED,
    SOURCE_MULTILINE_ENTRIES,
    SOURCE_OPEN_FILES,
    SOURCE_ROTATIONS,
    SOURCE_TIMESTAMPS_REPLAYED,
)
from logcap.origin import FILE_KIND, Buffered, ReadToken
from logcap.sources.base import Reading
from logcap.sources.files.discovery import has_magic, matches
from logcap.sources.files.joining import JoinCounts, reader_factory
from logcap.sources.files.tailer import SourceTailer, TailerSettings
from logcap.sources.files.timestamp_journal import TimestampJournal
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
MOST_LAGGING_SHOWN = 50
"""Files listed in a status's ``most_lagging`` (the status page shows this many)."""
DEEP_CHECK_EVERY = 10
"""Every this many sweeps (and on every sweep without inotify): re-scan the globs, compare
fingerprints (inode reuse) and ``stat`` every path. Other sweeps ``stat`` only the paths whose
changes inotify may not show (:meth:`FileSource.on_tick`)."""
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
        drain_grace_s=source.rotate_wait,
        close_inactive_s=source.close_inactive,
        max_open_files=source.max_open_files,
        decompress=source.decompress,
        read_delay_s=source.read_delay,
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
                 journal_path: str | None = None,
                 ) -> None:
        self.name = settings.source
        self.journal_path = journal_path
        self.journal: TimestampJournal | None = None
        self._replayed_counted = 0
        self.settings = settings
        self.clock = clock
        self.multiline_for = multiline_for
        self._rules: dict[MultilineSpec, MultilineRule] = {}
        self.joined = JoinCounts()
        self._tailer: SourceTailer | None = None
        self.watcher: DirWatcher | None = None
        self._last_rescan = 0.0
        self._sweeps = 0
        self._rotations: Counter[str] = Counter()
        self._pending_touched: set[str] | None = None
        self._visible: frozenset[str] = frozenset()  # paths whose changes make events
        self._resumed: list[FilePosition] = []
        self._seen: float | None = None  # when the lines left to read were seen (monotonic)

    @property
    def tailer(self) -> SourceTailer:
        assert self._tailer is not None, "FileSource used before start()"
        return self._tailer

    def start(self, stored: Sequence[Any], buffered: Buffered,
              wake: Callable[[], None]) -> None:
        positions = [p for p in stored if isinstance(p, FilePosition)]
        make_reader = reader_factory(self.settings.max_line_bytes, self.settings.encoding,
                                     self._rule_for, self.joined, self.clock)
        if self.journal_path is not None:
            self.journal = self._open_journal(self.journal_path, positions)
        self._tailer = SourceTailer(self.settings, positions, clock=self.clock,
                                    buffered=buffered, make_reader=make_reader,
                                    journal=self.journal)
        self._report(self.tailer.rescan())
        self._resumed = self._moved({p.key: p.offset for p in positions})
        include, exclude = self.settings.include, self.settings.exclude
        self.watcher = DirWatcher(wake, name=f"inotify-{self.name}",
                                  wanted=lambda path: matches(path, include, exclude),
                                  delay_s=self.settings.read_delay_s)
        self._watch()
        if self.watcher.active:
            self._visible = self._seen_by_events()

    def _open_journal(self, path: str, positions: list[FilePosition]) -> TimestampJournal:
        """The source's timestamp journal, loaded, with what the stored positions committed
        dropped."""
        journal = TimestampJournal(path)
        loaded = journal.load()
        journal.commit_all(((pos.key, pos.offset) for pos in positions), durable=True)
        self._journal_problems(journal)
        if loaded:
            log.info("%s: timestamp journal %s: %d reads recorded, %d not yet committed",
                     self.name, path, loaded, journal.record_count)
        return journal

    def _journal_problems(self, journal: TimestampJournal) -> None:
        for problem in journal.take_problems():
            log.warning("%s: timestamp journal: %s", self.name, problem)

    def _journal_after_read(self, journal: TimestampJournal, forget: list[tuple[int, int]],
                            commits: list[FilePosition]) -> None:
        for key in forget:
            journal.forget(key)
        journal.commit_all((pos.key, pos.offset) for pos in commits)
        self._journal_problems(journal)
        if journal.replayed_lines != self._replayed_counted:
            SOURCE_TIMESTAMPS_REPLAYED.labels(self.name).inc(
                journal.replayed_lines - self._replayed_counted)
            self._replayed_counted = journal.replayed_lines

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
            if "corrupt compressed file (" in problem:
                log.warning("%s: %s", self.name, problem)
                reason = "compressed_corrupt"
            elif "truncated compressed file (" in problem:
                log.warning("%s: %s", self.name, problem)
                reason = "compressed_truncated"
            elif "compressed (" in problem:
                log.warning("%s: %s", self.name, problem)
                reason = "compressed"
            elif problem.startswith("max_open_files: "):
                log.warning("%s: %s", self.name, problem)
                reason = "max_open_files"
            else:
                log.warning("%s: cannot read %s", self.name, problem)
                reason = "permission_denied" if "permission" in problem else "io_error"
            SOURCE_ERRORS.labels(self.name, reason).inc()

    def on_wake(self) -> None:
        self._adopt()
        tailer = self.tailer
        touched = self._touched()
        now = self.clock()
        # A re-scan only when something other than a followed file had an event (a name that
        # appeared, moved or went): thousands of files being written cost no scan each time.
        unknown = touched is None or any(
            path not in tailer.current and path not in tailer.dormant for path in touched)
        if unknown and now - self._last_rescan >= WAKE_RESCAN_MIN_S:
            self._last_rescan = now
            self._report(tailer.rescan())
        tailer.sweep_dormant(touched)

    def _touched(self) -> set[str] | None:
        """The paths with directory events since the last read (None: look at every path);
        kept until the next read, which looks at them too."""
        fresh = self.watcher.take_touched() if self.watcher else None
        if fresh is None or self._pending_touched is None:
            self._pending_touched = None
        else:
            self._pending_touched |= fresh
        return self._pending_touched

    def _adopt(self) -> None:
        if self.watcher is not None:
            arrivals = self.watcher.take_arrivals()
            if arrivals:
                self._report(self.tailer.adopt(arrivals))

    def on_tick(self) -> None:
        tailer = self.tailer
        self._sweeps += 1
        deep = self._sweeps % DEEP_CHECK_EVERY == 0
        watching = self.watcher is not None and self.watcher.active
        if deep or not watching:
            stats: dict[str, os.stat_result] = {}  # the re-scan's: every path stat'ed once
            self._report(tailer.rescan(stats))
            self._watch()
            self._visible = self._seen_by_events() if watching else frozenset()
            # every path; a read looks at those with events
            tailer.check_rotation(deep=deep, stats=stats)
            tailer.close_idle()
            tailer.sweep_dormant(stats=stats)
        else:
            blind = self._blind_paths()
            tailer.check_rotation(paths=blind)
            tailer.close_idle()
            tailer.sweep_dormant(paths=blind)
        self._report(tailer.take_problems())
        for reason, count in tailer.take_closes().items():
            SOURCE_FILES_CLOSED.labels(self.name, reason).inc(count)
        SOURCE_FILES.labels(self.name).set(len(tailer.current) + len(tailer.dormant))
        SOURCE_OPEN_FILES.labels(self.name).set(tailer.open_count())
        POSITIONS_LAG.labels(self.name).set(tailer.lag_bytes())

    def _seen_by_events(self) -> frozenset[str]:
        """The followed paths (open or closed) whose changes inotify shows: not a symbolic
        link (a write to its target is an event in the target's directory), in a watched
        directory. Worked out at each deep sweep, right after its re-scan, whose ``lstat`` of
        every matched path says which are links (``tailer.links``)."""
        assert self.watcher is not None
        watcher = self.watcher
        tailer = self.tailer
        return frozenset(
            path for path in (*tailer.current, *tailer.dormant)
            if path not in tailer.links and watcher.watches(os.path.dirname(path)))

    def _blind_paths(self) -> set[str]:
        """The followed paths a sweep between deep ones still ``stat`` s: those not known to
        make events (symbolic links, unwatched directories, files first seen since the last
        deep sweep). The rest are looked at when their events wake a read, and at each deep
        sweep: a missed event costs at most ``DEEP_CHECK_EVERY`` seconds, never a line."""
        visible = self._visible
        tailer = self.tailer
        return {path for path in (*tailer.current, *tailer.dormant) if path not in visible}

    def read(self) -> Reading:
        tailer = self.tailer
        self._adopt()
        seen = self.watcher.take_seen() if self.watcher is not None else None
        if seen is not None and (self._seen is None or seen < self._seen):
            self._seen = seen
        tailer.check_rotation(paths=self._touched())
        self._pending_touched = set()
        self._report(tailer.take_problems())
        watcher = self.watcher
        next_read_at = self.clock() + watcher.delay_s \
            if watcher is not None and watcher.active else None
        result = tailer.poll(seen=self._seen, next_read_at=next_read_at)
        if result.more:  # read again at once: no batch should count on a pause
            result.entries = [dataclasses.replace(e, next_read_at=None) for e in result.entries]
        else:
            self._seen = None  # what is left was seen no earlier than the next event
        for kind in result.rotations:
            SOURCE_ROTATIONS.labels(self.name, kind).inc()
            self._rotations[kind] += 1
        if result.binary_chars:
            SOURCE_BINARY_RUNS.labels(self.name).inc(result.binary_chars)
        for reason, count in self.joined.take().items():
            SOURCE_MULTILINE_ENTRIES.labels(self.name, reason).inc(count)
        updates: list[PositionsUpdate] = []
        if result.forget:
            updates.append(ForgetFiles(tuple(result.forget)))
        if result.commits:
            updates.append(CommitFiles(tuple(result.commits)))
        if self.journal is not None:
            self._journal_after_read(self.journal, result.forget, result.commits)
        return Reading(result.entries, result.more, result.lines, result.bytes,
                       result.truncated_lines, updates, result.ack_reads)

    def ack(self, tokens: Sequence[ReadToken]) -> list[PositionsUpdate]:
        positions = self.tailer.ack(tokens)
        if self.journal is not None:
            self.journal.commit_all((pos.key, pos.offset) for pos in positions)
        return [CommitFiles(tuple(positions))] if positions else []

    def rewind(self, selects: Callable[[str], bool], buffered: Buffered | None = None) -> int:
        before = {gen.key: gen.committed for gen in self._open_generations()}
        dropped = self.tailer.rewind(selects, buffered)
        self._resumed.extend(self._moved(before))
        return dropped

    def take_updates(self) -> list[PositionsUpdate]:
        """The positions a start or a rewind moved past the disk buffer's ranges. Committed
        at once: those bytes are fsynced in the buffer (it syncs before it answers
        ``ResumeRanges``). Left to the next ack, a source restarted again and again before
        any ack (a storm of crashes) resumed from an ever older positions file, until its
        offset fell out of the buffer's resume window and tens of thousands of lines were
        read again with new timestamps."""
        updates: list[PositionsUpdate] = [CommitFiles(tuple(self._resumed))] \
            if self._resumed else []
        self._resumed = []
        return updates

    def _open_generations(self) -> list[Any]:
        tailer = self.tailer
        return [gen for gen in [*tailer.retired, *tailer.current.values()]
                if not gen.exhausted]

    def _moved(self, before: dict[tuple[int, int], int]) -> list[FilePosition]:
        """Positions of the open generations whose committed offset is past ``before``
        (by ``(dev, ino)``)."""
        now = self.tailer.wall()
        return [gen.position(now) for gen in self._open_generations()
                if gen.committed > before.get(gen.key, gen.committed)]

    def status(self) -> dict[str, Any]:
        """Counts, not per-file rows (``/health`` asks this of every source each time; the
        rows are :meth:`SourceTailer.describe`)."""
        tailer = self.tailer
        return {"errors": dict(tailer.errors), "unmatched_includes": list(tailer.unmatched),
                "files": len(tailer.current) + len(tailer.dormant)
                + len(tailer.waiting), "open_files": tailer.open_count(),
                "closed_files": len(tailer.dormant), "waiting_files": len(tailer.waiting),
                "rotated_files_draining": len(tailer.retired), "lag_bytes": tailer.lag_bytes(),
                "inflight_bytes": tailer.inflight_bytes,
                "binary_bytes_dropped": tailer.binary_chars(),
                "most_lagging": tailer.most_lagging(MOST_LAGGING_SHOWN),
                "rotations": dict(self._rotations),
                "inotify": self.watcher.active if self.watcher else False,
                "multiline": dict(self.joined.total),
                "timestamps_replayed": self.journal.replayed_lines if self.journal else 0}

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self._tailer is not None:
            self._tailer.close()
        if self.journal is not None:
            self.journal.close()
