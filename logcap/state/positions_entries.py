"""Position entries: how far one file or one container log stream was read.

- :class:`FilePosition`, keyed by the file's ``(dev, ino)`` (:data:`FileKey`), not by its path: a
  file renamed by rotation keeps its entry while it is drained, and the new file at the same path
  gets its own. ``fingerprint`` (first bytes, with their length) and ``prefix_hash`` (the bytes
  before the offset) are described in :mod:`logcap.state.file_identity`. ``size_at_commit``
  is the file's size when the position was committed (at least ``offset``), used to tell a
  shrunk file.
- :class:`ContainerPosition`, keyed by container id: ``cursor`` is the container source's resume
  cursor in its JSON form (:mod:`logcap.sources.containers.cursor_format`: per stream the
  engine's timestamp in nanoseconds, and the count and digest of the lines shipped at it),
  which the source encodes and validates; ``cursor_ns`` is the earliest engine timestamp still
  needed (the cursor's resume point), by which the store keeps commits forward only.
- ``updated_at`` is wall-clock seconds; the store sets it from its clock at each commit.

Entries are frozen, slotted dataclasses, compared by value. :func:`check_file_position` and
:func:`check_container_position` are the invariants every entry must hold, whether it is
committed or read back from disk: they raise :class:`ValueError` saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logcap.state.file_identity import FileIdentity, fingerprint_length

__all__ = [
    "ContainerPosition",
    "FileKey",
    "FilePosition",
    "check_container_position",
    "check_file_position",
]

FileKey = tuple[int, int]
"""A file entry's key: ``(dev, ino)``."""


@dataclass(frozen=True, slots=True)
class FilePosition:
    """How far a file was read; see the module docstring for each field."""

    path: str
    dev: int
    ino: int
    fingerprint: str
    fingerprint_len: int
    offset: int
    prefix_hash: str
    size_at_commit: int
    updated_at: float

    @classmethod
    def of(
        cls,
        path: str,
        identity: FileIdentity,
        offset: int,
        prefix_hash: str,
        size_at_commit: int,
        updated_at: float = 0.0,
    ) -> FilePosition:
        """Build a position from a file's identity (``fingerprint_len`` is derived)."""
        return cls(
            path=path,
            dev=identity.dev,
            ino=identity.ino,
            fingerprint=identity.fingerprint,
            fingerprint_len=fingerprint_length(identity.fingerprint),
            offset=offset,
            prefix_hash=prefix_hash,
            size_at_commit=size_at_commit,
            updated_at=updated_at,
        )

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    def at(self, updated_at: float) -> FilePosition:
        """This position with ``updated_at`` set: ``dataclasses.replace(self,
        updated_at=...)`` without its per-call field walk (the store stamps every commit)."""
        return FilePosition(self.path, self.dev, self.ino, self.fingerprint,
                            self.fingerprint_len, self.offset, self.prefix_hash,
                            self.size_at_commit, updated_at)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino, self.fingerprint)


@dataclass(frozen=True, slots=True)
class ContainerPosition:
    """How far a container's log stream was read; see the module docstring."""

    id: str
    name: str
    cursor_ns: int
    cursor: Mapping[str, Any]
    updated_at: float


def check_file_position(pos: FilePosition) -> None:
    """Raise ValueError for a negative number, a malformed fingerprint or prefix hash, or a
    ``fingerprint_len`` other than the fingerprint's."""
    if pos.offset < 0 or pos.size_at_commit < 0 or pos.dev < 0 or pos.ino < 0:
        raise ValueError("negative offset, size, device or inode")
    if fingerprint_length(pos.fingerprint) != pos.fingerprint_len:
        raise ValueError("fingerprint_len does not match the fingerprint")
    if pos.prefix_hash:
        fingerprint_length(pos.prefix_hash)


def check_container_position(pos: ContainerPosition) -> None:
    """Raise ValueError for an empty container id, a negative cursor or a cursor that is not
    a JSON object (its content is the container source's to validate)."""
    if not pos.id:
        raise ValueError("empty container id")
    if pos.cursor_ns < 0:
        raise ValueError("negative cursor")
    if not isinstance(pos.cursor, Mapping):
        raise ValueError("cursor is not an object")
