"""The shard kind: ``dispatcher.shards`` DispatcherShards (``shard-0`` ..) in the
``dispatchers`` group, each running the pipelines of the wiring's routing (its own router).
With Loki sinks, a shard's batch is one push request, so the tightest Loki ``batch_size`` and
``batch_wait`` cap the shard's batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pykka import ActorRef

from logcap.actors.shard import DispatcherShard, ShardSettings
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec, StartContext

__all__ = ["SHARDS", "ShardKind", "batch_caps", "shard_settings"]


def batch_caps(config: Config, sinks: Iterable[Instance]) -> tuple[int, float]:
    """The shards' batch size and timeout: the dispatcher's, capped by the tightest Loki
    sink's ``batch_size`` and ``batch_wait`` among ``sinks`` (one batch is one push)."""
    d = config.dispatcher
    batch_size, batch_timeout = d.batch_size, d.batch_timeout
    for sink in sinks:
        if sink.kind == "loki":
            batch_size = min(batch_size, sink.settings.batch_size)
            batch_timeout = min(batch_timeout, sink.settings.batch_wait)
    return batch_size, batch_timeout


def shard_settings(wiring: Wiring) -> ShardSettings:
    d = wiring.config.dispatcher
    batch_size, batch_timeout = batch_caps(wiring.config, wiring.instances.get("sinks", ()))
    return ShardSettings(batch_size, batch_timeout, d.retry_base_delay, d.retry_max_delay)


class ShardKind(ComponentKind):
    kind = "shard"
    group = "dispatchers"

    def instances(self, config: Config) -> list[Instance]:
        d = config.dispatcher
        return [Instance(self.kind, f"shard-{i}", d, "dispatcher") for i in range(d.shards)]

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        settings = shard_settings(wiring)
        sinks = wiring.shard_sinks()
        capacity = wiring.config.dispatcher.queue_size
        routing = wiring.routing

        def start(ctx: StartContext) -> ActorRef[Any]:
            # a fresh router per incarnation: stage state (rate buckets) is the shard's own
            router = routing.router() if routing is not None else None
            return DispatcherShard.start(settings, sinks, ctx.scheduler, router=router,
                                         link=ctx.link,
                                         name=ctx.name, directory=ctx.directory,
                                         mailbox_capacity=capacity)

        return ChildSpec(id=instance.name, start=start,
                         shutdown_s=wiring.config.supervision.shutdown_timeout)


SHARDS = ShardKind()
