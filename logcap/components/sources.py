"""The source kinds, in the ``sources`` group (one_for_one, started last, after the shards
they send to): one SourceShell running a FileSource per ``sources.files[]`` entry, and one
running the ContainerSource when ``sources.containers.enabled``.

A file source's multiline spec per path (:func:`multiline_for`) comes from its own
``multiline`` key, for every path it reads; without one, from the ``multiline`` stage of the
pipeline the path is routed to (the source's ``pipeline`` key or the routing file), so the
entries the pipeline gets are whole. The container source's, per container stream
(:func:`container_multiline_for`), likewise: ``sources.containers.multiline``, else the stage
of the pipeline the stream is routed to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykka import ActorRef

from logcap.actors.source_shell import SourceShell
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import BUFFER, POSITIONS, Wiring
from logcap.config import Config
from logcap.config.sources import ContainersConfig, FileSourceConfig, MultilineConfig
from logcap.messages import Labels
from logcap.origin import CONTAINER_KIND, FILE_KIND
from logcap.pipeline.routing import Routing
from logcap.runtime.childspec import ChildSpec, StartContext
from logcap.sources.files.discovery import scan
from logcap.sources.files.source import FileSource, file_source_settings
from logcap.sources.files.timestamp_journal import journal_path

__all__ = ["CONTAINER_SOURCE", "CONTAINER_SOURCE_NAME", "FILE_SOURCE", "ContainerSourceKind",
           "FileSourceKind", "container_multiline_for", "multiline_for"]

CONTAINER_SOURCE_NAME = "containers"
"""The container source's name (its actor, metrics label and ``ReadToken.source``)."""


def multiline_for(source: FileSourceConfig, routing: Routing | None = None
                  ) -> Callable[[str], MultilineConfig | None]:
    """The multiline spec of each path ``source`` reads: its ``multiline`` key, else the
    multiline stage of the pipeline ``routing`` gives the path (or None)."""
    own = source.multiline
    labels = tuple(sorted(dict(source.labels).items()))

    def resolve(path: str) -> MultilineConfig | None:
        if own is not None or routing is None:
            return own
        name = routing.pipeline_for(source.name, FILE_KIND, path, labels)
        return None if name is None else routing.pipelines[name].multiline

    return resolve


def container_multiline_for(section: ContainersConfig, routing: Routing | None = None,
                            name: str = "containers"
                            ) -> Callable[[str, Labels], MultilineConfig | None]:
    """The multiline spec of each container stream (its ``Entries.stream`` and labels): the
    section's ``multiline`` key, else the multiline stage of the pipeline ``routing`` gives
    the stream (or None)."""
    own = section.multiline

    def resolve(stream: str, labels: Labels) -> MultilineConfig | None:
        if own is not None or routing is None:
            return own
        pipeline = routing.pipeline_for(name, CONTAINER_KIND, stream, labels)
        return None if pipeline is None else routing.pipelines[pipeline].multiline

    return resolve


class FileSourceKind(ComponentKind):
    kind = "file_source"
    group = "sources"

    def instances(self, config: Config) -> list[Instance]:
        return [Instance(self.kind, s.name, s, f"sources.files[{i}]")
                for i, s in enumerate(config.sources.files)]

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        settings = file_source_settings(instance.settings, wiring.config)
        shards = wiring.handles("dispatchers")
        positions = wiring.state(POSITIONS)
        buffer = wiring.state(BUFFER)
        resolve = multiline_for(instance.settings, wiring.routing)

        positions_config = wiring.config.positions
        journal = (journal_path(positions_config.directory, instance.settings.name)
                   if positions_config.enabled else None)

        def start(ctx: StartContext) -> ActorRef[Any]:
            source = FileSource(settings, multiline_for=resolve, journal_path=journal)
            return SourceShell.start(source, shards, positions, ctx.scheduler, buffer,
                                     link=ctx.link, name=ctx.name, directory=ctx.directory)

        return ChildSpec(id=instance.name, start=start,
                         shutdown_s=wiring.config.supervision.shutdown_timeout)

    def warnings(self, instance: Instance, config: Config) -> list[str]:
        """Includes that match no file now, and paths that cannot be read now."""
        src = instance.settings
        found = scan(src.include, src.exclude)
        return [*(f"{instance.key}.include: {pattern!r} matches no file now"
                  for pattern in found.unmatched),
                *(f"{instance.key}.include: {error.path}: {error.reason}"
                  for error in found.errors)]


FILE_SOURCE = FileSourceKind()


class ContainerSourceKind(ComponentKind):
    kind = "container_source"
    group = "sources"

    def instances(self, config: Config) -> list[Instance]:
        section = config.sources.containers
        if not section.enabled:
            return []
        return [Instance(self.kind, CONTAINER_SOURCE_NAME, section, "sources.containers")]

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        # imported when configured: the container source's modules are about 1 MiB of the
        # process's memory, which a host following only files does not carry
        from logcap.sources.containers.source import ContainerSettings, ContainerSource

        settings = ContainerSettings.from_config(instance.settings, wiring.config,
                                                 instance.name)
        shards = wiring.handles("dispatchers")
        positions = wiring.state(POSITIONS)
        buffer = wiring.state(BUFFER)
        resolve = container_multiline_for(instance.settings, wiring.routing, instance.name)

        def start(ctx: StartContext) -> ActorRef[Any]:
            source = ContainerSource(settings, multiline_for=resolve)
            return SourceShell.start(source, shards, positions,
                                     ctx.scheduler, buffer, link=ctx.link, name=ctx.name,
                                     directory=ctx.directory)

        return ChildSpec(id=instance.name, start=start,
                         shutdown_s=wiring.config.supervision.shutdown_timeout)

    def describe(self, instance: Instance) -> str:
        return f"containers at {instance.settings.socket}"


CONTAINER_SOURCE = ContainerSourceKind()
