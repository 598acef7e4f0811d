"""The container source's settings, taken from ``sources.containers`` and the dispatcher
section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logcap.messages import Labels
from logcap.sources.containers.filters import ContainerFilter

__all__ = ["ContainerSettings"]


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    """What the source takes from ``sources.containers`` and the dispatcher section."""

    source: str
    socket: str
    filter: ContainerFilter
    labels: Labels
    start_at: str
    max_line_bytes: int
    batch_lines: int

    @classmethod
    def from_config(cls, section: Any, config: Any, name: str = "containers"
                    ) -> ContainerSettings:
        return cls(name, section.socket, ContainerFilter.from_config(section),
                   tuple(sorted(dict(section.labels).items())), section.start_at,
                   section.max_line_bytes, config.dispatcher.batch_size)
