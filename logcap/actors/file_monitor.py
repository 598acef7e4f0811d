"""FileMonitor: the actor of one ``sources.files[]`` entry; runs a :class:`SourceTailer`.

Messages taken (control lane unless noted):

* ``_Wake`` — from the inotify thread (coalesced): something changed in a watched directory.
* ``_Sweep`` — timer, every ``SWEEP_INTERVAL_S``: ``stat`` of every path (rotation, growth) and
  metrics; every ``DEEP_CHECK_EVERY`` sweeps also a re-scan of the globs and a fingerprint
  check (inode reuse). The fallback when inotify misses something.
* ``_Pump`` — to itself: keep reading while there is data and window room.
* :class:`~logcap.messages.Acked` — from shards: settled reads; the advanced positions go to
  the PositionsKeeper, and the freed window lets reading continue.
* :class:`~logcap.messages.Rewind` — a shard restarted: re-read what was in flight to it.
* :class:`SourceStatus` (ask) — files followed, problems, lag.
* :class:`StopReading` (ask) — the agent is stopping: read nothing more (acks are still
  taken, so positions reach what was delivered); lasts until the actor stops.

Backpressure: entries go to the shard chosen by a stable hash of the file path (one file, one
shard, so its lines stay in order). A full shard refuses at once; the monitor keeps the
refused entries, stops reading, and offers them again on a timer. Unacknowledged reads are
bounded per file and per source, so a down sink stops the reading, not the memory.

On start: asks the PositionsKeeper for stored positions (and, with the disk buffer on, the
buffer for the byte ranges it holds durably, which may be ahead of the positions file), scans,
opens files, starts the inotify thread. On stop: closes the watcher and the files (positions
are the keeper's).
A crash loses only in-memory reads, which were not committed: the restarted monitor reads
them again from the committed positions.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from dataclasses import dataclass
from typing import Any

from logcap.actors.disk_buffer import ResumeRanges
from logcap.actors.positions_keeper import CommitFiles, ForgetFiles, GetFilePositions
from logcap.messages import Acked, Entries, Rewind
from logcap.metrics import (
    POSITIONS_LAG,
    SOURCE_BYTES,
    SOURCE_ERRORS,
    SOURCE_FILES,
    SOURCE_LINES,
    SOURCE_PAUSES,
    SOURCE_ROTATIONS,
    SOURCE_TRUNCATED,
)
from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Handle
from logcap.runtime.mailbox import DeliveryRefused
from logcap.runtime.timers import Scheduler
from logcap.sources.files.discovery import has_magic
from logcap.sources.files.tailer import (
    SourceTailer,
    TailerSettings,
    generation_of,
)
from logcap.sources.files.watcher import DirWatcher

__all__ = ["PAUSE_S", "SWEEP_INTERVAL_S", "FileMonitor", "SourceStatus", "StopReading",
           "monitor_settings", "shard_index"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 1.0
DEEP_CHECK_EVERY = 10
"""Every this many sweeps (and on every sweep without inotify): re-scan the globs and compare
fingerprints (inode reuse). Other sweeps only ``stat`` the paths (rotation, growth)."""
PAUSE_S = 0.02
"""How long a monitor waits before offering refused entries again."""
POSITIONS_ASK_TIMEOUT_S = 10.0
WAKE_RESCAN_MIN_S = 0.2
"""A directory event re-scans the globs (new files) at most this often."""


@dataclass(frozen=True, slots=True)
class StopReading:
    """Ask: read nothing more until stopped (the agent's drain before a stop)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    pass


@dataclass(frozen=True, slots=True)
class _Wake:
    pass


@dataclass(frozen=True, slots=True)
class _Sweep:
    pass


@dataclass(frozen=True, slots=True)
class _Pump:
    pass


def shard_index(path: str, shards: int) -> int:
    """The shard of a stream: a stable hash, so one file always goes to one shard."""
    return zlib.crc32(path.encode("utf-8", "surrogateescape")) % shards


def monitor_settings(source: Any, config: Any) -> TailerSettings:
    """TailerSettings from a ``sources.files[]`` entry and the dispatcher section."""
    return TailerSettings(
        source=source.name,
        include=tuple(source.include),
        exclude=tuple(source.exclude),
        labels=tuple(sorted(dict(source.labels).items())),
        start_at=source.start_at,
        max_line_bytes=source.max_line_bytes,
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


class FileMonitor(LogcapActor):
    def __init__(
        self,
        settings: TailerSettings,
        shards: list[Handle],
        positions: Handle | None,
        scheduler: Scheduler,
        buffer: Handle | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.buffer = buffer
        self.settings = settings
        self.shards = shards
        self.positions = positions
        self.scheduler = scheduler
        self.tailer: SourceTailer | None = None
        self.watcher: DirWatcher | None = None
        self._pending: list[Entries] = []
        self._wake_sent = False
        self._pump_sent = False
        self._paused = False
        self._stopped_reading = False
        self._last_rescan = 0.0
        self._sweeps = 0

    # -- lifecycle -------------------------------------------------------------------------

    def handle_start(self) -> None:
        stored = []
        if self.positions is not None:
            stored = self.positions.ask(GetFilePositions(), timeout=POSITIONS_ASK_TIMEOUT_S)
        buffered = None
        if self.buffer is not None:
            buffered = self.buffer.ask(ResumeRanges(self.settings.source),
                                       timeout=POSITIONS_ASK_TIMEOUT_S)
        self.tailer = SourceTailer(self.settings, stored, buffered=buffered)
        self._report(self.tailer.rescan())
        self.watcher = DirWatcher(self._on_fs_event, name=f"inotify-{self.settings.source}")
        self._watch()
        self.scheduler.call_later(SWEEP_INTERVAL_S, self.actor_ref, _Sweep())
        self._pump()

    def handle_stop(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.tailer is not None:
            self.tailer.close()

    def _on_fs_event(self) -> None:
        """Called in the inotify thread."""
        if not self._wake_sent:
            self._wake_sent = True
            self.actor_ref.tell(_Wake())

    def _watch(self) -> None:
        assert self.tailer is not None and self.watcher is not None
        dirs = set(_glob_roots(self.settings.include))
        dirs.update(os.path.dirname(p) for p in self.tailer.current)
        self.watcher.watch(sorted(dirs))

    # -- messages --------------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        tailer = self.tailer
        assert tailer is not None
        if isinstance(message, StopReading):
            self._stopped_reading = True
        elif isinstance(message, _Wake):
            self._wake_sent = False
            now = time.monotonic()
            if now - self._last_rescan >= WAKE_RESCAN_MIN_S:
                self._last_rescan = now
                self._report(tailer.rescan())
            self._pump()
        elif isinstance(message, _Pump):
            self._pump_sent = False
            self._paused = False
            self._pump()
        elif isinstance(message, Acked):
            positions = tailer.ack(message.tokens)
            if positions and self.positions is not None:
                self._tell_keeper(CommitFiles(tuple(positions)))
            self._pump()
        elif isinstance(message, Rewind):
            self._rewind(message.shard)
        elif isinstance(message, _Sweep):
            self._sweep()
        elif isinstance(message, SourceStatus):
            return {"source": self.settings.source, "files": tailer.describe(),
                    "errors": dict(tailer.errors), "lag_bytes": tailer.lag_bytes(),
                    "inotify": self.watcher.active if self.watcher else False}
        else:
            return super().handle(message)
        return None

    def _tell_keeper(self, message: Any) -> None:
        assert self.positions is not None
        try:
            self.positions.tell(message)
        except DeliveryRefused:
            log.warning("%s: positions keeper unavailable; commit postponed to the next ack",
                        self.settings.source)

    def _sweep(self) -> None:
        tailer = self.tailer
        assert tailer is not None
        self._sweeps += 1
        deep = self._sweeps % DEEP_CHECK_EVERY == 0
        if deep or not (self.watcher and self.watcher.active):
            self._report(tailer.rescan())
            self._watch()
        if deep:
            tailer.check_rotation(deep=True)  # the pump below does the shallow check
        source = self.settings.source
        SOURCE_FILES.labels(source).set(len(tailer.current))
        POSITIONS_LAG.labels(source).set(tailer.lag_bytes())
        self.scheduler.call_later(SWEEP_INTERVAL_S, self.actor_ref, _Sweep())
        self._pump()

    def _report(self, problems: list[str]) -> None:
        for problem in problems:
            log.warning("%s: cannot read %s", self.settings.source, problem)
            reason = "permission_denied" if "permission" in problem else "io_error"
            SOURCE_ERRORS.labels(self.settings.source, reason).inc()

    def _rewind(self, shard_name: str) -> None:
        tailer = self.tailer
        assert tailer is not None
        names = [h.name for h in self.shards]
        if shard_name not in names:
            return
        index = names.index(shard_name)
        n = len(self.shards)
        dropped = tailer.rewind(lambda path: shard_index(path, n) == index)
        stale = {g.gen_id: g.epoch for g in tailer.generations.values()}
        self._pending = [e for e in self._pending
                         if stale.get(generation_of(e.token)) == e.token.epoch]
        if dropped:
            log.info("%s: %s restarted; re-reading %d unacknowledged batches",
                     self.settings.source, shard_name, dropped)
        self._pump()

    # -- reading ---------------------------------------------------------------------------

    def _send_pending(self) -> bool:
        """Offer held entries in order; False if a shard refused (then we pause)."""
        n = len(self.shards)
        while self._pending:
            entries = self._pending[0]
            try:
                self.shards[shard_index(entries.stream, n)].tell(entries)
            except DeliveryRefused:
                return False
            self._pending.pop(0)
        return True

    def _pump(self) -> None:
        if self._paused or self._stopped_reading:
            return
        tailer = self.tailer
        assert tailer is not None
        if not self._send_pending():
            self._pause()
            return
        tailer.check_rotation()
        result = tailer.poll()
        source = self.settings.source
        if result.lines:
            SOURCE_LINES.labels(source).inc(result.lines)
            SOURCE_BYTES.labels(source).inc(result.bytes)
        if result.truncated_lines:
            SOURCE_TRUNCATED.labels(source).inc(result.truncated_lines)
        for kind in result.rotations:
            SOURCE_ROTATIONS.labels(source, kind).inc()
        if result.forget and self.positions is not None:
            self._tell_keeper(ForgetFiles(tuple(result.forget)))
        self._pending.extend(result.entries)
        if not self._send_pending():
            self._pause()
            return
        if result.more and not self._pump_sent:
            self._pump_sent = True
            self.actor_ref.tell(_Pump())

    def _pause(self) -> None:
        SOURCE_PAUSES.labels(self.settings.source).inc()
        self._paused = True
        if not self._pump_sent:
            self._pump_sent = True
            self.scheduler.call_later(PAUSE_S, self.actor_ref, _Pump())
