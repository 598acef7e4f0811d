"""What sources tell and ask the PositionsKeeper (:mod:`logcap.actors.positions_keeper`).

Sources build these (a :class:`~logcap.sources.base.Source` returns them from ``ack`` and
``read``); the source shell forwards them to the keeper unchanged, so the shell knows nothing
of a source's kind of position. All go to the keeper's control lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from logcap.state.positions import ContainerPosition, FilePosition

__all__ = ["CommitContainers", "CommitFiles", "ForgetContainers", "ForgetFiles",
           "GetContainerPositions", "GetFilePositions", "PositionsUpdate"]


@dataclass(frozen=True, slots=True)
class CommitFiles:
    """Positions that became safe: every line before them is delivered."""

    positions: tuple[FilePosition, ...]


@dataclass(frozen=True, slots=True)
class ForgetFiles:
    """Files ``(dev, ino)`` fully drained after a rotation: drop their entries."""

    keys: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class GetFilePositions:
    """Ask: the stored file positions (a list of :class:`FilePosition`)."""


@dataclass(frozen=True, slots=True)
class CommitContainers:
    """Container cursors that became safe: every line before them is delivered."""

    positions: tuple[ContainerPosition, ...]


@dataclass(frozen=True, slots=True)
class ForgetContainers:
    """Containers removed from the engine, their last lines delivered: drop their entries."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetContainerPositions:
    """Ask: the stored container positions (a list of :class:`ContainerPosition`)."""


PositionsUpdate = CommitFiles | ForgetFiles | CommitContainers | ForgetContainers
"""A message a source has for the keeper."""
