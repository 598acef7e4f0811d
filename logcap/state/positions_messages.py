"""What sources tell and ask the PositionsKeeper (:mod:`logcap.actors.positions_keeper`).

Sources build these (a :class:`~logcap.sources.base.Source` returns them from ``ack`` and
``read``); the source shell forwards them to the keeper unchanged, so the shell knows nothing
of a source's kind of position. All go to the keeper's control lane. The shell *tells* them
(fire and forget), except the :data:`WRITTEN_BEFORE_READING` kinds, which it *asks* before it
sends on the entries of the same read: the keeper writes them to disk before it answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from logcap.state.positions import ContainerPosition, FilePosition

__all__ = ["WRITTEN_BEFORE_READING", "CommitContainers", "CommitFiles", "ForgetContainers",
           "ForgetFiles", "GetContainerPositions", "GetFilePositions", "PositionsUpdate",
           "RecordContainers"]


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
class RecordContainers:
    """Containers just followed, with their starting cursors (which claim nothing shipped past
    where following began). The keeper records them and writes the positions file before it
    answers (True: written; False: the write failed, kept in memory and retried): a container
    is then known to the next start even if logcap is killed and the container exits before
    any of its lines is committed. A stored cursor that is ahead is kept (forward only)."""

    positions: tuple[ContainerPosition, ...]


@dataclass(frozen=True, slots=True)
class ForgetContainers:
    """Containers removed from the engine, their last lines delivered: drop their entries."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetContainerPositions:
    """Ask: the stored container positions (a list of :class:`ContainerPosition`)."""


PositionsUpdate = (CommitFiles | ForgetFiles | CommitContainers | RecordContainers
                   | ForgetContainers)
"""A message a source has for the keeper."""

WRITTEN_BEFORE_READING: tuple[type, ...] = (RecordContainers,)
"""The updates the source shell asks (and waits until the keeper wrote them) instead of
telling."""
