"""What sources tell and ask the PositionsKeeper (:mod:`logcap.actors.positions_keeper`).

Sources build these (a :class:`~logcap.sources.base.Source` returns them from ``ack`` and
``read``); the source shell forwards them to the keeper unchanged, so the shell knows nothing
of a source's kind of position. All go to the keeper's control lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from logcap.state.positions import FilePosition

__all__ = ["CommitFiles", "ForgetFiles", "GetFilePositions", "PositionsUpdate"]


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


PositionsUpdate = CommitFiles | ForgetFiles
"""A message a source has for the keeper."""
