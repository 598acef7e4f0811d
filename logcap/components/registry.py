"""The registry: every kind of component, in start order, and what iterates them.

:data:`KINDS` is the one list; :func:`instances` gives the enabled instances by group,
:func:`child_specs` a group supervisor's children, :func:`preflight_directories` and
:func:`preflight_problems` what ``logcap run`` checks before it starts, :func:`state_locks`
the directories it locks, :func:`config_warnings` and :func:`probes` what ``check-config``
adds, :func:`summary` the start-up line. Adding a kind of source or sink
is adding its declaration (:class:`~logcap.components.base.ComponentKind`) here.
"""

from __future__ import annotations

from logcap.components.base import ComponentKind
from logcap.components.dispatch import SHARDS
from logcap.components.instance import GROUPS, Instance
from logcap.components.sinks import FILE_SINK, LOKI_SINK
from logcap.components.sources import CONTAINER_SOURCE, FILE_SOURCE
from logcap.components.state import DiskBufferKind, DlqKind, PositionsKind, segment_store_for
from logcap.components.wiring import BUFFER, POSITIONS, Wiring
from logcap.config import Config
from logcap.pipeline.routing import Routing
from logcap.runtime.childspec import ChildSpec
from logcap.runtime.directory import Directory
from logcap.state.buffer.segments import SegmentStore

__all__ = ["KINDS", "child_spec", "child_specs", "config_warnings", "instances",
           "make_segment_store", "preflight_directories", "preflight_problems", "probes",
           "sink_names", "state_locks", "summary", "wire"]

SUMMARY_NAMES_SHOWN = 5
"""Source names listed in the start-up line before "..."."""


def sink_names(config: Config) -> list[str]:
    """The names of the enabled sink instances, in start order."""
    return [i.name for kind in KINDS if kind.group == "sinks" for i in kind.instances(config)]


def make_segment_store(config: Config) -> SegmentStore:
    """The disk buffer's store for ``config``, a cursor per enabled sink (not opened)."""
    return segment_store_for(config, sink_names(config))


KINDS: tuple[ComponentKind, ...] = (
    PositionsKind(),
    DiskBufferKind(sink_names),
    DlqKind(),
    FILE_SINK,
    LOKI_SINK,
    SHARDS,
    FILE_SOURCE,
    CONTAINER_SOURCE,
)
"""Every kind, in start order (groups in :data:`~logcap.components.base.GROUPS` order)."""

_BY_KIND = {kind.kind: kind for kind in KINDS}


def instances(config: Config) -> dict[str, list[Instance]]:
    """The enabled instances of every group, in start order."""
    out: dict[str, list[Instance]] = {group: [] for group in GROUPS}
    for kind in KINDS:
        out[kind.group].extend(kind.instances(config))
    return out


def wire(config: Config, directory: Directory, routing: Routing | None = None) -> Wiring:
    """The wiring of the tree for ``config``: every enabled instance, handles in ``directory``,
    the pipelines of ``routing`` run by the shards."""
    return Wiring(config, directory, instances(config), routing)


def child_specs(group: str, wired: Wiring) -> list[ChildSpec]:
    """The children of ``group``'s supervisor."""
    return [_BY_KIND[i.kind].child_spec(i, wired) for i in wired.instances.get(group, ())]


def child_spec(group: str, name: str, wired: Wiring) -> ChildSpec:
    """The child spec of instance ``name`` of ``group`` (KeyError if ``wired`` has none)."""
    for i in wired.instances.get(group, ()):
        if i.name == name:
            return _BY_KIND[i.kind].child_spec(i, wired)
    raise KeyError(f"{group}/{name}")


def preflight_directories(config: Config) -> list[tuple[str, str]]:
    """``(key path, directory)`` of every enabled instance, to create and check writable."""
    return [d for group in instances(config).values() for i in group
            for d in _BY_KIND[i.kind].directories(i, config)]


def state_locks(config: Config) -> list[tuple[str, str, str]]:
    """``(key path, directory, lock file name)`` the running agent holds (one agent per
    state directory)."""
    return [lock for group in instances(config).values() for i in group
            for lock in _BY_KIND[i.kind].locks(i, config)]


def config_warnings(config: Config) -> list[str]:
    """What ``check-config`` warns about, every enabled instance's (not refusals)."""
    return [w for group in instances(config).values() for i in group
            for w in _BY_KIND[i.kind].warnings(i, config)]


def probes(config: Config) -> list[tuple[str, bool, str]]:
    """``check-config --connect``: ``(key path, ok, one line)`` per instance with something
    to probe (the Loki sinks), one request each."""
    out = []
    for group in instances(config).values():
        for i in group:
            found = _BY_KIND[i.kind].probe(i, config)
            if found is not None:
                out.append((i.key, *found))
    return out


def preflight_problems(config: Config) -> list[str]:
    """The deeper checks of every enabled instance (after the directories)."""
    return [p for group in instances(config).values() for i in group
            for p in _BY_KIND[i.kind].preflight(i, config)]


def summary(config: Config) -> str:
    """One line for the start-up log: sources, sinks, shards, buffer, positions, admin
    address, log settings. No secrets."""
    by_group = instances(config)
    files = [i for i in by_group["sources"] if i.kind == FILE_SOURCE.kind]
    names = ", ".join(i.name for i in files[:SUMMARY_NAMES_SHOWN])
    sources = f"{len(files)} file source{'' if len(files) == 1 else 's'}"
    if files:
        sources += f" ({names}{', ...' if len(files) > SUMMARY_NAMES_SHOWN else ''})"
    sources += f", containers {'on' if config.sources.containers.enabled else 'off'}"
    sinks = ", ".join(_BY_KIND[i.kind].describe(i) for i in by_group["sinks"]) or "none"
    state = {i.name: i for i in by_group["state"]}
    buffer = _BY_KIND[state[BUFFER].kind].describe(state[BUFFER]) if BUFFER in state \
        else "memory"
    positions = _BY_KIND[state[POSITIONS].kind].describe(state[POSITIONS]) \
        if POSITIONS in state else "off"
    server = config.server
    token = "token set" if server.admin_token else "no token"
    return (
        f"sources: {sources}; sinks: {sinks}; shards: {len(by_group['dispatchers'])}; "
        f"buffer: {buffer}; positions: {positions}; "
        f"admin: http://{server.host}:{server.port} ({token}); "
        f"metrics: :{server.metrics_port}; log: {config.logging.level}/{config.logging.format}"
    )
