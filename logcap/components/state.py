"""The state kinds, in the ``state`` group (one_for_all, started first): the positions keeper,
the disk buffer (``disk_buffer.enabled``; with ``batch_persistence`` its in-flight records)
and the DLQ (``dispatcher.dlq_enabled``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykka import ActorRef

from logcap.actors.dead_letters import DeadLetterQueue
from logcap.actors.disk_buffer import DEFAULT_RESUME_WINDOW_S, DiskBuffer
from logcap.actors.positions_keeper import PositionsKeeper
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import BUFFER, DLQ, POSITIONS, Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec, StartContext
from logcap.state.buffer.crypto import KeyLoadError, cipher_from_settings
from logcap.state.buffer.recovery import BufferDirectoryError
from logcap.state.buffer.segments import SegmentStore
from logcap.state.dlq import DeadLetterStore
from logcap.state.inflight import InflightBatches

__all__ = ["DLQ_LOCK_FILE", "POSITIONS_LOCK_FILE", "DiskBufferKind", "DlqKind", "PositionsKind",
           "segment_store_for"]

POSITIONS_LOCK_FILE = "positions.lock"
DLQ_LOCK_FILE = "dlq.lock"
"""Held by ``logcap run`` for its life; the disk buffer's store locks ``buffer.lock`` itself."""


def _worker(instance: Instance, config: Config, start: Any) -> ChildSpec:
    return ChildSpec(id=instance.name, start=start,
                     shutdown_s=config.supervision.shutdown_timeout)


class PositionsKind(ComponentKind):
    kind = "positions"
    group = "state"

    def instances(self, config: Config) -> list[Instance]:
        pc = config.positions
        return [Instance(self.kind, POSITIONS, pc, "positions")] if pc.enabled else []

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        pc = instance.settings

        def start(ctx: StartContext) -> ActorRef[Any]:
            return PositionsKeeper.start(pc, ctx.scheduler, link=ctx.link, name=ctx.name,
                                         directory=ctx.directory)

        return _worker(instance, wiring.config, start)

    def directories(self, instance: Instance, config: Config) -> list[tuple[str, str]]:
        return [("positions.directory", instance.settings.directory)]

    def locks(self, instance: Instance, config: Config) -> list[tuple[str, str, str]]:
        return [("positions.directory", instance.settings.directory, POSITIONS_LOCK_FILE)]

    def describe(self, instance: Instance) -> str:
        return str(instance.settings.directory)


def segment_store_for(config: Config, sinks: list[str]) -> SegmentStore:
    """The disk buffer's store for ``config`` with a cursor per sink in ``sinks`` (not opened);
    raises KeyLoadError for a bad key."""
    db = config.disk_buffer
    enc = db.encryption
    cipher = cipher_from_settings(enabled=enc.enabled, key_env=enc.key_env,
                                  key_file=enc.key_file)
    return SegmentStore(db.directory, sinks, max_file_size=db.max_file_size,
                        max_total_size=db.max_total_size,
                        max_files=db.max_files or None,
                        compression_level=db.compression_level,
                        retention_period_s=db.retention_period,
                        when_full="drop_oldest" if db.when_full == "drop_oldest" else "block",
                        cipher=cipher)


class DiskBufferKind(ComponentKind):
    """The shards' only sink when enabled; it feeds every sink from its own cursor."""

    kind = "disk_buffer"
    group = "state"

    def __init__(self, sink_names: Callable[[Config], list[str]]) -> None:
        self._sink_names = sink_names  # the registry's: the enabled sinks' names

    def instances(self, config: Config) -> list[Instance]:
        db = config.disk_buffer
        return [Instance(self.kind, BUFFER, db, "disk_buffer")] if db.enabled else []

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        config = wiring.config
        sinks = wiring.sinks()
        d = config.dispatcher
        bp = config.batch_persistence
        window = max(DEFAULT_RESUME_WINDOW_S, 3 * config.positions.flush_interval)

        def start(ctx: StartContext) -> ActorRef[Any]:
            batches = None
            if bp.enabled:  # read afresh on each start: the file is the truth after a crash
                batches = InflightBatches(bp.directory,
                                          max_recovery_retries=bp.max_recovery_retries,
                                          batch_ttl_s=bp.batch_ttl,
                                          batch_timeout_s=bp.batch_timeout)
            store = segment_store_for(config, list(sinks))
            return DiskBuffer.start(config.disk_buffer, store, sinks, ctx.scheduler,
                                    d.retry_base_delay, d.retry_max_delay, window, batches,
                                    wiring.state(DLQ), link=ctx.link, name=ctx.name,
                                    directory=ctx.directory, mailbox_capacity=d.queue_size)

        return _worker(instance, config, start)

    def directories(self, instance: Instance, config: Config) -> list[tuple[str, str]]:
        out = [("disk_buffer.directory", instance.settings.directory)]
        if config.batch_persistence.enabled:
            out.append(("batch_persistence.directory", config.batch_persistence.directory))
        return out

    def preflight(self, instance: Instance, config: Config) -> list[str]:
        """Open the buffer once (recovery runs, records under another key are found)."""
        try:
            store = segment_store_for(config, self._sink_names(config))
        except KeyLoadError as exc:
            return [f"disk_buffer.encryption: {exc}"]
        try:
            report = store.open()
        except BufferDirectoryError as exc:
            return [f"disk_buffer.directory: {exc}"]
        finally:
            store.close()
        if report.key_problems:
            return ["disk_buffer.encryption: " + "; ".join(report.key_problems)]
        return []

    def describe(self, instance: Instance) -> str:
        return f"disk ({instance.settings.directory})"


class DlqKind(ComponentKind):
    """Lines a sink rejected for good; re-sent on POST /dlq/reprocess."""

    kind = "dlq"
    group = "state"

    def instances(self, config: Config) -> list[Instance]:
        return [Instance(self.kind, DLQ, config.dlq, "dlq")] \
            if config.dispatcher.dlq_enabled else []

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        dc = instance.settings
        d = wiring.config.dispatcher
        sinks = wiring.sinks()

        def start(ctx: StartContext) -> ActorRef[Any]:
            store = DeadLetterStore(dc.directory, dc.max_total_size, dc.retention_period)
            return DeadLetterQueue.start(store, sinks, ctx.scheduler,
                                         retry_base_delay_s=d.retry_base_delay,
                                         retry_max_delay_s=d.retry_max_delay,
                                         link=ctx.link, name=ctx.name,
                                         directory=ctx.directory)

        return _worker(instance, wiring.config, start)

    def directories(self, instance: Instance, config: Config) -> list[tuple[str, str]]:
        return [("dlq.directory", instance.settings.directory)]

    def locks(self, instance: Instance, config: Config) -> list[tuple[str, str, str]]:
        return [("dlq.directory", instance.settings.directory, DLQ_LOCK_FILE)]

    def describe(self, instance: Instance) -> str:
        return str(instance.settings.directory)
