"""The pieces of a source tailer's state: settings, file generations and their reads.

A :class:`Generation` is one file content followed through one descriptor (see
:mod:`logcap.sources.files.tailer`). Its reads carry a :class:`~logcap.origin.ReadToken` of
kind ``file``: ``generation`` is the generation's id (the tailer finds it again when the token
comes back acked), ``stream`` the file content's :class:`~logcap.origin.FileStream` at read
time, which the disk buffer reports back at start-up so the tailer can resume past bytes
already buffered (:func:`covered_from`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from logcap.messages import Entries, Labels
from logcap.origin import ReadToken
from logcap.sources.files.decompress import DecompressedStream
from logcap.sources.files.joining import JoiningReader
from logcap.sources.files.reader import DEFAULT_ENCODING, MAX_LINE_BYTES, LineReader
from logcap.state.file_identity import FileIdentity, fingerprint_matches, hash_prefix
from logcap.state.positions import FilePosition

__all__ = [
    "DEFAULT_CLOSE_INACTIVE_S",
    "DEFAULT_DRAIN_GRACE_S",
    "DEFAULT_MAX_INFLIGHT_BATCHES",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_OPEN_FILES",
    "DEFAULT_READ_BYTES",
    "OPEN_FLAGS",
    "ClosedFile",
    "Generation",
    "PollResult",
    "Read",
    "TailerSettings",
    "covered_from",
    "open_log",
]

DEFAULT_MAX_INFLIGHT_BATCHES = 32
"""Unacknowledged reads per file: must cover rate x (batch_timeout + fsync_interval)."""
DEFAULT_MAX_INFLIGHT_BYTES = 16 * 1024 * 1024
"""Unacknowledged bytes per source: the memory a burst may hold (each read is at most one
shard batch of lines)."""
DEFAULT_READ_BYTES = 1024 * 1024
DEFAULT_DRAIN_GRACE_S = 2.0
"""``rotate_wait``: a rotated file is read until it has not grown for this long, then closed."""
DEFAULT_CLOSE_INACTIVE_S = 300.0
"""``close_inactive``: a file with no new data for this long is closed (reopened on change)."""
DEFAULT_MAX_OPEN_FILES = 512
"""``max_open_files``: descriptors one file source keeps open at most (see the tailer)."""
OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)
_PLAIN_FLAGS = os.O_RDONLY | os.O_CLOEXEC


def open_log(path: str) -> int:
    """A read-only descriptor of the log file ``path``, without updating its atime if allowed.

    ``O_NOATIME`` needs the file's owner or CAP_FOWNER: a non-root agent reading logs through
    their group (the container image, uid 10001 with ``--group-add``) gets EPERM with it, so
    it opens them without it.
    """
    try:
        return os.open(path, OPEN_FLAGS)
    except PermissionError:
        if OPEN_FLAGS == _PLAIN_FLAGS:
            raise
        return os.open(path, _PLAIN_FLAGS)


@dataclass(frozen=True, slots=True)
class TailerSettings:
    source: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    labels: Labels = ()
    start_at: str = "end"
    max_line_bytes: int = MAX_LINE_BYTES
    encoding: str = DEFAULT_ENCODING
    batch_lines: int = 1000
    read_bytes: int = DEFAULT_READ_BYTES
    max_inflight_batches: int = DEFAULT_MAX_INFLIGHT_BATCHES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    drain_grace_s: float = DEFAULT_DRAIN_GRACE_S
    close_inactive_s: float = DEFAULT_CLOSE_INACTIVE_S
    max_open_files: int = DEFAULT_MAX_OPEN_FILES
    decompress: bool = False
    """Read compressed files decompressed (see the tailer) instead of skipping them."""
    read_delay_s: float = 0.0
    """``read_delay``: how long after a file's first event the source reads (the watcher's
    ``delay_s``, :data:`~logcap.sources.files.watcher.DEFAULT_READ_DELAY_S` from the
    config); 0 here, where the tailer is driven without a watcher, reads at once."""


@dataclass(slots=True)
class Read:
    token: ReadToken
    acked: bool = False


@dataclass(slots=True)
class Generation:
    """One file content followed through one descriptor; see the module docstring."""

    gen_id: str
    path: str
    fd: int
    identity: FileIdentity
    reader: LineReader | JoiningReader
    committed: int
    epoch: int = 0
    retired: bool = False
    finished: bool = False  # final read done: nothing more will be read
    exhausted: bool = False  # retired and nothing left to read at all (cut in place)
    idle_since: float | None = None
    inflight: deque[Read] = field(default_factory=deque)
    inflight_bytes: int = 0
    size: int = 0
    last_active: float = 0.0  # the clock when it last grew or was read
    binary_chars: int = 0  # NUL and control runs dropped from its lines
    reader_nul_seen: int = 0  # of reader.nul_dropped, already counted in binary_chars
    binary_warned: bool = False
    stream: DecompressedStream | None = None
    """A compressed file's decompressed content (offsets are in it); None: a plain file."""
    compressed_seen: int = 0  # of stream.compressed_read, at the last poll
    file_path: str | None = None
    """The compressed file's own path (its ``path``, the stream, may be the file it
    continues)."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.identity.dev, self.identity.ino)

    @property
    def fully_read(self) -> bool:
        """No read in flight and nothing read is unsent: it may be closed and reopened."""
        return not self.inflight and self.size <= self.reader.read_position

    def position(self, now: float) -> FilePosition:
        """The committed position. A compressed file's has no prefix hash: it is immutable,
        its identity (dev, ino, fingerprint of the compressed bytes) is enough."""
        prefix = hash_prefix(self.fd, self.committed) if self.committed and self.stream is None \
            else ""
        return FilePosition.of(self.path, self.identity, self.committed, prefix,
                               max(self.size, self.committed), now)


@dataclass(frozen=True, slots=True)
class ClosedFile:
    """A file the tailer followed and closed: read (and committed) up to ``offset``.

    ``path`` is its stream (the path it was followed under), ``size`` and ``mtime_ns`` what
    ``stat`` said when it was closed (unchanged: no need to open it to know it is the same),
    ``prefix`` the hash of the bytes before ``offset``. A file found again with this
    ``(dev, ino)`` is this file only if it still starts with the fingerprint *and* holds the
    same bytes before ``offset`` (:meth:`same_content`): otherwise the inode was reused.
    """

    path: str
    identity: FileIdentity
    offset: int
    size: int
    mtime_ns: int
    prefix: str

    @property
    def key(self) -> tuple[int, int]:
        return (self.identity.dev, self.identity.ino)

    def unchanged(self, st: os.stat_result) -> bool:
        return ((st.st_dev, st.st_ino) == self.key and st.st_size == self.size
                and st.st_mtime_ns == self.mtime_ns)

    def same_content(self, fd: int, size: int) -> bool:
        """Whether the open file ``fd`` (``size`` bytes long) is this file, maybe grown."""
        if size < self.offset:
            return False
        if not fingerprint_matches(self.identity.fingerprint, fd):
            return False
        return not self.offset or hash_prefix(fd, self.offset) == self.prefix


@dataclass(slots=True)
class PollResult:
    entries: list[Entries] = field(default_factory=list)
    more: bool = False  # a read stopped before end of file: poll again soon
    truncated_lines: int = 0
    bytes: int = 0
    lines: int = 0
    rotations: list[str] = field(default_factory=list)
    forget: list[tuple[int, int]] = field(default_factory=list)
    commits: list[FilePosition] = field(default_factory=list)  # reads with no line left
    binary_chars: int = 0  # NUL and control runs dropped from lines
    ack_reads: bool = False  # a window held a read back, or a rotated file is draining: an
    # ack may let the next poll read (or close) something, so poll again after acks


def covered_from(offset: int, spans: Iterable[tuple[int, int]]) -> int:
    """How far byte ranges ``spans`` cover contiguously from ``offset`` (a gap stops it)."""
    cursor = offset
    for start, end in sorted(spans):
        if start > cursor:
            break
        cursor = max(cursor, end)
    return cursor
