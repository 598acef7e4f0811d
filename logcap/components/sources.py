"""The source kinds, in the ``sources`` group (one_for_one, started last, after the shards
they send to): one SourceShell running a FileSource per ``sources.files[]`` entry, and one
running the ContainerSource when ``sources.containers.enabled``."""

from __future__ import annotations

from typing import Any

from pykka import ActorRef

from logcap.actors.source_shell import SourceShell
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import BUFFER, POSITIONS, Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec, StartContext
from logcap.sources.containers.source import ContainerSettings, ContainerSource
from logcap.sources.files.source import FileSource, file_source_settings

__all__ = ["CONTAINER_SOURCE", "CONTAINER_SOURCE_NAME", "FILE_SOURCE", "ContainerSourceKind",
           "FileSourceKind"]

CONTAINER_SOURCE_NAME = "containers"
"""The container source's name (its actor, metrics label and ``ReadToken.source``)."""


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

        def start(ctx: StartContext) -> ActorRef[Any]:
            return SourceShell.start(FileSource(settings), shards, positions, ctx.scheduler,
                                     buffer, link=ctx.link, name=ctx.name,
                                     directory=ctx.directory)

        return ChildSpec(id=instance.name, start=start,
                         shutdown_s=wiring.config.supervision.shutdown_timeout)


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
        settings = ContainerSettings.from_config(instance.settings, wiring.config,
                                                 instance.name)
        shards = wiring.handles("dispatchers")
        positions = wiring.state(POSITIONS)
        buffer = wiring.state(BUFFER)

        def start(ctx: StartContext) -> ActorRef[Any]:
            return SourceShell.start(ContainerSource(settings), shards, positions,
                                     ctx.scheduler, buffer, link=ctx.link, name=ctx.name,
                                     directory=ctx.directory)

        return ChildSpec(id=instance.name, start=start,
                         shutdown_s=wiring.config.supervision.shutdown_timeout)

    def describe(self, instance: Instance) -> str:
        return f"containers at {instance.settings.socket}"


CONTAINER_SOURCE = ContainerSourceKind()
