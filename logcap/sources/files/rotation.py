"""What happened to a tailed path? Pure decisions about rotation, truncation and deletion.

A tailer knows, for each file it follows, a :class:`TrackedFile`: the path, the identity it
opened (:class:`~logcap.state.file_identity.FileIdentity`), its read offset and the size it
last saw. :func:`observe` looks at the path now (one ``open`` + ``fstat`` + fingerprint read, all
through one descriptor so they describe the same file); :func:`classify` turns the two into a
:class:`FileEvent`, without touching the file system. :func:`check` does both.

Decision table (first matching row wins)

==============  ======================================================  ===================
the path now    condition                                               event
==============  ======================================================  ===================
does not exist  ENOENT, or no longer a regular file                     DELETED
another inode   ``(dev, ino)`` differ                                   ROTATED
same inode      ``size < offset`` or ``size < last size`` (it shrank)   TRUNCATED
same inode      the first bytes no longer match the stored fingerprint  REPLACED_SAME_INODE
same inode      ``size > last size``                                    GREW
same inode      otherwise                                               UNCHANGED
==============  ======================================================  ===================

Notes on the rows
    - DELETED covers both "deleted" and "renamed away with nothing created yet": a path alone
      cannot tell them apart. Either way the caller drains its open descriptor to end of file
      (see :meth:`~logcap.sources.files.reader.LineReader.drain_to_eof`), then closes it; if the
      path reappears later, it is a new file.
    - ROTATED: rename + create (logrotate ``create``), or delete + recreate. The caller keeps
      the old descriptor open, drains it to end of file, then opens the new file at offset 0.
    - TRUNCATED: copytruncate, or ``> file``. Bytes between our offset and the truncation may
      still exist in a rotated copy: :func:`find_rotated_copy` finds it so the caller can read
      the tail from it; then the caller restarts the live file at offset 0. A reused inode whose
      new file is already shorter than our offset is indistinguishable from a truncation by
      ``stat`` and gets the same reaction, which is right for both.
    - REPLACED_SAME_INODE: the file was deleted and a new file got the same inode number, or it
      was truncated and rewritten past the size we saw between two looks. Restart at offset 0.
    - GREW compares with the *last size seen*, not with the offset: a reader that is behind has
      unread data whatever the event.
    - The fingerprint is compared on the common prefix (see
      :mod:`~logcap.state.file_identity`); if the path cannot be read (permission), the
      fingerprint row is skipped.

copytruncate also has a window logcap cannot close: lines written between logrotate's copy and
its truncation are in neither file. That is logrotate's documented limitation; prefer ``create``.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from logcap.state.file_identity import (
    FileIdentity,
    fingerprint,
    fingerprint_length,
    fingerprint_matches,
)

__all__ = [
    "COMPRESSED_SUFFIXES",
    "FileEvent",
    "Observation",
    "TrackedFile",
    "check",
    "classify",
    "find_renamed",
    "find_rotated_copy",
    "is_rotated_name",
    "observe",
]

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lzo", ".Z", ".zip", ".br")
"""Rotated copies with these suffixes are compressed: their bytes are not the log's bytes."""

_ROTATION_SEPARATORS = ".-_"
_ROTATION_SUFFIX = re.compile(r"[0-9][0-9A-Za-z.:+_-]*")
"""What logrotate appends: a number (``.1``) or a date (``-20261123``, ``.2026-11-23``)."""


class FileEvent(enum.Enum):
    """What happened to a tailed path since the tailer last looked (see the module table)."""

    UNCHANGED = "unchanged"
    GREW = "grew"
    TRUNCATED = "truncated"
    ROTATED = "rotated"
    DELETED = "deleted"
    REPLACED_SAME_INODE = "replaced_same_inode"


@dataclass(frozen=True, slots=True)
class TrackedFile:
    """What the tailer knows about a file it follows."""

    path: str
    identity: FileIdentity
    offset: int
    size: int
    """The size the tailer saw last."""


@dataclass(frozen=True, slots=True)
class Observation:
    """The path as it is now.

    ``stat`` is None when the path does not exist. ``fingerprint`` is of the path's first
    ``fingerprint_length(tracked fingerprint)`` bytes, or None if the path could not be read.
    """

    stat: os.stat_result | None
    fingerprint: str | None


def observe(path: str, fingerprint_len: int) -> Observation:
    """Stat ``path`` (following links) and fingerprint its first ``fingerprint_len`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return Observation(None, None)
        try:
            return Observation(os.stat(path), None)
        except OSError:
            return Observation(None, None)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Observation(st, None)
        return Observation(st, fingerprint(fd, fingerprint_len))
    finally:
        os.close(fd)


def classify(tracked: TrackedFile, observation: Observation) -> FileEvent:
    """The event that turns ``tracked`` into ``observation`` (pure; see the module table)."""
    st = observation.stat
    if st is None or not stat.S_ISREG(st.st_mode):
        return FileEvent.DELETED
    if (st.st_dev, st.st_ino) != (tracked.identity.dev, tracked.identity.ino):
        return FileEvent.ROTATED
    if st.st_size < tracked.offset or st.st_size < tracked.size:
        return FileEvent.TRUNCATED
    if observation.fingerprint is not None and observation.fingerprint != (
        tracked.identity.fingerprint
    ):
        return FileEvent.REPLACED_SAME_INODE
    if st.st_size > tracked.size:
        return FileEvent.GREW
    return FileEvent.UNCHANGED


def check(tracked: TrackedFile) -> tuple[FileEvent, Observation]:
    """:func:`observe` the tracked path, then :func:`classify` it."""
    observation = observe(tracked.path, fingerprint_length(tracked.identity.fingerprint))
    return classify(tracked, observation), observation


def is_rotated_name(name: str, basename: str) -> bool:
    """Whether ``name`` looks like an uncompressed rotation of ``basename``.

    ``app.log.1``, ``app.log-20261123``, ``app.log.2026-11-23`` (suffix after the whole name),
    and ``app-20261123.log``, ``app.1.log`` (logrotate's ``extension``/``dateext`` keeping the
    extension last). The suffix must start with a digit, so ``app-error.log`` is not a rotation
    of ``app.log``. Compressed names (``.gz`` …) are not.
    """
    if name == basename or name.endswith(COMPRESSED_SUFFIXES):
        return False
    if len(name) > len(basename) + 1 and name.startswith(basename):
        sep, suffix = name[len(basename)], name[len(basename) + 1 :]
        if sep in _ROTATION_SEPARATORS and _ROTATION_SUFFIX.fullmatch(suffix):
            return True
    stem, ext = os.path.splitext(basename)
    if ext and stem and name.startswith(stem) and name.endswith(ext):
        middle = name[len(stem) : len(name) - len(ext)]
        if len(middle) > 1 and middle[0] in _ROTATION_SEPARATORS:
            return _ROTATION_SUFFIX.fullmatch(middle[1:]) is not None
    return False


def _rotated_siblings(
    dirpath: str, basename: str, candidates: Iterable[str] | None
) -> list[tuple[float, str, os.stat_result]]:
    """Rotated-looking regular files beside ``basename``: ``(-mtime, name, stat)``, newest first."""
    if candidates is None:
        try:
            candidates = os.listdir(dirpath)
        except OSError:
            return []
    found = []
    for name in candidates:
        if not is_rotated_name(name, basename):
            continue
        try:
            st = os.stat(os.path.join(dirpath, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((-st.st_mtime, name, st))
    found.sort(key=lambda item: (item[0], item[1]))
    return found


def _starts_like(path: str, stored_fingerprint: str) -> bool:
    try:
        return fingerprint_matches(stored_fingerprint, path)
    except OSError:
        return False


def find_rotated_copy(
    dirpath: str,
    basename: str,
    identity: FileIdentity,
    offset: int,
    candidates: Iterable[str] | None = None,
) -> str | None:
    """After copytruncate: the rotated copy holding the bytes from ``offset`` on, or None.

    A candidate is a sibling named like a rotation of ``basename`` (:func:`is_rotated_name`;
    compressed copies are skipped), that is not the tracked inode itself (the live file keeps
    it), is at least ``offset`` bytes long, and starts with the bytes the tracked fingerprint
    covers. The newest (by mtime) wins. ``candidates`` are names in ``dirpath`` (default: list
    it). An empty fingerprint (``"0:…"``) proves nothing, so it finds nothing.

    The caller should open the returned path and re-check
    :func:`~logcap.state.file_identity.fingerprint_matches` on the descriptor before reading
    from ``offset`` to end of file (the copy may be rotated again meanwhile).
    """
    if fingerprint_length(identity.fingerprint) == 0:
        return None
    for _, name, st in _rotated_siblings(dirpath, basename, candidates):
        if (st.st_dev, st.st_ino) == (identity.dev, identity.ino) or st.st_size < offset:
            continue
        path = os.path.join(dirpath, name)
        if _starts_like(path, identity.fingerprint):
            return path
    return None


def find_renamed(
    dirpath: str,
    basename: str,
    identity: FileIdentity,
    candidates: Iterable[str] | None = None,
) -> str | None:
    """After rename rotation: the sibling that *is* the tracked file (same inode), or None.

    Used at start-up when a stored position's path now holds another file: if the old file was
    renamed (``app.log`` -> ``app.log.1``) while logcap was down, its unread tail is still there.
    The sibling must be named like a rotation of ``basename``, have the tracked ``(dev, ino)``
    and still start with the tracked fingerprint (guarding against inode reuse).
    """
    for _, name, st in _rotated_siblings(dirpath, basename, candidates):
        if (st.st_dev, st.st_ino) != (identity.dev, identity.ino):
            continue
        path = os.path.join(dirpath, name)
        if _starts_like(path, identity.fingerprint):
            return path
    return None
