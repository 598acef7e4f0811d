"""The file table of a :class:`~logcap.sources.files.tailer.SourceTailer`: which files it
holds open and which it remembers closed, and the descriptor cap.

Open: a path has at most one *current* :class:`~logcap.sources.files.generation.Generation`
(:attr:`FileTable.current`) and any number of *retired* ones being drained after a rotation
(:attr:`FileTable.retired`); :attr:`FileTable.generations` finds either by id (acks name it).

Closed and remembered, each as a :class:`~logcap.sources.files.generation.ClosedFile` (path,
identity, offset, size and mtime when closed, hash of the bytes before the offset):

* :attr:`FileTable.dormant`: current files closed while idle (``close_inactive``) or for the
  cap (``max_open_files``), reopened when ``stat`` shows a change;
* :attr:`FileTable.finished`: rotated files read to their end and closed (the last
  ``FINISHED_MEMORY``): a file found again under a name the globs match is known, not read twice;
* :attr:`FileTable.gone`: files found rotated away (or their inode reused) and not found again:
  a compressed copy of one continues from its offset.

The cap (:meth:`FileTable._enforce_cap`): fully read current files are closed least recently
active first; rotated files being drained are never closed for it (their lines would be lost).

This class holds the state and the primitives every part of the tailer shares; the parts that
decide are its subclasses, one concept per module: compressed files
(:mod:`~logcap.sources.files.compressed_follow`), finding and resuming files
(:mod:`~logcap.sources.files.adoption`), then rotation, reading and acknowledgement
(:mod:`~logcap.sources.files.tailer`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable

from logcap.origin import Buffered, FileStream
from logcap.sources.files.decompress import DecompressedStream
from logcap.sources.files.generation import (
    ClosedFile,
    Generation,
    TailerSettings,
    covered_from,
    open_log,
)
from logcap.sources.files.joining import ReaderFactory, reader_factory
from logcap.sources.files.rotation import find_renamed
from logcap.sources.files.timestamp_journal import TimestampJournal
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    hash_prefix,
    identity_of,
)
from logcap.state.positions import FilePosition

log = logging.getLogger("logcap.sources.files.tailer")

FINISHED_MEMORY = 4096
"""How many drained-and-closed files the tailer remembers (to know them if they match again)."""
CAP_PROBLEM = "max_open_files"
"""The key of the problem shown while the descriptor cap cannot be kept."""


def stat_now(path: str, taken: dict[str, os.stat_result] | None) -> os.stat_result | None:
    """``stat`` of ``path`` (links followed): from ``taken``, results a re-scan has just
    taken, else a new one; None if it cannot be looked at (gone)."""
    st = taken.get(path) if taken else None
    if st is None:
        try:
            st = os.stat(path)
        except OSError:
            return None
    return st


class SkippedFile(Exception):
    """A file that matches the globs and is not read (compressed); the message says why."""


class FileTable:
    """The tailer's open generations and remembered closed files (module docstring)."""

    def __init__(
        self,
        settings: TailerSettings,
        stored: Iterable[FilePosition] = (),
        clock: Callable[[], float] = time.monotonic,
        buffered: Buffered | None = None,
        wall: Callable[[], float] = time.time,
        time_ns: Callable[[], int] = time.time_ns,
        make_reader: ReaderFactory | None = None,
        journal: TimestampJournal | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        """Where each read's timestamps are recorded, and re-reads find theirs (None: none)."""
        self._make_reader = make_reader or reader_factory(settings.max_line_bytes,
                                                          settings.encoding)
        self.clock = clock
        self.wall = wall
        self.time_ns = time_ns
        self.buffered = buffered or {}
        self._stored: dict[str, list[FilePosition]] = {}
        for pos in stored:
            self._stored.setdefault(pos.path, []).append(pos)
        self.current: dict[str, Generation] = {}
        self.retired: list[Generation] = []
        self.generations: dict[str, Generation] = {}
        self._ids = itertools.count(1)
        self._first_scan = True
        self.errors: dict[str, str] = {}
        self.unmatched: list[str] = []
        """Include patterns that selected no file at the last rescan."""
        self.links: set[str] = set()
        """The matched paths the last rescan found to be symbolic links."""
        self._skipped: dict[str, tuple[int, int]] = {}  # compressed: path -> (dev, ino)
        self.inflight_bytes = 0
        self._pending_rotations: list[str] = []
        self._pending_forget: list[tuple[int, int]] = []
        self.waiting: dict[str, bool] = {}
        """Paths matched while the cap was reached, never opened yet (value: found by the
        first scan, so ``start_at`` applies): opened by :meth:`sweep_dormant` as room allows."""
        self.dormant: dict[str, ClosedFile] = {}
        self._dormant_keys: dict[tuple[int, int], str] = {}
        """Current files closed while idle (close_inactive, max_open_files), by path: reopened
        when ``stat`` shows a change, in the order they were closed."""
        self.reopen_waiting: set[str] = set()
        """Closed files seen changed that the cap left closed: looked at again by every
        sweep of :meth:`sweep_dormant`, not only by the next full one (their events are past)."""
        self.finished: OrderedDict[tuple[int, int], ClosedFile] = OrderedDict()
        """Rotated files read to their end and closed (the last FINISHED_MEMORY), by key: a
        file found again under a name the globs match is known, not read twice."""
        self.gone: deque[ClosedFile] = deque(maxlen=FINISHED_MEMORY)
        """Closed files found rotated away (or their inode reused) and not found again: a
        compressed copy of one (``app.log.1.gz``) continues from its offset."""
        self.closes: Counter[str] = Counter()
        """Descriptors closed since the last :meth:`take_closes`, by reason."""
        self._problems: list[str] = []

    def take_problems(self) -> list[str]:
        """Problems found outside :meth:`rescan` (by a rotation check or a sweep)."""
        problems, self._problems = self._problems, []
        return problems

    def _open_keys(self) -> dict[tuple[int, int], Generation]:
        return {gen.key: gen for gen in [*self.retired, *self.current.values()]}

    def _past_buffered(self, fd: int, identity: FileIdentity, offset: int,
                       compressed: bool = False, buffered: Buffered | None = None) -> int:
        """The disk buffer is the positions' write-ahead log: skip bytes it holds durably
        (``buffered``, else what it held at the start; for a ``compressed`` file, offsets in
        its decompressed stream, not capped by the file's size).

        Only ranges read from this inode while it began with the same bytes count (inode
        reuse and copytruncate leave ranges of other content under the same inode).
        """
        spans: list[tuple[int, int]] = []
        for stream, ranges in (self.buffered if buffered is None else buffered).items():
            if isinstance(stream, FileStream) and (stream.dev, stream.ino) == (
                    identity.dev, identity.ino) and fingerprint_matches(stream.fingerprint, fd):
                spans.extend(ranges)
        resumed = covered_from(offset, spans)  # offsets in the decompressed stream
        if not compressed:
            resumed = min(resumed, os.fstat(fd).st_size)
        if resumed > offset:
            log.info("%s: resuming %d bytes further than the positions file: they are safe in "
                     "the disk buffer", self.settings.source, resumed - offset)
        return resumed

    def _new_gen(self, path: str, fd: int, identity: FileIdentity, offset: int,
                 stream: DecompressedStream | None = None) -> Generation:
        gen = Generation(
            gen_id=f"g{next(self._ids)}", path=path, fd=fd, identity=identity,
            reader=self._make_reader(path, fd, offset, None if stream is None else stream.pread),
            committed=offset, stream=stream,
        )
        gen.size = os.fstat(fd).st_size if stream is None else offset
        gen.last_active = self.clock()
        self.generations[gen.gen_id] = gen
        return gen

    def _add_current(self, path: str, fd: int, identity: FileIdentity, offset: int) -> None:
        self.current[path] = self._new_gen(path, fd, identity, offset)

    def _retire(self, gen: Generation, kind: str) -> None:
        gen.retired = True
        gen.idle_since = None
        self.retired.append(gen)
        self._pending_rotations.append(kind)
        log.info("%s: %s: %s rotation; draining the old file", self.settings.source, gen.path,
                 kind)

    def _close(self, gen: Generation) -> None:
        self.generations.pop(gen.gen_id, None)
        with contextlib.suppress(OSError):
            os.close(gen.fd)

    def _closed_file(self, gen: Generation) -> ClosedFile | None:
        """What to remember of ``gen`` once it is closed (None if it cannot be examined)."""
        try:
            st = os.fstat(gen.fd)
            offset = gen.reader.offset
            prefix = hash_prefix(gen.fd, offset) if offset and gen.stream is None else ""
        except OSError:
            return None
        return ClosedFile(gen.path, gen.identity, offset, st.st_size, st.st_mtime_ns, prefix)

    def _remember_finished(self, gen: Generation) -> None:
        closed = self._closed_file(gen)
        if closed is not None:
            self._remember(closed)

    def _remember(self, closed: ClosedFile) -> None:
        self.finished[closed.key] = closed
        self.finished.move_to_end(closed.key)
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)

    def _put_dormant(self, path: str, closed: ClosedFile) -> None:
        self.dormant[path] = closed
        self._dormant_keys[closed.key] = path

    def _undormant(self, path: str) -> ClosedFile:
        closed = self.dormant.pop(path)
        if self._dormant_keys.get(closed.key) == path:
            del self._dormant_keys[closed.key]
        return closed

    def open_count(self) -> int:
        """Descriptors held: every current and retired generation."""
        return len(self.current) + len(self.retired)

    def take_closes(self) -> Counter[str]:
        """Descriptors closed since the last call, by reason (drained, inactive,
        max_open_files), for the metrics."""
        closes, self.closes = self.closes, Counter()
        return closes

    def _make_dormant(self, path: str, gen: Generation, reason: str) -> None:
        closed = self._closed_file(gen)
        if closed is None or closed.size > closed.offset + gen.reader.pending_bytes:
            return  # it grew since it was last looked at: read that first
        del self.current[path]
        self._close(gen)
        self._put_dormant(path, closed)
        self.closes[reason] += 1

    def close_idle(self) -> None:
        """Close the current files that have had no new data for ``close_inactive``
        (reopened by :meth:`sweep_dormant` when they change)."""
        limit = self.clock() - self.settings.close_inactive_s
        for path, gen in list(self.current.items()):
            if gen.last_active <= limit and gen.fully_read:
                self._make_dormant(path, gen, "inactive")

    def _enforce_cap(self, room_for: int = 0) -> None:
        """Keep the descriptors at ``max_open_files``: close the least recently active
        current files that are fully read (reopened when they change). Rotated files being
        drained are never closed for the cap (their lines would be lost); while nothing can
        be closed, the cap is exceeded. While it is reached (or files wait to be opened:
        :attr:`waiting`), that is a problem of the source, reported once."""
        cap = self.settings.max_open_files - room_for
        excess = self.open_count() - cap
        if excess > 0:
            closable = sorted((gen for gen in self.current.values() if gen.fully_read),
                              key=lambda gen: gen.last_active)
            for gen in closable[:excess]:
                self._make_dormant(gen.path, gen, "max_open_files")
            excess = self.open_count() - cap
        if excess > 0 or self.waiting:
            if CAP_PROBLEM not in self.errors:
                reason = (f"cap of {self.settings.max_open_files} open files reached: files "
                          "are closed once read and others opened in turn (rotated files "
                          "being drained are never closed for it)")
                self.errors[CAP_PROBLEM] = reason
                self._problems.append(f"{CAP_PROBLEM}: {reason}")
        else:
            self.errors.pop(CAP_PROBLEM, None)

    def _follow_closed_away(self, closed: ClosedFile) -> None:
        """A closed file's path names another file now: read what it gained under its rotated
        name, if it is there and did."""
        renamed = find_renamed(os.path.dirname(closed.path), os.path.basename(closed.path),
                               closed.identity)
        if renamed is not None:
            try:
                fd = open_log(renamed)
            except OSError:
                renamed = None
            else:
                size = os.fstat(fd).st_size
                if size > closed.offset and closed.same_content(fd, size):
                    gen = self._new_gen(closed.path, fd, identity_of(fd), closed.offset)
                    self._retire(gen, "rename")
                    return
                os.close(fd)
        self._pending_forget.append(closed.key)
        self.gone.append(closed)

    def _note_problem(self, path: str, reason: str, problems: list[str] | None = None) -> None:
        """Record ``reason`` as ``path``'s problem; a new or changed one is also appended to
        ``problems`` (default: the ones :meth:`take_problems` hands out) to be reported once."""
        if self.errors.get(path) != reason:
            (self._problems if problems is None else problems).append(f"{path}: {reason}")
        self.errors[path] = reason
