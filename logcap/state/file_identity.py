"""Which file is this? Identity of a tailed file, and a check on the bytes before an offset
(kept with the positions, which record it; the file tailer uses it to recognise files).

A path is not an identity: logrotate moves files, truncates them, and a deleted file's inode number
is soon handed to a new file. logcap identifies a file by three things:

- ``dev`` and ``ino`` from ``stat``: what the kernel says;
- a **fingerprint**: a hash of the file's first bytes (up to :data:`FINGERPRINT_BYTES`), which
  tells a reused inode from the file that had it before.

Fingerprint format
    ``"<n>:<hex>"``: ``n`` is how many bytes were hashed (``min(size, file size)``) and ``hex``
    is the BLAKE2b digest (8 bytes) of those bytes. The length travels inside the string, so a
    fingerprint can never be compared without knowing what it covers.

Comparing on the common prefix
    A file that had 10 bytes when first seen has fingerprint ``"10:…"``. Later it has 5000 bytes;
    its first 1024 bytes hash differently from its first 10, but it is the same file. So a stored
    fingerprint ``"n:…"`` is compared by hashing the *first n bytes* of the current file
    (:func:`fingerprint_matches`): equal means the beginning is unchanged. If the current file has
    fewer than ``n`` bytes, the bytes we fingerprinted are gone: the file was truncated or replaced,
    and the answer is *no match*. A ``"0:…"`` fingerprint (empty file) matches every file: only
    dev/ino identify an empty file. Callers refresh a short fingerprint as the file grows
    (:func:`needs_refresh`), so the comparison soon covers the full :data:`FINGERPRINT_BYTES`.

Hash of the bytes before an offset (:func:`hash_prefix`)
    A stored position also records the hash of the last up-to-:data:`PREFIX_HASH_BYTES` bytes
    before its offset, in the same ``"<n>:<hex>"`` format. At start-up this catches what dev/ino
    and the head fingerprint cannot: a file truncated and rewritten past our offset while logcap
    was down, with the same first KiB (a startup banner, say). 4 KiB (tens of log lines) is
    enough to make an accidental match of different content negligible, and costs one ``pread``;
    hashing everything before the offset would cost a read of the whole file. What it does not
    catch (a change in the middle of the file, more than 4 KiB before the offset) does not happen
    to log files, which are only appended to, truncated, or replaced.

Every function takes either a path (opened read-only, then closed) or an open file descriptor
(read with ``pread``, so the descriptor's own position is never moved). With a path, ``stat`` and
the read go through one descriptor, so they describe the same file even if the path is swapped.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

__all__ = [
    "FINGERPRINT_BYTES",
    "PREFIX_HASH_BYTES",
    "FileIdentity",
    "PathOrFd",
    "digest_bytes",
    "fingerprint",
    "fingerprint_length",
    "fingerprint_matches",
    "hash_prefix",
    "identity_of",
    "needs_refresh",
    "read_at",
    "same_file",
]

FINGERPRINT_BYTES = 1024
"""How many bytes from the start of a file the fingerprint covers, at most."""

PREFIX_HASH_BYTES = 4096
"""How many bytes before an offset :func:`hash_prefix` covers, at most."""

_DIGEST_SIZE_BYTES = 8
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
"""``O_NONBLOCK``: opening a FIFO that replaced a log file must not hang the caller."""

PathOrFd = str | os.PathLike[str] | int
"""A path to open read-only, or an open file descriptor read with ``pread``."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What makes a file the same file: device, inode, and the fingerprint of its first bytes."""

    dev: int
    ino: int
    fingerprint: str

    @property
    def fingerprint_len(self) -> int:
        """How many bytes the fingerprint covers."""
        return fingerprint_length(self.fingerprint)


def digest_bytes(data: bytes) -> str:
    """``"<len>:<hex>"`` of ``data``: the format of fingerprints and prefix hashes."""
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=_DIGEST_SIZE_BYTES).hexdigest()}"


def _pread_full(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``: fewer only at end of file."""
    if size <= 0:
        return b""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_at(source: PathOrFd, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of ``source`` at ``offset`` (fewer at end of file)."""
    if isinstance(source, int):
        return _pread_full(source, size, offset)
    fd = os.open(source, _READ_FLAGS)
    try:
        return _pread_full(fd, size, offset)
    finally:
        os.close(fd)


def fingerprint(source: PathOrFd, size: int = FINGERPRINT_BYTES) -> str:
    """Fingerprint of the first ``min(size, file size)`` bytes of ``source``: ``"<n>:<hex>"``."""
    return digest_bytes(read_at(source, 0, max(0, size)))


@functools.lru_cache(maxsize=4096)
def fingerprint_length(fp: str) -> int:
    """How many bytes ``fp`` covers. Raises ValueError if ``fp`` is not ``"<n>:<hex>"``.

    Cached (a pure function of the string; an error is not cached): a tailer asks it of the
    same few fingerprints several times at every read."""
    length, sep, hexpart = fp.partition(":")
    if not sep or not length.isdigit() or len(hexpart) != 2 * _DIGEST_SIZE_BYTES:
        raise ValueError(f"malformed fingerprint {fp!r}: expected '<length>:<16 hex digits>'")
    int(hexpart, 16)
    return int(length)


def fingerprint_matches(stored: str, source: PathOrFd) -> bool:
    """Whether ``source`` starts with the bytes ``stored`` was computed from (common prefix).

    False when ``source`` is now shorter than what ``stored`` covers: those bytes are gone.
    """
    return fingerprint(source, fingerprint_length(stored)) == stored


def needs_refresh(fp: str, size: int) -> bool:
    """Whether a file now ``size`` bytes long deserves a longer fingerprint than ``fp``."""
    return fingerprint_length(fp) < min(size, FINGERPRINT_BYTES)


def hash_prefix(source: PathOrFd, offset: int, size: int = PREFIX_HASH_BYTES) -> str:
    """Hash of the last up-to-``size`` bytes before ``offset``: ``"<n>:<hex>"``.

    If the file is now shorter than ``offset``, the bytes actually found are hashed, so the
    result differs from one taken when the file was long enough (its ``n`` is smaller).
    """
    start = max(0, offset - size)
    return digest_bytes(read_at(source, start, offset - start))


def identity_of(
    source: PathOrFd, st: os.stat_result | None = None, size: int = FINGERPRINT_BYTES
) -> FileIdentity:
    """The identity of ``source`` now; ``st`` saves a ``fstat`` if the caller has one.

    A path is opened once; ``fstat`` and the fingerprint read use that descriptor, so both
    describe the same file. Raises OSError if the path cannot be opened.
    """
    if isinstance(source, int):
        st = st if st is not None else os.fstat(source)
        return FileIdentity(st.st_dev, st.st_ino, fingerprint(source, size))
    fd = os.open(source, _READ_FLAGS)
    try:
        return identity_of(fd, None, size)
    finally:
        os.close(fd)


def same_file(stored: FileIdentity, source: PathOrFd, st: os.stat_result | None = None) -> bool:
    """Whether ``source`` is the file ``stored`` describes.

    True when device and inode are equal and ``source`` still begins with the bytes the stored
    fingerprint covers (compared on that common prefix, see the module docstring). The stored
    fingerprint carries its own length, so no separate length argument is needed. ``st`` saves
    a ``fstat`` when ``source`` is a descriptor (a path is always opened and ``fstat``-ed).
    """
    if isinstance(source, int):
        st = st if st is not None else os.fstat(source)
        if (st.st_dev, st.st_ino) != (stored.dev, stored.ino):
            return False
        return fingerprint_matches(stored.fingerprint, source)
    fd = os.open(source, _READ_FLAGS)
    try:
        return same_file(stored, fd, None)
    finally:
        os.close(fd)
