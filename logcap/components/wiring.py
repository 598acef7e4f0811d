"""The addresses components give each other: :class:`Wiring`, built once per tree.

Every actor of the tree is bound in the :class:`~logcap.runtime.directory.Directory` under
``root/<group>/<name>`` (:func:`qualified`); a component holds :class:`Handle` s to the others,
which survive their restarts. The wiring knows the enabled instances of every group (from the
registry) and answers "the handles of the shards", "the sinks by name", "the disk buffer, if
enabled", and so on, so no component builder looks at another component's config section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from logcap.components.instance import Instance
from logcap.config import Config
from logcap.pipeline.routing import Routing
from logcap.runtime.directory import Directory, Handle

__all__ = ["BUFFER", "BUFFER_SINK", "DLQ", "POSITIONS", "ROOT", "Wiring", "qualified"]

ROOT = "root"
POSITIONS = "positions"
BUFFER = "buffer"
DLQ = "dlq"
"""Names of the state components in the ``state`` group."""
BUFFER_SINK = BUFFER
"""The name the shards know the disk buffer by, as their only sink."""


def qualified(group: str, name: str) -> str:
    """The directory name of instance ``name`` of ``group``: ``root/<group>/<name>``."""
    return f"{ROOT}/{group}/{name}"


@dataclass(frozen=True)
class Wiring:
    """The enabled instances by group (in start order) and handles to them; ``routing``:
    the pipelines and which entries they process (None: no processing)."""

    config: Config
    directory: Directory
    instances: Mapping[str, Sequence[Instance]]
    routing: Routing | None = None

    def names(self, group: str) -> list[str]:
        """The qualified names of ``group``'s instances."""
        return [qualified(group, i.name) for i in self.instances.get(group, ())]

    def handles(self, group: str) -> list[Handle]:
        return [self.directory.handle(name) for name in self.names(group)]

    def sinks(self) -> dict[str, Handle]:
        """Every sink instance by its name."""
        return {i.name: self.directory.handle(qualified("sinks", i.name))
                for i in self.instances.get("sinks", ())}

    def sink_names(self) -> list[str]:
        return [i.name for i in self.instances.get("sinks", ())]

    def state(self, name: str) -> Handle | None:
        """The handle of state component ``name`` (positions, buffer, dlq), None if disabled."""
        if any(i.name == name for i in self.instances.get("state", ())):
            return self.directory.handle(qualified("state", name))
        return None

    def shard_sinks(self) -> dict[str, Handle]:
        """Where shards send batches: the disk buffer alone when it is enabled (it feeds the
        sinks), else every sink."""
        buffer = self.state(BUFFER)
        return {BUFFER_SINK: buffer} if buffer is not None else self.sinks()
