"""The file source kind: one SourceShell running a FileSource per ``sources.files[]`` entry, in
the ``sources`` group (one_for_one, started last, after the shards it sends to)."""

from __future__ import annotations

from typing import Any

from pykka import ActorRef

from logcap.actors.source_shell import SourceShell
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import BUFFER, POSITIONS, Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec, StartContext
from logcap.sources.files.source import FileSource, file_source_settings

__all__ = ["FILE_SOURCE", "FileSourceKind"]


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
