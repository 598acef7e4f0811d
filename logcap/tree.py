"""The supervision tree of DESIGN.md §2, built from a :class:`~logcap.config.Config`.

```
root                  rest_for_one
├── state             one_for_all:  positions, buffer (disk_buffer.enabled), dlq
├── sinks             one_for_one:  file, loki (those enabled)
├── dispatchers       one_for_one:  shard-0 .. shard-N-1
├── sources           one_for_one:  one FileMonitor per sources.files[] entry
└── admin             AdminServer (Flask app on waitress)
```

Names in the :class:`~logcap.runtime.directory.Directory` are the qualified child names, e.g.
``root/sinks/loki``; producers hold handles to those names. Every actor is started with the
directory, so it has its own stable address: senders put it in ``Deliver.reply_to`` and watch
their sinks' names with it. No receiver is given a list of its senders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pykka import ActorRef

from logcap.actors.dead_letters import DeadLetterQueue
from logcap.actors.disk_buffer import BUFFER_SINK, DEFAULT_RESUME_WINDOW_S, DiskBuffer
from logcap.actors.file_monitor import FileMonitor, monitor_settings
from logcap.actors.positions_keeper import PositionsKeeper
from logcap.actors.shard import DispatcherShard, ShardSettings
from logcap.actors.sink import SinkActor
from logcap.api.server import AdminServer
from logcap.config import Config
from logcap.dispatch.dedup import DeliveredRanges
from logcap.runtime.childspec import ChildSpec, StartContext, Strategy, SupFlags
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.supervisor import Supervisor
from logcap.sinks.file import FileSink
from logcap.sinks.loki.service import LokiService
from logcap.sources.files.tailer import TailerSettings
from logcap.state.buffer.crypto import cipher_from_settings
from logcap.state.buffer.segments import SegmentStore
from logcap.state.dlq import DeadLetterStore
from logcap.state.inflight import InflightBatches

if TYPE_CHECKING:
    from logcap.api.app import AdminBackend

__all__ = ["POSITIONS", "ROOT", "build_root_children", "root_flags", "shard_names",
           "sink_names", "source_names"]

ROOT = "root"
POSITIONS = "root/state/positions"
BUFFER = "root/state/buffer"
DLQ = "root/state/dlq"


def root_flags(config: Config, strategy: Strategy) -> SupFlags:
    sup = config.supervision
    return SupFlags(
        strategy=strategy,
        intensity=sup.intensity,
        period_s=sup.period,
        backoff_min_s=sup.backoff_min,
        backoff_max_s=sup.backoff_max,
        backoff_reset_s=sup.backoff_reset,
        ping_interval_s=sup.ping_interval,
        ping_timeout_s=sup.ping_timeout,
    )


def sink_names(config: Config) -> list[str]:
    names = []
    if config.sinks.file.enabled:
        names.append("file")
    if config.sinks.loki.enabled:
        names.append("loki")
    return names


def shard_names(config: Config) -> list[str]:
    return [f"{ROOT}/dispatchers/shard-{i}" for i in range(config.dispatcher.shards)]


def source_names(config: Config) -> list[str]:
    return [f"{ROOT}/sources/{s.name}" for s in config.sources.files]


def _supervisor(child_id: str, config: Config, strategy: Strategy,
                children: list[ChildSpec]) -> ChildSpec:
    def start(ctx: StartContext) -> ActorRef[Any]:
        return Supervisor.start(name=ctx.name, flags=root_flags(config, strategy),
                                children=children, directory=ctx.directory,
                                scheduler=ctx.scheduler, link=ctx.link)

    return ChildSpec(id=child_id, start=start, supervisor=True,
                     shutdown_s=config.supervision.shutdown_timeout * 2)


def _worker(child_id: str, config: Config, start: Callable[[StartContext], ActorRef[Any]],
            ping_timeout_s: float | None = None) -> ChildSpec:
    return ChildSpec(id=child_id, start=start, shutdown_s=config.supervision.shutdown_timeout,
                     ping_timeout_s=ping_timeout_s)


def _handles(directory: Directory, names: list[str]) -> Callable[[], list[Handle]]:
    handles = [directory.handle(n) for n in names]
    return lambda: handles


def _sink_specs(config: Config, directory: Directory) -> list[ChildSpec]:
    dlq = directory.handle(DLQ) if config.dispatcher.dlq_enabled else None
    dd = config.deduplication

    def dedup() -> DeliveredRanges | None:  # one memory per sink incarnation
        return DeliveredRanges(dd.window, dd.max_entries) if dd.enabled else None
    capacity = config.dispatcher.queue_size
    specs = []
    if config.sinks.file.enabled:
        fc = config.sinks.file

        def start_file(ctx: StartContext) -> ActorRef[Any]:
            return SinkActor.start(
                "file", lambda: FileSink(fc.directory, fc.format, fc.max_file_size, fc.max_files),
                dlq, dedup(), link=ctx.link, name=ctx.name, directory=ctx.directory,
                mailbox_capacity=capacity)

        specs.append(_worker("file", config, start_file))
    if config.sinks.loki.enabled:
        lc = config.sinks.loki

        def start_loki(ctx: StartContext) -> ActorRef[Any]:
            return SinkActor.start("loki", lambda: LokiService(lc), dlq, dedup(),
                                   link=ctx.link, name=ctx.name, directory=ctx.directory,
                                   mailbox_capacity=capacity)

        # A push may legitimately take the request timeout, times a 413 split or two.
        specs.append(_worker("loki", config, start_loki,
                             ping_timeout_s=max(config.supervision.ping_timeout, lc.timeout * 4)))
    return specs


def _shard_specs(config: Config, directory: Directory) -> list[ChildSpec]:
    d = config.dispatcher
    batch_size, batch_timeout = d.batch_size, d.batch_timeout
    if config.sinks.loki.enabled:  # a shard's batch is one push request: Loki's caps apply
        batch_size = min(batch_size, config.sinks.loki.batch_size)
        batch_timeout = min(batch_timeout, config.sinks.loki.batch_wait)
    settings = ShardSettings(batch_size, batch_timeout, d.max_retries, d.retry_base_delay,
                             d.retry_max_delay)
    sinks = {name: directory.handle(f"{ROOT}/sinks/{name}") for name in sink_names(config)}
    if config.disk_buffer.enabled:  # the buffer is the shards' only sink; it feeds the sinks
        sinks = {BUFFER_SINK: directory.handle(BUFFER)}
    sources = _handles(directory, source_names(config))
    specs = []
    for i in range(d.shards):
        def start(ctx: StartContext) -> ActorRef[Any]:
            return DispatcherShard.start(settings, sinks, sources, ctx.scheduler, link=ctx.link,
                                         name=ctx.name, directory=ctx.directory,
                                         mailbox_capacity=d.queue_size)

        specs.append(_worker(f"shard-{i}", config, start))
    return specs


def _source_specs(config: Config, directory: Directory) -> list[ChildSpec]:
    shards = [directory.handle(n) for n in shard_names(config)]
    positions = directory.handle(POSITIONS) if config.positions.enabled else None
    buffer = directory.handle(BUFFER) if config.disk_buffer.enabled else None
    specs = []
    for source in config.sources.files:
        settings = monitor_settings(source, config)

        def start(ctx: StartContext, settings: TailerSettings = settings) -> ActorRef[Any]:
            return FileMonitor.start(settings, shards, positions, ctx.scheduler, buffer,
                                     link=ctx.link, name=ctx.name)

        specs.append(_worker(source.name, config, start))
    return specs


def make_segment_store(config: Config) -> SegmentStore:
    """The disk buffer's store for ``config`` (not opened); raises KeyLoadError for a bad key."""
    db = config.disk_buffer
    enc = db.encryption
    cipher = cipher_from_settings(enabled=enc.enabled, key_env=enc.key_env,
                                  key_file=enc.key_file)
    return SegmentStore(db.directory, sink_names(config), max_file_size=db.max_file_size,
                        max_total_size=db.max_total_size,
                        max_files=db.max_files or None,
                        compression_level=db.compression_level,
                        retention_period_s=db.retention_period,
                        when_full="drop_oldest" if db.when_full == "drop_oldest" else "block",
                        cipher=cipher)


def _buffer_spec(config: Config, directory: Directory) -> ChildSpec:
    sinks = {name: directory.handle(f"{ROOT}/sinks/{name}") for name in sink_names(config)}
    d = config.dispatcher
    bp = config.batch_persistence

    def start(ctx: StartContext) -> ActorRef[Any]:
        window = max(DEFAULT_RESUME_WINDOW_S, 3 * config.positions.flush_interval)
        batches = None
        if bp.enabled:  # read afresh on each start: the file is the truth after a crash
            batches = InflightBatches(bp.directory, max_recovery_retries=bp.max_recovery_retries,
                                      batch_ttl_s=bp.batch_ttl, batch_timeout_s=bp.batch_timeout)
        dlq = directory.handle(DLQ) if d.dlq_enabled else None
        return DiskBuffer.start(config.disk_buffer, make_segment_store(config), sinks,
                                ctx.scheduler, d.retry_base_delay, d.retry_max_delay, window,
                                batches, dlq, link=ctx.link, name=ctx.name,
                                directory=ctx.directory, mailbox_capacity=d.queue_size)

    return _worker("buffer", config, start)


def _dlq_spec(config: Config, directory: Directory) -> ChildSpec:
    sinks = {name: directory.handle(f"{ROOT}/sinks/{name}") for name in sink_names(config)}
    dc = config.dlq
    d = config.dispatcher

    def start(ctx: StartContext) -> ActorRef[Any]:
        store = DeadLetterStore(dc.directory, dc.max_total_size, dc.retention_period)
        return DeadLetterQueue.start(store, sinks, ctx.scheduler,
                                     retry_base_delay_s=d.retry_base_delay,
                                     retry_max_delay_s=d.retry_max_delay,
                                     link=ctx.link, name=ctx.name, directory=ctx.directory)

    return _worker("dlq", config, start)


def build_root_children(config: Config, directory: Directory,
                        backend: AdminBackend) -> list[ChildSpec]:
    """The root's children, in start order (stop runs in reverse)."""
    state: list[ChildSpec] = []
    if config.positions.enabled:
        pc = config.positions

        def start_positions(ctx: StartContext) -> ActorRef[Any]:
            return PositionsKeeper.start(pc, ctx.scheduler, link=ctx.link, name=ctx.name)

        state.append(_worker("positions", config, start_positions))
    if config.disk_buffer.enabled:
        state.append(_buffer_spec(config, directory))
    if config.dispatcher.dlq_enabled:
        state.append(_dlq_spec(config, directory))

    server = config.server

    def start_admin(ctx: StartContext) -> ActorRef[Any]:
        return AdminServer.start(backend, server.host, server.port, server.metrics_port,
                                 link=ctx.link, name=ctx.name)

    return [
        _supervisor("state", config, Strategy.ONE_FOR_ALL, state),
        _supervisor("sinks", config, Strategy.ONE_FOR_ONE, _sink_specs(config, directory)),
        _supervisor("dispatchers", config, Strategy.ONE_FOR_ONE,
                    _shard_specs(config, directory)),
        _supervisor("sources", config, Strategy.ONE_FOR_ONE, _source_specs(config, directory)),
        _worker("admin", config, start_admin),
    ]
