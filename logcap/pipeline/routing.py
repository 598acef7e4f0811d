"""Which pipeline processes an Entries: the source's own ``pipeline`` key, else the first
rule of the routing file (``file_pipeline.yml``) that matches, else none.

A rule (:class:`RouteConfig`) matches when every matcher it gives holds: ``source`` (the
source's name), ``path`` (a glob on a file's path, for file sources), ``container`` (a glob on
a container's name: the ``container`` label of container entries), ``labels`` (each given label
has that value among the entries' static labels). A rule must give at least one matcher and
name a pipeline that exists (checked by :mod:`logcap.pipeline.loading`). A pipeline's
``multiline`` stage is not run here: the sources join lines before they leave them (a file
per path, a container per stream), asking the same routing which pipeline a file path or a
container stream goes to.

:class:`Router` answers per Entries and caches the answer per ``(source, stream, labels)``
(a renamed container keeps its stream and changes its ``container`` label); it holds one
:class:`~logcap.pipeline.compiled.CompiledPipeline` per pipeline name it routes to,
compiled on first use (each shard has its own router, so stage state is per shard).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import attrs

from logcap.config.section import Problem, Section, check_name
from logcap.config.values import optional_text, str_map, text
from logcap.messages import Entries, Labels
from logcap.origin import CONTAINER_KIND, FILE_KIND
from logcap.pipeline.compiled import CompiledPipeline, PipelineSpec

__all__ = ["CONTAINER_NAME_LABEL", "RouteConfig", "Router", "Routing"]

CONTAINER_NAME_LABEL = "container"
"""The label holding a container's name on its entries (set by the container source)."""
ROUTE_CACHE_ENTRIES = 100_000


@attrs.frozen
class RouteConfig(Section):
    """One routing rule (module docstring)."""

    pipeline: str = text(required=True, check=check_name)
    source: str | None = optional_text(check=check_name)
    path: str | None = optional_text()
    container: str | None = optional_text()
    labels: Mapping[str, str] = str_map(label_names=True)

    def problems(self) -> Iterator[Problem]:
        if self.source is None and self.path is None and self.container is None \
                and not self.labels:
            yield Problem("", "a rule must give at least one of source, path, container, "
                          "labels", ())

    def matches(self, source: str, kind: str, stream: str,
                labels: tuple[tuple[str, str], ...]) -> bool:
        if self.source is not None and source != self.source:
            return False
        if self.path is not None and (kind != FILE_KIND or not fnmatchcase(stream, self.path)):
            return False
        if self.container is not None and (
                kind != CONTAINER_KIND
                or not fnmatchcase(dict(labels).get(CONTAINER_NAME_LABEL, ""), self.container)):
            return False
        if self.labels:
            have = dict(labels)
            if any(have.get(k) != v for k, v in self.labels.items()):
                return False
        return True


@dataclass(frozen=True)
class Routing:
    """Everything the routers need: the pipelines by name, each file source's own pipeline,
    the rules in file order, the container source's own pipeline."""

    pipelines: Mapping[str, PipelineSpec]
    source_pipelines: Mapping[str, str]
    rules: tuple[RouteConfig, ...]
    container_pipeline: str | None = None

    def pipeline_for(self, source: str, kind: str, stream: str,
                     labels: tuple[tuple[str, str], ...]) -> str | None:
        """The name of the pipeline for these entries' origin, or None."""
        own = self.container_pipeline if kind == CONTAINER_KIND \
            else self.source_pipelines.get(source)
        if own is not None:
            return own
        for rule in self.rules:
            if rule.matches(source, kind, stream, labels):
                return rule.pipeline
        return None

    def router(self) -> Router:
        return Router(self)


class Router:
    """Routes entries to compiled pipelines (module docstring)."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self._compiled: dict[str, CompiledPipeline] = {}
        self._cache: dict[tuple[str, str, Labels], CompiledPipeline | None] = {}

    def route(self, entries: Entries) -> CompiledPipeline | None:
        key = (entries.source, entries.stream, entries.labels)
        try:
            return self._cache[key]
        except KeyError:
            pass
        name = self.routing.pipeline_for(entries.source, entries.token.kind, entries.stream,
                                         entries.labels)
        pipeline = None if name is None else self.compiled(name)
        if len(self._cache) >= ROUTE_CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = pipeline
        return pipeline

    def compiled(self, name: str) -> CompiledPipeline:
        """The compiled pipeline ``name`` (compiled once per router)."""
        found = self._compiled.get(name)
        if found is None:
            found = self._compiled[name] = self.routing.pipelines[name].compile()
        return found
