"""The difference between the running config and a new one, as a reload applies it: a pure
function, :func:`diff_configs`.

What a reload applies live, and what it names as needing a restart (and does not apply):

- ``sources.files[]`` and ``sources.containers``: sources added, removed and changed (any key
  of the entry, its static ``labels`` and ``pipeline`` included; the container source is
  added or removed by ``enabled``) are applied. A source without its own ``multiline`` key is
  also *changed* when the pipelines' multiline specs or the routing rules changed (its joining
  comes from the pipeline its streams are routed to).
- ``processing`` (the pipelines and routing files and their content): applied; the shards
  replace their compiled pipelines.
- ``sinks``: a sink whose settings changed (a Loki URL, its headers, ...) is applied by
  restarting that sink; a sink added is started and gets the lines read from then on; a sink
  removed is sent nothing more and stopped. All of that unless the shards' batch caps change
  (the tightest Loki ``batch_size`` and ``batch_wait`` among the sinks: one batch is one
  push), which needs a restart; then no sink change is applied.
- Every other section (``server``, ``dispatcher``, ``positions``, ``disk_buffer``,
  ``batch_persistence``, ``dlq``, ``deduplication``, ``supervision``, ``logging``) needs a
  restart when it changed.

:attr:`ConfigDiff.effective` is the config in force after the reload: the new one with every
part that needs a restart kept as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import attrs

from logcap.components.dispatch import batch_caps
from logcap.components.instance import Instance
from logcap.components.registry import KINDS
from logcap.config import Config
from logcap.pipeline.routing import Routing

__all__ = ["LIVE_SECTIONS", "ConfigDiff", "KindDiff", "diff_configs"]

LIVE_SECTIONS = ("sources", "processing", "sinks")
"""Top-level sections a reload may apply (in part; see the module docstring)."""


@dataclass(frozen=True, slots=True)
class KindDiff:
    """The instances of one kind of component, by name, between two configs."""

    kind: str
    group: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def touched(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "group": self.group, "added": list(self.added),
                "removed": list(self.removed), "changed": list(self.changed),
                "unchanged": list(self.unchanged)}


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """What a reload applies (``kinds``, ``pipelines``) and what it does not
    (``needs_restart``: one ``<key>: <why>`` each); ``effective``: the config in force after."""

    kinds: tuple[KindDiff, ...]
    pipelines: KindDiff
    routing_changed: bool
    needs_restart: tuple[str, ...]
    effective: Config

    def of(self, kind: str) -> KindDiff:
        return next(k for k in self.kinds if k.kind == kind)

    @property
    def empty(self) -> bool:
        """Nothing to apply (there may still be changes that need a restart)."""
        return not self.routing_changed and not any(k.touched for k in self.kinds)

    def summary(self) -> str:
        """One line: what changed per kind, and what needs a restart."""
        parts = []
        for k in (*self.kinds, self.pipelines):
            for what in ("added", "removed", "changed"):
                names = getattr(k, what)
                if names:
                    parts.append(f"{k.kind} {what}: {', '.join(names)}")
        if self.routing_changed and not self.pipelines.touched:
            parts.append("routing changed")
        applied = "; ".join(parts) or "nothing to apply"
        if self.needs_restart:
            applied += "; needs a restart (not applied): " + "; ".join(self.needs_restart)
        return applied

    def to_dict(self) -> dict[str, Any]:
        return {"components": [k.to_dict() for k in self.kinds if k.touched],
                "pipelines": self.pipelines.to_dict(), "routing_changed": self.routing_changed,
                "needs_restart": list(self.needs_restart)}


def _by_name(config: Config, kind: str) -> dict[str, Instance]:
    declared = next(k for k in KINDS if k.kind == kind)
    return {i.name: i for i in declared.instances(config)}


def _compare(kind: str, group: str, old: Mapping[str, Any], new: Mapping[str, Any],
             also_changed: frozenset[str] = frozenset()) -> KindDiff:
    return KindDiff(
        kind, group,
        added=tuple(n for n in new if n not in old),
        removed=tuple(n for n in old if n not in new),
        changed=tuple(n for n in new if n in old and (old[n] != new[n] or n in also_changed)),
        unchanged=tuple(n for n in new if n in old and old[n] == new[n]
                        and n not in also_changed))


def _sink_restarts(old: Config, new: Config) -> list[str]:
    """Why the sink changes cannot be applied live (empty: they can): sinks may be added,
    removed and changed live unless that changes the shards' batch caps. Each reason names
    the key paths of the Loki sinks whose ``batch_size`` / ``batch_wait`` moved the cap."""
    def sinks(config: Config) -> dict[str, Instance]:
        return {i.name: i for k in KINDS if k.group == "sinks" for i in k.instances(config)}

    before, after = sinks(old), sinks(new)
    caps_was = batch_caps(old, before.values())
    caps_now = batch_caps(new, after.values())
    problems = []
    for index, (key, what) in enumerate((("batch_size", "batch size"),
                                         ("batch_wait", "batch timeout"))):
        if caps_was[index] == caps_now[index]:
            continue
        moved = sorted((after.get(name) or before[name]).key
                       for name in before.keys() | after.keys()
                       if _loki_setting(before.get(name), key)
                       != _loki_setting(after.get(name), key))
        where = ", ".join(f"{path}.{key}" for path in moved) or "sinks"
        problems.append(f"{where}: the shards' {what} changes ({caps_was[index]} -> "
                        f"{caps_now[index]})")
    return problems


def _loki_setting(instance: Instance | None, key: str) -> Any:
    return getattr(instance.settings, key, None) \
        if instance is not None and instance.kind == "loki" else None


def _multiline_sources_touched(old: Routing | None, new: Routing | None) -> bool:
    """Whether a file source's joining may come out differently: the pipelines' multiline
    specs or the routing rules changed."""
    if old is None or new is None:
        return old is not new
    specs = {n: p.multiline for n, p in old.pipelines.items()}
    return specs != {n: p.multiline for n, p in new.pipelines.items()} \
        or old.rules != new.rules


def diff_configs(old: Config, old_routing: Routing | None, new: Config,
                 new_routing: Routing | None) -> ConfigDiff:
    """The reload of ``old`` (running with ``old_routing``) to ``new`` (module docstring)."""
    needs_restart = [f"{section.name}: changed" for section in attrs.fields(Config)
                     if section.name not in LIVE_SECTIONS
                     and getattr(old, section.name) != getattr(new, section.name)]
    sink_problems = _sink_restarts(old, new)
    needs_restart.extend(sink_problems)
    effective = attrs.evolve(
        new,
        **{s.name: getattr(old, s.name) for s in attrs.fields(Config)
           if s.name not in LIVE_SECTIONS},
        sinks=old.sinks if sink_problems else new.sinks)
    joining = _multiline_sources_touched(old_routing, new_routing)
    kinds = []
    for declared in KINDS:
        before, after = _by_name(old, declared.kind), _by_name(effective, declared.kind)
        also: frozenset[str] = frozenset()
        if declared.group == "sources" and joining:
            also = frozenset(n for n, i in after.items()
                             if getattr(i.settings, "multiline", None) is None)
        kinds.append(_compare(declared.kind, declared.group,
                              {n: i.settings for n, i in before.items()},
                              {n: i.settings for n, i in after.items()}, also))
    old_pipelines = dict(old_routing.pipelines) if old_routing is not None else {}
    new_pipelines = dict(new_routing.pipelines) if new_routing is not None else {}
    return ConfigDiff(
        kinds=tuple(kinds),
        pipelines=_compare("pipeline", "dispatchers", old_pipelines, new_pipelines),
        routing_changed=old_routing != new_routing,
        needs_restart=tuple(needs_restart),
        effective=effective)
