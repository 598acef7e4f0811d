"""The supervision tree, built from a :class:`~logcap.config.Config` through
the component registry (:mod:`logcap.components.registry`).

```
root                  rest_for_one
├── state             one_for_all:  positions, buffer (disk_buffer.enabled), dlq
├── sinks             one_for_one:  file, loki, each sinks.loki_endpoints[] (those enabled)
├── dispatchers       one_for_one:  shard-0 .. shard-N-1
├── sources           one_for_one:  one SourceShell running a FileSource per sources.files[]
└── admin             AdminServer (Flask app on waitress)
```

Names in the :class:`~logcap.runtime.directory.Directory` are the qualified child names, e.g.
``root/sinks/loki`` (:func:`~logcap.components.wiring.qualified`); producers hold handles to
those names. Every actor is started with the directory, so it has its own stable address:
senders put it in ``Deliver.reply_to`` and watch their sinks' names with it. No receiver is
given a list of its senders.
"""

from __future__ import annotations

from typing import Any

from pykka import ActorRef

from logcap.api.app import AdminBackend
from logcap.api.server import AdminServer
from logcap.components.instance import GROUPS
from logcap.components.registry import child_specs
from logcap.components.wiring import ROOT, Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec, StartContext, Strategy, SupFlags
from logcap.runtime.supervisor import Supervisor

__all__ = ["GROUP_STRATEGIES", "ROOT", "build_root_children", "root_flags"]

GROUP_STRATEGIES = {
    "state": Strategy.ONE_FOR_ALL,  # the buffer and the DLQ share the state's fate
    "sinks": Strategy.ONE_FOR_ONE,
    "dispatchers": Strategy.ONE_FOR_ONE,
    "sources": Strategy.ONE_FOR_ONE,
}


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


def _supervisor(child_id: str, config: Config, strategy: Strategy,
                children: list[ChildSpec]) -> ChildSpec:
    def start(ctx: StartContext) -> ActorRef[Any]:
        return Supervisor.start(name=ctx.name, flags=root_flags(config, strategy),
                                children=children, directory=ctx.directory,
                                scheduler=ctx.scheduler, link=ctx.link)

    return ChildSpec(id=child_id, start=start, supervisor=True,
                     shutdown_s=config.supervision.shutdown_timeout * 2)


def build_root_children(wired: Wiring, backend: AdminBackend) -> list[ChildSpec]:
    """The root's children, in start order (stop runs in reverse): one supervisor per group
    of the registry, then the admin server."""
    config = wired.config
    server = config.server

    def start_admin(ctx: StartContext) -> ActorRef[Any]:
        return AdminServer.start(backend, server.host, server.port, server.metrics_port,
                                 link=ctx.link, name=ctx.name)

    groups = [_supervisor(group, config, GROUP_STRATEGIES[group], child_specs(group, wired))
              for group in GROUPS]
    return [*groups, ChildSpec(id="admin", start=start_admin,
                               shutdown_s=config.supervision.shutdown_timeout)]
