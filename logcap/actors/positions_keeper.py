"""PositionsKeeper: owns the :class:`~logcap.state.positions.PositionsStore`.

Messages taken (all control lane; the first three are defined in
:mod:`logcap.state.positions_messages`, where sources build them):

* :class:`CommitFiles` — positions that became safe (every line before them is delivered);
  kept in memory and appended to the positions log at once (a process crash keeps them),
  the snapshot written when the store says so (``flush_interval`` elapsed,
  ``max_memory_buffer`` updates pending, or the log large), checked on each commit and on a
  timer that runs only while memory holds changes not yet in the snapshot (an idle keeper
  has no wake-ups).
* :class:`ForgetFiles` — files fully drained after a rotation: drop their entries.
* :class:`GetFilePositions` (ask) — the stored file positions, for a source that starts.
* :class:`CommitContainers`, :class:`ForgetContainers`, :class:`GetContainerPositions` — the
  same for container cursors (``container_positions.json``). Cleanup keeps the entries of
  files and containers committed in this process life, however old.
* :class:`RecordContainers` (asked by the source shell) — containers just followed, with
  their starting cursors: recorded and written at once, before the answer (True if the write
  succeeded; a failed one is retried like any other).
* :class:`Snapshot` (ask) — every position, with the file's current size and lag, for
  ``GET /positions``.
* :class:`~logcap.runtime.health.CheckHealth` (ask) — ``degraded`` from the first failed
  write until one succeeds (the reason names the directory and the error).

On start it loads the store (the snapshot, then the log replayed over it); a corrupt file is
set aside and the backup used (or the store starts empty), with a loud log line per problem;
never a crash loop. On stop it flushes
(``force_flush_on_exit``). A failed write (ENOSPC, EROFS, EACCES) is retried at the next flush;
the entries stay in memory. The first failure is logged at once, then a summary every
:data:`FAILURE_SUMMARY_INTERVAL_S` while writes keep failing, and one line when one succeeds.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from logcap.metrics import POSITIONS_FLUSHES
from logcap.runtime.actor import LogcapActor
from logcap.runtime.health import FIRST, RECOVERED, STILL, CheckHealth, FailureStreak
from logcap.runtime.timers import Scheduler
from logcap.state.positions import PositionsStore
from logcap.state.positions_messages import (
    CommitContainers,
    CommitFiles,
    ForgetContainers,
    ForgetFiles,
    GetContainerPositions,
    GetFilePositions,
    RecordContainers,
)

__all__ = ["PositionsKeeper", "Snapshot"]

log = logging.getLogger(__name__)

FLUSH_CHECK_MIN_S = 0.05
FAILURE_SUMMARY_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    pass


@dataclass(frozen=True, slots=True)
class _FlushTick:
    pass


@dataclass(frozen=True, slots=True)
class _CleanupTick:
    pass


class PositionsKeeper(LogcapActor):
    def __init__(self, settings: Any, scheduler: Scheduler, **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.scheduler = scheduler
        self.store = PositionsStore(
            settings.directory,
            flush_interval_s=settings.flush_interval,
            max_memory_buffer=settings.max_memory_buffer,
            max_position_age_s=settings.max_position_age,
        )
        self.live: set[tuple[int, int]] = set()
        self.live_containers: set[str] = set()
        self.write_failures = FailureStreak(FAILURE_SUMMARY_INTERVAL_S)
        self._flush_timer_armed = False

    def handle_start(self) -> None:
        report = self.store.load()
        for problem in report.problems:
            log.error("positions: %s", problem)
        log.info("positions loaded from %s: %d files (%s), %d containers (%s), %d commits "
                 "replayed from the positions log", self.settings.directory,
                 len(self.store.files()), report.files.source, len(self.store.containers()),
                 report.containers.source, report.log_records)
        self._arm_flush()
        self.scheduler.call_later(self.settings.cleanup_interval, self.actor_ref, _CleanupTick())

    def _arm_flush(self) -> None:
        """Schedule the flush check if memory holds unwritten changes and none is pending:
        a change waits at most ``flush_interval`` (``FLUSH_CHECK_MIN_S`` at least) for its
        snapshot, a failed write is retried at that pace, and nothing ticks while clean."""
        if self._flush_timer_armed or not self.store.dirty:
            return
        self._flush_timer_armed = True
        interval = max(FLUSH_CHECK_MIN_S, self.settings.flush_interval)
        self.scheduler.call_later(interval, self.actor_ref, _FlushTick())

    def _flush(self) -> bool:
        """Write what changed; False if the write failed (kept in memory, retried)."""
        streak = self.write_failures
        try:
            written = self.store.flush()
        except OSError as exc:
            said = streak.failed(time.time(), exc.strerror or type(exc).__name__, str(exc))
            if said == FIRST:
                log.error("positions: writing to %s failed: %s (kept in memory, retried)",
                          self.settings.directory, exc)
            elif said == STILL:
                log.error("positions: writes to %s still failing after %.0fs: %s; last: %s",
                          self.settings.directory, streak.duration(time.time()),
                          streak.summary(), exc)
            return False
        lasted, summary = streak.duration(time.time()), streak.summary()
        if streak.succeeded() == RECOVERED:
            log.info("positions: written to %s again after %.0fs of failures (%s)",
                     self.settings.directory, lasted, summary)
        if written:
            POSITIONS_FLUSHES.inc(written)
        return True

    def _check_log(self) -> None:
        """Say once that the positions log broke (it is reopened at the next flush)."""
        error = self.store.take_log_error()
        if error is not None:
            log.error("positions: appending to the positions log in %s failed: %s (commits "
                      "are kept in memory and written with the next snapshot)",
                      self.settings.directory, error)

    def handle(self, message: Any) -> Any:
        if isinstance(message, CommitFiles):
            for pos in message.positions:
                self.store.commit_file(pos)
                self.live.add(pos.key)
            self._check_log()
            if self.store.should_flush():
                self._flush()
        elif isinstance(message, ForgetFiles):
            for key in message.keys:
                self.store.forget_file(*key)
                self.live.discard(key)
        elif isinstance(message, CommitContainers):
            for cpos in message.positions:
                self.store.commit_container(cpos)
                self.live_containers.add(cpos.id)
            self._check_log()
            if self.store.should_flush():
                self._flush()
        elif isinstance(message, RecordContainers):
            for cpos in message.positions:
                self.store.commit_container(cpos)
                self.live_containers.add(cpos.id)
            written = self._flush() if self.store.dirty else True
            self._arm_flush()  # a failed write is retried by the flush timer
            return written
        elif isinstance(message, ForgetContainers):
            for cid in message.ids:
                self.store.forget_container(cid)
                self.live_containers.discard(cid)
        elif isinstance(message, GetContainerPositions):
            return self.store.containers()
        elif isinstance(message, _FlushTick):
            self._flush_timer_armed = False
            if self.store.should_flush():
                self._flush()
        elif isinstance(message, _CleanupTick):
            dropped = self.store.cleanup(keep_files=self.live,
                                         keep_containers=self.live_containers)
            if dropped:
                log.info("positions: %d stale entries dropped", dropped)
            self.scheduler.call_later(self.settings.cleanup_interval, self.actor_ref,
                                      _CleanupTick())
        elif isinstance(message, GetFilePositions):
            return self.store.files()
        elif isinstance(message, Snapshot):
            return self._snapshot()
        elif isinstance(message, CheckHealth):
            return self.write_failures.health(time.time(), 0.0,
                                              f"writes to {self.settings.directory}")
        else:
            return super().handle(message)
        self._arm_flush()
        return None

    def _snapshot(self) -> dict[str, Any]:
        snap = self.store.snapshot()
        for row in snap["files"]:
            try:
                st = os.stat(row["path"])
                same = (st.st_dev, st.st_ino) == (row["dev"], row["ino"])
                row["size"] = st.st_size if same else None
                row["lag_bytes"] = max(0, st.st_size - row["offset"]) if same else None
            except OSError:
                row["size"] = None
                row["lag_bytes"] = None
        return snap

    def handle_stop(self) -> None:
        try:
            if self.settings.force_flush_on_exit and self.store.dirty:
                self._flush()
        finally:
            self.store.close()

    def handle_crash(self) -> None:
        """Close the positions log: what it holds is replayed by the next incarnation."""
        self.store.close()
