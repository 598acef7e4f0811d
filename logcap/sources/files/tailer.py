"""The file-tailing logic of one ``sources.files[]`` entry: plain code, driven by
:class:`~logcap.sources.files.source.FileSource` (which runs under the source shell).

:class:`SourceTailer` follows every file its globs match. Each followed file content is a
:class:`Generation` (one inode + fingerprint lineage, with its own descriptor, reader, read
window and committed offset). A path has at most one *current* generation and any number of
*retired* ones being drained after a rotation.

Reading. :meth:`SourceTailer.poll` reads large chunks from generations whose window has room
and returns :class:`~logcap.messages.Entries`, one per read, never one per line. A generation
may have at most ``max_inflight_batches`` unacknowledged reads; the source at most
``max_inflight_bytes``. When acknowledgements stop (a sink is down), reading stops: the file is
the buffer, and memory stays bounded.

Acknowledgement and commit. :meth:`SourceTailer.ack` marks reads settled; a generation's
committed offset advances over the settled *prefix* of its reads (in read order, no holes),
and the new :class:`~logcap.state.positions.FilePosition` is returned for the keeper.

Rewind. If batches may have been lost downstream (a shard restarted: the shell selects the
paths that went to it), :meth:`rewind` drops the generation's unacknowledged reads and
re-reads from its committed offset (a new ``epoch``, so late acks of the old reads are
ignored). Lines may be sent twice; none is lost.

Rotation (checked by :meth:`check_rotation` on every poll with an ``os.stat`` of the path, and
with a fingerprint on each sweep):

=====================  ===================================================================
rename (``create``)    the path names another inode: the old generation is retired and
                       drained to its end through its open descriptor; a new one starts at 0
delete / recreate      as rename; a deleted file is drained through its open descriptor
copytruncate           same inode, size below our read position: the rotated copy holding
                       our unread bytes is found by fingerprint; the old generation moves to
                       the copy (same offset) and is drained; a new generation starts at 0
truncate in place      as copytruncate without a copy: the bytes past the cut are gone
inode reuse            same inode, other first bytes (sweep): like truncate in place
=====================  ===================================================================

A retired generation that has reached its end and not grown for ``drain_grace_s`` is read a
last time (its final partial line is emitted), and once its reads are all acknowledged it is
closed and its position forgotten.

Identity, never twice (issue 9). Every file found (by a scan, by a rotation check, or opened
at once by the watcher on a creation or rename: :meth:`SourceTailer.adopt`) is first looked up
by identity (:meth:`SourceTailer._known`): a file followed already has its new descriptor
closed; a file closed while idle, or drained and closed, continues from its offset when it
still starts with its fingerprint and holds the same bytes before that offset
(:class:`~logcap.sources.files.generation.ClosedFile`); a reused inode, or a file shorter than
the offset, is new and read from 0. A new file the watcher found under a rotated name is a
generation the tailer never saw at its path: read in full (from 0), then closed.

Compressed files (by magic) are skipped and reported, or with ``decompress`` read whole as
a rotated file through a :class:`~logcap.sources.files.decompress.DecompressedStream`
(offsets in the decompressed stream), from the offset of the followed file they are a
compressed copy of (:func:`~logcap.sources.files.compressed_tail.continued_file`), else from
0; not while that file is still open or the stream too short to tell (the next scan looks
again). A stream without its end waits ``drain_grace_s`` after it stops growing, then keeps
its whole lines and is reported; corrupt data is reported and the rest skipped. A file opened
empty (by the watcher) is checked for a magic number before its first read.

Descriptors. ``close_inactive``: a fully read current file without new data for that long is
closed (:attr:`dormant`) and reopened when ``stat`` shows a change. ``max_open_files``: fully
read current files are closed least recently active first; files matched beyond the cap wait
(:attr:`waiting`) and are opened in turn by :meth:`sweep_dormant`; rotated files being drained
are never closed for the cap. ``rotate_wait`` is ``drain_grace_s`` below.

Start-up resolution of a discovered path (positions from the previous run):

* a stored position with this file's identity: validated; resume at its offset, or (file cut)
  drain the tail from the rotated copy, then read the file from 0;
* stored positions at this path for other inodes: those files were rotated away while logcap
  was down; each found renamed (same inode, same first bytes) is drained from its offset;
* no stored position: ``start_at`` (beginning: 0, end: the current size) for the files
  present at the first scan; files that appear later are read from 0.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable

from logcap.messages import Entries
from logcap.origin import FILE_KIND, Buffered, FileStream, ReadToken
from logcap.sources.files.binary_runs import drop_binary_runs
from logcap.sources.files.compressed_tail import NotYetWritten, continued_file, starts_with
from logcap.sources.files.compression import compression_of, undecided
from logcap.sources.files.decompress import CorruptCompressedFile, DecompressedStream
from logcap.sources.files.discovery import scan
from logcap.sources.files.generation import (
    DEFAULT_CLOSE_INACTIVE_S,
    DEFAULT_DRAIN_GRACE_S,
    DEFAULT_MAX_INFLIGHT_BATCHES,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_OPEN_FILES,
    DEFAULT_READ_BYTES,
    ClosedFile,
    Generation,
    PollResult,
    Read,
    TailerSettings,
    covered_from,
    open_log,
)
from logcap.sources.files.joining import ReaderFactory, entry_due, held_entry, reader_factory
from logcap.sources.files.reader import ReadResult
from logcap.sources.files.rotation import find_renamed, find_rotated_copy
from logcap.sources.files.timestamp_journal import TimestampJournal
from logcap.sources.files.watcher import Arrival
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    hash_prefix,
    identity_of,
    needs_refresh,
)
from logcap.state.positions import FilePosition, Validity, validate_file

__all__ = [
    "DEFAULT_CLOSE_INACTIVE_S",
    "DEFAULT_DRAIN_GRACE_S",
    "DEFAULT_MAX_INFLIGHT_BATCHES",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_OPEN_FILES",
    "DEFAULT_READ_BYTES",
    "Generation",
    "PollResult",
    "SourceTailer",
    "TailerSettings",
    "covered_from",
]

log = logging.getLogger(__name__)

FINISHED_MEMORY = 4096
"""How many drained-and-closed files the tailer remembers (to know them if they match again)."""
CAP_PROBLEM = "max_open_files"
"""The key of the problem shown while the descriptor cap cannot be kept."""


class SkippedFile(Exception):
    """A file that matches the globs and is not read (compressed); the message says why."""


class SourceTailer:
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
        self.finished: OrderedDict[tuple[int, int], ClosedFile] = OrderedDict()
        """Rotated files read to their end and closed (the last FINISHED_MEMORY), by key: a
        file found again under a name the globs match is known, not read twice."""
        self.gone: deque[ClosedFile] = deque(maxlen=FINISHED_MEMORY)
        """Closed files found rotated away (or their inode reused) and not found again: a
        compressed copy of one (``app.log.1.gz``) continues from its offset."""
        self.closes: Counter[str] = Counter()
        """Descriptors closed since the last :meth:`take_closes`, by reason."""
        self._problems: list[str] = []

    # -- discovery -------------------------------------------------------------------------

    def rescan(self) -> list[str]:
        """Pick up files that appeared; returns new problems (path: reason) to report.

        A matched path whose file is already followed (under another name: a rotated file
        the globs match too), or is a drained file unchanged since it was closed, is not
        opened; one that is a known file under a new name continues from its offset.
        """
        result = scan(self.settings.include, self.settings.exclude)
        self.unmatched = result.unmatched
        problems: list[str] = []
        for err in result.errors:
            if self.errors.get(err.path) != err.reason:
                problems.append(f"{err.path}: {err.reason}")
            self.errors[err.path] = err.reason
        for path in list(self.errors):
            if path in result.files and not self._still_skipped(path, result.files[path]):
                del self.errors[path]
        followed = self._open_keys()
        for path, st in result.files.items():
            if path in self.current or path in self.dormant or path in self.waiting \
                    or self._still_skipped(path, st):
                continue
            key = (st.st_dev, st.st_ino)
            if key in followed:
                continue
            done = self.finished.get(key)
            if done is not None and done.unchanged(st):
                continue
            if self.open_count() >= self.settings.max_open_files:
                self._enforce_cap(room_for=1)
            if self.open_count() >= self.settings.max_open_files:
                self.waiting[path] = self._first_scan  # opened by sweep_dormant, as room allows
                continue
            self._open_path(path, st.st_size, problems)
            followed = self._open_keys()
        for path in [p for p in self.waiting if p not in result.files]:
            del self.waiting[path]
        self._first_scan = False
        self._enforce_cap()
        problems.extend(self.take_problems())
        return problems

    def take_problems(self) -> list[str]:
        """Problems found outside :meth:`rescan` (by a rotation check or a sweep)."""
        problems, self._problems = self._problems, []
        return problems

    def _open_path(self, path: str, size: int, problems: list[str],
                   first: bool = False) -> None:
        try:
            self._discover(path, size, first or self._first_scan)
        except (OSError, SkippedFile) as exc:
            reason = str(exc) if isinstance(exc, SkippedFile) else exc.strerror or str(exc)
            if self.errors.get(path) != reason:
                problems.append(f"{path}: {reason}")
            self.errors[path] = reason

    def _still_skipped(self, path: str, st: os.stat_result) -> bool:
        """``path`` is the compressed file we skipped (same dev and inode)."""
        return self._skipped.get(path) == (st.st_dev, st.st_ino)

    def _open_keys(self) -> dict[tuple[int, int], Generation]:
        return {gen.key: gen for gen in [*self.retired, *self.current.values()]}

    def _check_compressed(self, path: str, fd: int, identity: FileIdentity) -> str | None:
        """The compression format of ``fd`` to read it decompressed (``decompress``), or None
        (a plain file); a compressed file without ``decompress`` is closed and skipped."""
        compressed = compression_of(fd)
        if compressed is not None and not self.settings.decompress:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            raise SkippedFile(f"compressed ({compressed}): skipped, never shipped as text")
        self._skipped.pop(path, None)
        return compressed

    def _known(self, origin: str, path: str, fd: int, identity: FileIdentity,
               compressed: str | None = None) -> bool:
        """Is the open file ``fd`` (now at ``path``, first seen at ``origin``; in format
        ``compressed``, None for a plain file) one the tailer knows? Then it is handled here
        (closed, or resumed from its offset) and True."""
        key = (identity.dev, identity.ino)
        if key in self._open_keys():
            os.close(fd)  # followed already: never read twice
            return True
        if compressed is not None:
            return self._known_compressed(path, fd, identity, compressed)
        size = os.fstat(fd).st_size
        dpath = self._dormant_keys.get(key)
        if dpath is not None:
            closed = self._undormant(dpath)
            if not closed.same_content(fd, size):
                return False  # its inode was reused while it was closed: a new file
            gen = self._new_gen(dpath, fd, identity, closed.offset)
            if path == dpath:
                self.current[dpath] = gen
            else:  # renamed while it was closed: read its tail, then close it
                log.info("%s: %s was renamed to %s while closed; reading it from %d",
                         self.settings.source, dpath, path, closed.offset)
                self._retire(gen, "rename")
            return True
        done = self.finished.get(key)
        if done is not None:
            if not done.same_content(fd, size):
                del self.finished[key]
                self._pending_rotations.append("inode_reuse")
                log.info("%s: %s (inode %d) is a new file in a reused inode; reading it from 0",
                         self.settings.source, path, identity.ino)
                return False
            if size <= done.offset:
                os.close(fd)  # read to its end already
                st = os.fstat(fd)
                self.finished[key] = ClosedFile(done.path, done.identity, done.offset, size,
                                                st.st_mtime_ns, done.prefix)
                return True
            del self.finished[key]
            gen = self._new_gen(done.path, fd, identity, done.offset)
            self._retire(gen, "rename")  # it grew after it was drained: read the rest
            return True
        return False

    def _known_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str) -> bool:
        """A compressed file read before (renamed since: ``app.log.1.gz`` -> ``.2.gz``) is
        not read again; one that grew since (its compressor was still writing it) is read on
        from its offset."""
        key = (identity.dev, identity.ino)
        done = self.finished.get(key)
        if done is None:
            return False
        if not fingerprint_matches(done.identity.fingerprint, fd):
            del self.finished[key]  # a reused inode
            return False
        if done.unchanged(os.fstat(fd)):
            os.close(fd)
            return True
        del self.finished[key]
        self._follow_compressed(path, fd, identity, fmt, resume=done)
        return True

    def adopt(self, arrivals: Iterable[Arrival]) -> list[str]:
        """Take the files the watcher opened at once (a creation or rename at a wanted path).

        A followed file's descriptor is closed; a known one continues from its offset; a new
        one at its wanted path with nothing followed there becomes the path's file, else it is
        a generation rotated away before the tailer saw it, read from 0 to its end and closed.
        """
        problems: list[str] = []
        for arrival in arrivals:
            fd = arrival.fd
            try:
                identity = identity_of(fd)
                compressed = self._check_compressed(arrival.path, fd, identity)
            except SkippedFile as exc:
                if self.errors.get(arrival.path) != str(exc):
                    problems.append(f"{arrival.path}: {exc}")
                self.errors[arrival.path] = str(exc)
                continue
            except OSError:
                with contextlib.suppress(OSError):
                    os.close(fd)
                continue
            if self._known(arrival.origin, arrival.path, fd, identity, compressed):
                continue
            if compressed is not None:
                self._follow_compressed(arrival.path, fd, identity, compressed)
                continue
            origin = arrival.origin
            if arrival.path == origin and origin not in self.current:
                if origin in self.dormant:  # the closed file there was rotated away
                    self._follow_closed_away(self._undormant(origin))
                self.waiting.pop(origin, None)
                self._add_current(origin, fd, identity, self._past_buffered(fd, identity, 0))
            else:
                gen = self._new_gen(origin, fd, identity, 0)
                self._retire(gen, "rename")
                log.info("%s: %s (first seen at %s) was rotated before it was read; reading it "
                         "in full", self.settings.source, arrival.path, origin)
        self._enforce_cap()
        return problems

    def _discover(self, path: str, size: int, first: bool) -> None:
        """Follow the file at ``path``: known by identity, or resumed from a stored position,
        or new (at ``start_at`` if ``first``: present at the first scan; else from 0)."""
        fd = open_log(path)
        try:
            identity = identity_of(fd)
            compressed = self._check_compressed(path, fd, identity)
        except OSError:
            os.close(fd)
            raise
        if self._known(path, path, fd, identity, compressed):
            return
        if compressed is not None:
            self._discover_compressed(path, fd, identity, compressed, first)
            return
        stored = self._stored.pop(path, [])
        offset = 0 if not first or self.settings.start_at == "beginning" else size
        mine = [p for p in stored if p.key == (identity.dev, identity.ino)
                and fingerprint_matches(p.fingerprint, fd)]
        for pos in stored:
            if pos in mine:
                continue
            renamed = find_renamed(os.path.dirname(path), os.path.basename(path), pos.identity)
            if renamed is not None:
                log.info("%s: resuming %s (rotated away while stopped) at %d", self.settings.source,
                         renamed, pos.offset)
                self._retire_at(renamed, pos)
            else:
                log.warning("%s: %s was rotated away while logcap was stopped and is gone "
                            "(unless a compressed copy matching the globs continues it); lines "
                            "after offset %d of it could not be read", self.settings.source,
                            path, pos.offset)
                self._pending_forget.append(pos.key)
                self.gone.append(ClosedFile(pos.path, pos.identity, pos.offset, 0, 0,
                                            pos.prefix_hash))
        if mine:
            pos = mine[0]
            validity = validate_file(pos)
            if validity is Validity.RESUME:
                offset = pos.offset
            else:
                copy = find_rotated_copy(os.path.dirname(path), os.path.basename(path),
                                         pos.identity, pos.offset)
                if copy is not None:
                    log.info("%s: %s was truncated while stopped; draining %s from %d",
                             self.settings.source, path, copy, pos.offset)
                    self._retire_at(copy, pos)
                offset = 0
        elif stored:
            offset = 0  # the path holds a file we never saw: it is new since the last run
        if mine and validate_file(mine[0]) is Validity.RESUME:
            offset = self._past_buffered(fd, identity, offset)
        elif not mine and offset == 0:
            offset = self._past_buffered(fd, identity, 0)
        self._add_current(path, fd, identity, offset)

    def _discover_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str,
                             first: bool) -> None:
        """A compressed file found by a scan: resumed from its stored position (decompressed
        again and skipped to the offset), else followed; present at the first scan with
        ``start_at: end``, only if it continues a file of the last run (like the history of
        plain files, it is not read otherwise)."""
        stored = self._stored.pop(path, [])
        mine = [p for p in stored if p.key == (identity.dev, identity.ino)
                and fingerprint_matches(p.fingerprint, fd)]
        self._pending_forget.extend(p.key for p in stored if p not in mine)
        if mine:
            pos = mine[0]
            offset = self._past_buffered(fd, identity, pos.offset, compressed=True)
            resume = ClosedFile(pos.path, identity, offset, 0, 0, "")
            self._follow_compressed(path, fd, identity, fmt, resume=resume)
        else:
            self._follow_compressed(path, fd, identity, fmt,
                                    only_continued=first and self.settings.start_at == "end")

    def _follow_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str,
                           resume: ClosedFile | None = None,
                           only_continued: bool = False) -> None:
        """Read the compressed file ``fd`` (at ``path``) decompressed, to its end, as a
        rotated file: from ``resume``'s offset, or from the offset of the followed file it is
        a compressed copy of (:func:`continued_file`, under that file's stream: one read in
        this run, or a stored position of the last run), or from 0 (``only_continued``: not
        at all, it is remembered as read).

        Not yet when it is a copy of a file still open (being read, or drained after its
        rotation: that file's reads decide the offset; a compressed copy of a live file is
        never read, its lines come from the live file), nor while it is too short to tell
        (being written): the descriptor is closed and the next scan looks again. A corrupt
        one is skipped and reported."""
        stream = DecompressedStream(fd, fmt)
        try:
            if resume is not None:
                offset, stream_path = resume.offset, resume.path
            else:
                open_plain = {gen.identity.fingerprint
                              for gen in [*self.retired, *self.current.values()]
                              if gen.stream is None and not gen.exhausted
                              and not gen.identity.fingerprint.startswith("0:")}
                if open_plain and starts_with(stream, open_plain):
                    os.close(fd)
                    return
                stored = [ClosedFile(p.path, p.identity, p.offset, 0, 0, p.prefix_hash)
                          for positions in self._stored.values() for p in positions]
                closed = continued_file(stream, [*self.finished.values(),
                                                 *self.dormant.values(), *self.gone, *stored])
                offset, stream_path = (closed.offset, closed.path) if closed else (0, path)
                if closed is None and only_continued:
                    st = os.fstat(fd)
                    os.close(fd)
                    self._remember(ClosedFile(path, identity, 0, st.st_size, st.st_mtime_ns, ""))
                    return
        except NotYetWritten:
            os.close(fd)
            return
        except CorruptCompressedFile as exc:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            self._report_corrupt(path, exc)
            return
        if offset:
            log.info("%s: %s (%s) continues %s: reading it decompressed from offset %d",
                     self.settings.source, path, fmt, stream_path, offset)
        else:
            log.info("%s: reading %s decompressed (%s)", self.settings.source, path, fmt)
        gen = self._new_gen(stream_path, fd, identity, offset, stream)
        gen.file_path = path
        gen.retired = True
        self.retired.append(gen)

    def _report_corrupt(self, path: str, exc: CorruptCompressedFile) -> None:
        reason = (f"corrupt compressed file ({exc}): the lines before it were read, the rest "
                  "is skipped")
        if self.errors.get(path) != reason:
            self._problems.append(f"{path}: {reason}")
        self.errors[path] = reason

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

    def _retire_at(self, path: str, pos: FilePosition) -> None:
        fd = open_log(path)
        identity = identity_of(fd)
        for cpath, other in list(self.current.items()):
            if other.key == (identity.dev, identity.ino) and not other.inflight:
                del self.current[cpath]  # found by the globs first: its stored offset wins
                self._close(other)
        gen = self._new_gen(pos.path, fd, identity, pos.offset)
        gen.retired = True
        gen.idle_since = self.clock()
        self.retired.append(gen)

    # -- rotation --------------------------------------------------------------------------

    def check_rotation(self, deep: bool = False, paths: set[str] | None = None) -> None:
        """Look at every path (or only ``paths``, those with directory events since the last
        look, and the files with unread bytes); retire generations whose file was rotated
        (module table)."""
        if paths is None:
            looked = list(self.current.items())
        else:
            # Also every file with unread bytes: the poll that follows reads it, and must not
            # read a file cut and rewritten since its last stat (its events may still be on
            # their way from the watcher thread).
            looked = [(path, gen) for path, gen in self.current.items()
                      if path in paths or gen.size > gen.reader.read_position]
        for path, gen in looked:
            try:
                st = os.stat(path)
            except OSError:
                self._retire(gen, "deleted")
                del self.current[path]
                continue
            if (st.st_dev, st.st_ino) != gen.key:
                self._retire(gen, "rename")
                del self.current[path]
                self._open_path(path, 0, self._problems)  # read from 0, or known by identity
                continue
            if st.st_size < gen.reader.read_position:
                self._truncated(path, gen)
                continue
            # A file with bytes to read (or a new size) is checked for new first bytes before
            # it is read: after a copytruncate it may have grown back past our position before
            # we looked, even to the very size we saw last (equal-length lines do that).
            unread = st.st_size != gen.size or st.st_size > gen.reader.read_position
            if (deep or unread) and not fingerprint_matches(gen.identity.fingerprint, gen.fd):
                self._truncated(path, gen, fallback="inode_reuse")
                continue
            if st.st_size != gen.size:
                gen.last_active = self.clock()
            gen.size = st.st_size
            if needs_refresh(gen.identity.fingerprint, st.st_size):
                gen.identity = identity_of(gen.fd)

    def _retire(self, gen: Generation, kind: str) -> None:
        gen.retired = True
        gen.idle_since = None
        self.retired.append(gen)
        self._pending_rotations.append(kind)
        log.info("%s: %s: %s rotation; draining the old file", self.settings.source, gen.path,
                 kind)

    def _truncated(self, path: str, gen: Generation, fallback: str = "truncate") -> None:
        """The file at ``path`` (same inode) no longer holds ``gen``'s bytes: follow them into
        the rotated copy (copytruncate), or give them up (truncate in place, inode reuse)."""
        copy = find_rotated_copy(os.path.dirname(path), os.path.basename(path), gen.identity,
                                 gen.reader.offset)
        if copy is None:
            self._replace_in_place(path, gen, fallback)
            return
        try:
            copy_fd = open_log(copy)
        except OSError:
            self._replace_in_place(path, gen, fallback)
            return
        if not fingerprint_matches(gen.identity.fingerprint, copy_fd):
            os.close(copy_fd)
            self._replace_in_place(path, gen, fallback)
            return
        # The generation follows its content into the copy; the live file starts anew.
        live_fd = gen.fd
        gen.fd = copy_fd
        gen.identity = identity_of(copy_fd)
        gen.reader = self._make_reader(gen.path, copy_fd, gen.reader.offset)
        self._retire(gen, "copytruncate")
        del self.current[path]
        self._add_current(path, live_fd, identity_of(live_fd), 0)

    def _replace_in_place(self, path: str, gen: Generation, kind: str) -> None:
        """Same inode, new content: the old generation keeps only its in-flight reads (and is
        remembered as :attr:`gone`: copytruncate then ``compress`` leaves its bytes in a .gz,
        which continues it; no prefix hash, its bytes are gone)."""
        fresh_fd = open_log(path)
        if gen.stream is None:
            self.gone.append(ClosedFile(gen.path, gen.identity, gen.reader.offset, 0, 0, ""))
        gen.exhausted = True
        gen.finished = True
        self._retire(gen, kind)
        del self.current[path]
        self._add_current(path, fresh_fd, identity_of(fresh_fd), 0)

    # -- reading ---------------------------------------------------------------------------

    def _has_room(self, gen: Generation) -> bool:
        return (len(gen.inflight) < self.settings.max_inflight_batches
                and self.inflight_bytes < self.settings.max_inflight_bytes)

    def poll(self) -> PollResult:
        """Read what the windows allow from every generation (retired ones first)."""
        out = PollResult()
        now = self.clock()
        for gen in [*self.retired, *self.current.values()]:
            if gen.finished:
                held = held_entry(gen.reader)  # cut in place with a multiline entry open
                if held is not None:
                    lines = self._text_only(gen, held.lines, out)
                    if lines:
                        out.entries.append(self._entries(gen, held, lines))
                        out.lines += len(lines)
                    else:
                        self._settle_unsent(gen, held, out)
                continue
            if not self._has_room(gen):
                continue  # an ack (or nothing) wakes it up again
            if not gen.retired and gen.size <= gen.reader.read_position \
                    and not entry_due(gen.reader, now):
                continue  # nothing new (size from the last stat in check_rotation)
            final = False
            if gen.retired and gen.idle_since is not None \
                    and now - gen.idle_since >= self.settings.drain_grace_s:
                final = True
                if gen.stream is not None and not gen.stream.complete:
                    self._truncated_for_good(gen)
                    continue
            if gen.stream is None and gen.reader.read_position == 0 \
                    and self._turned_compressed(gen):
                out.more = True
                continue
            try:
                result = gen.reader.read_batch(self.settings.read_bytes,
                                               self.settings.batch_lines, final=final)
            except CorruptCompressedFile as exc:
                gen.finished = True  # what was read is sent and committed; the rest skipped
                name = gen.file_path or gen.path
                self._skipped[name] = gen.key
                self._report_corrupt(name, exc)
                continue
            if gen.stream is not None:
                gen.size = max(gen.size, gen.stream.produced)
                if gen.stream.compressed_read != gen.compressed_seen:
                    gen.compressed_seen = gen.stream.compressed_read
                    gen.idle_since = None  # it grew: not complete until quiet for rotate_wait
            if gen.reader.nul_dropped > gen.reader_nul_seen:
                out.binary_chars += gen.reader.nul_dropped - gen.reader_nul_seen
                gen.binary_chars += gen.reader.nul_dropped - gen.reader_nul_seen
                gen.reader_nul_seen = gen.reader.nul_dropped
            if result.lines:
                lines = self._text_only(gen, result.lines, out)
                if lines:
                    out.entries.append(self._entries(gen, result, lines))
                    out.lines += len(lines)
                else:
                    self._settle_unsent(gen, result, out)
                out.bytes += result.end_offset - result.start_offset
                out.truncated_lines += result.truncated_count
                gen.idle_since = None
                gen.last_active = now
            if result.eof:
                if gen.retired:
                    if gen.idle_since is None:
                        gen.idle_since = now
                    if final:
                        gen.finished = True
            else:
                out.more = True
        self._reap(out)
        out.rotations, self._pending_rotations = self._pending_rotations, []
        return out

    def _truncated_for_good(self, gen: Generation) -> None:
        """A compressed file whose stream has no end and that has not grown for
        ``rotate_wait``: its complete lines were read; its partial last line is not shipped
        (it was cut); if it grows again it is read on from there."""
        gen.finished = True
        name = gen.file_path or gen.path
        fmt, size = (gen.stream.format, gen.stream.compressed_read) if gen.stream else ("?", 0)
        reason = (f"truncated compressed file ({fmt} stream without its end after {size} "
                  "bytes, unchanged for rotate_wait): its complete lines were read, its partial "
                  "last line is not shipped; read on if it grows")
        if self.errors.get(name) != reason:
            self._problems.append(f"{name}: {reason}")
        self.errors[name] = reason

    def _turned_compressed(self, gen: Generation) -> bool:
        """A file opened before it had bytes (the watcher opens new files at once) that turns
        out to be compressed, or may still be (the start of a magic number): not read as
        text. Then True, and it is skipped, followed decompressed, or looked at again (only a
        current file waits on a possible magic number: a rotated one is read to its end)."""
        if not gen.retired and undecided(gen.fd):
            return True
        fmt = compression_of(gen.fd)
        if fmt is None:
            return False
        path = gen.file_path or gen.path
        if gen.retired:
            self.retired.remove(gen)
        elif self.current.get(path) is gen:
            del self.current[path]
        self.generations.pop(gen.gen_id, None)
        identity = identity_of(gen.fd)
        if self.settings.decompress:
            self._follow_compressed(path, gen.fd, identity, fmt)
            return True
        os.close(gen.fd)
        self._skipped[path] = (identity.dev, identity.ino)
        reason = f"compressed ({fmt}): skipped, never shipped as text"
        if self.errors.get(path) != reason:
            self._problems.append(f"{path}: {reason}")
        self.errors[path] = reason
        return True

    def _text_only(self, gen: Generation, lines: list[str], out: PollResult) -> list[str]:
        """``lines`` without NUL and control runs (:mod:`binary_runs`); counted, and a
        warning the first time a file has them."""
        cleaned = drop_binary_runs(lines)
        if cleaned.removed_chars:
            if not gen.binary_warned:
                gen.binary_warned = True
                log.warning("%s: %s holds runs of NUL or control bytes (a crash or a sparse "
                            "file?): dropped from its lines (%d bytes in this read, %d lines "
                            "that held nothing else); counted in "
                            "logcap_source_binary_run_bytes_total", self.settings.source,
                            gen.path, gen.binary_chars + cleaned.removed_chars,
                            cleaned.dropped_lines)
            gen.binary_chars += cleaned.removed_chars
            out.binary_chars += cleaned.removed_chars
        return cleaned.lines

    def _settle_unsent(self, gen: Generation, result: ReadResult, out: PollResult) -> None:
        """A read whose lines were all binary runs: nothing to send, settled at once (its
        range is committed after the reads before it)."""
        token = self._token(gen, result)
        if not gen.inflight:
            gen.committed = result.end_offset
            if not gen.exhausted:
                out.commits.append(gen.position(self.wall()))
            return
        size = result.end_offset - result.start_offset
        gen.inflight.append(Read(token, acked=True))
        gen.inflight_bytes += size
        self.inflight_bytes += size

    def _token(self, gen: Generation, result: ReadResult) -> ReadToken:
        if gen.stream is None and needs_refresh(gen.identity.fingerprint, result.end_offset):
            # A token's identity must tell this content from the next file in a reused
            # inode: a fingerprint of the empty file it was when opened would not (the sinks'
            # deduplication would take the new file's lines for ones already delivered).
            # Only while the file still starts with the bytes fingerprinted: if it was cut
            # and rewritten meanwhile (copytruncate), the rotation check must still see the
            # old fingerprint to find the copy.
            fresh = identity_of(gen.fd)
            if fingerprint_matches(gen.identity.fingerprint, gen.fd):
                gen.identity = fresh
        ident = gen.identity
        return ReadToken(self.settings.source, FILE_KIND,
                         FileStream(ident.dev, ident.ino, ident.fingerprint),
                         result.start_offset, result.end_offset, gen.gen_id, gen.epoch)

    def _entries(self, gen: Generation, result: ReadResult, lines: list[str]) -> Entries:
        token = self._token(gen, result)
        size = result.end_offset - result.start_offset
        gen.inflight.append(Read(token))
        gen.inflight_bytes += size
        self.inflight_bytes += size
        labels = (*self.settings.labels, ("filename", gen.path))
        now = self.time_ns()
        stamps = None
        if self.journal is not None:
            ident = gen.identity  # the token's
            stamps = self.journal.stamp(
                ident.dev, ident.ino, ident.fingerprint, token.start, token.end,
                len(lines), now, line_starts=result.line_offsets,
                replay=len(lines) == len(result.lines),  # binary-only lines dropped: no match
                same_file=lambda fp: fingerprint_matches(fp, gen.fd))
        return Entries(self.settings.source, gen.path, labels, lines,
                       now if stamps is None else stamps[0], token, size, timestamps=stamps)

    def _reap(self, out: PollResult) -> None:
        keep = []
        for gen in self.retired:
            if gen.finished and not gen.inflight:
                if not gen.exhausted:
                    self._remember_finished(gen)
                self._close(gen)
                self.closes["drained"] += 1
                out.forget.append(gen.key)
            else:
                keep.append(gen)
        self.retired = keep
        out.forget.extend(self._pending_forget)
        self._pending_forget = []

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

    # -- open descriptors ------------------------------------------------------------------

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

    def _put_dormant(self, path: str, closed: ClosedFile) -> None:
        self.dormant[path] = closed
        self._dormant_keys[closed.key] = path

    def _undormant(self, path: str) -> ClosedFile:
        closed = self.dormant.pop(path)
        if self._dormant_keys.get(closed.key) == path:
            del self._dormant_keys[closed.key]
        return closed

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

    def sweep_dormant(self, paths: set[str] | None = None) -> None:
        """Reopen the closed current files that changed (by ``stat``; only those among
        ``paths``, the ones with directory events, when given), as room under the cap allows
        (the longest closed first). A file found rotated while closed has its unread tail
        read under its new name; a reused inode or a file shorter than its offset is a new
        file, read from 0."""
        cap = self.settings.max_open_files
        changed: list[tuple[str, ClosedFile, os.stat_result | None]] = []
        if paths is None:
            looked = list(self.dormant.items())
        else:
            looked = [(path, self.dormant[path]) for path in paths if path in self.dormant]
        for path, closed in looked:
            try:
                st: os.stat_result | None = os.stat(path)
            except OSError:
                st = None
            if st is None or not closed.unchanged(st):
                changed.append((path, closed, st))
        wanted = len(self.waiting) + len(changed)
        # Make room: fully read files are closed (least recently active first) so that the
        # ones waiting get their turn; at most half the cap at a time.
        self._enforce_cap(room_for=min(wanted, max(1, cap // 2)) if wanted else 0)
        room = cap - self.open_count()
        for path, first in list(self.waiting.items()):
            if room <= 0:
                break
            del self.waiting[path]
            room -= 1
            self._open_path(path, 0 if not first else self._size_of(path), self._problems,
                            first=first)
        for path, closed, st in changed:
            if room <= 0:
                break
            self._undormant(path)
            room -= 1
            if st is None or (st.st_dev, st.st_ino) != closed.key:
                self._follow_closed_away(closed)
                if st is not None:
                    self._open_path(path, st.st_size, self._problems)
                continue
            try:
                fd = open_log(path)
            except OSError:
                self._put_dormant(path, closed)  # try again at the next sweep
                continue
            if closed.same_content(fd, os.fstat(fd).st_size):
                self.current[path] = self._new_gen(path, fd, identity_of(fd), closed.offset)
            else:
                log.info("%s: %s changed while closed (truncated, or a reused inode); reading "
                         "it from 0", self.settings.source, path)
                self._pending_rotations.append("inode_reuse")
                self._pending_forget.append(closed.key)
                self.gone.append(closed)
                self._add_current(path, fd, identity_of(fd), 0)
        self._enforce_cap()

    @staticmethod
    def _size_of(path: str) -> int:
        try:
            return os.stat(path).st_size
        except OSError:
            return 0

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

    # -- acknowledgements ------------------------------------------------------------------

    def ack(self, tokens: Iterable[ReadToken]) -> list[FilePosition]:
        """Settle reads; returns the positions that advanced (to commit)."""
        touched: dict[str, Generation] = {}
        for token in tokens:
            gen = self.generations.get(token.generation)
            if gen is None or token.epoch != gen.epoch:
                continue
            for read in gen.inflight:
                if read.token == token:
                    read.acked = True
                    break
            touched[gen.gen_id] = gen
        now = self.wall()
        positions = []
        for gen in touched.values():
            advanced = False
            while gen.inflight and gen.inflight[0].acked:
                read = gen.inflight.popleft()
                size = read.token.end - read.token.start
                gen.inflight_bytes -= size
                self.inflight_bytes -= size
                gen.committed = read.token.end
                advanced = True
            if advanced and not gen.exhausted:
                positions.append(gen.position(now))
        return positions

    def rewind(self, streams: Callable[[str], bool] | None = None,
               buffered: Buffered | None = None) -> int:
        """Forget unacknowledged reads (of the paths ``streams`` selects); returns how many.
        With ``buffered`` (the disk buffer's ranges now), a generation resumes past the bytes
        the buffer holds contiguously from its committed offset, as at a start: reads that
        reached the buffer before their ack was lost are not read again (they would get new
        timestamps, and Loki would keep both copies)."""
        dropped = 0
        for gen in [*self.retired, *self.current.values()]:
            if not gen.inflight or (streams is not None and not streams(gen.path)):
                continue
            dropped += len(gen.inflight)
            self.inflight_bytes -= gen.inflight_bytes
            gen.inflight.clear()
            gen.inflight_bytes = 0
            gen.epoch += 1
            if gen.exhausted:
                continue
            gen.finished = False
            if buffered:
                gen.committed = self._past_buffered(gen.fd, gen.identity, gen.committed,
                                                    compressed=gen.stream is not None,
                                                    buffered=buffered)
            gen.reader.reset(gen.committed)
        return dropped

    # -- reporting -------------------------------------------------------------------------

    def lag_bytes(self) -> int:
        total = 0
        for gen in [*self.retired, *self.current.values()]:
            if not gen.exhausted:
                total += max(0, gen.size - gen.committed)
        return total

    def most_lagging(self, limit: int) -> list[dict[str, object]]:
        """The ``limit`` files furthest behind (``path``, ``lag_bytes``: size minus committed
        offset), largest first; open, rotated and closed files alike. One pass, no syscall."""
        lags = [(max(0, gen.size - gen.committed), gen.path)
                for gen in [*self.current.values(), *self.retired]]
        lags.extend((max(0, closed.size - closed.offset), path)
                    for path, closed in self.dormant.items())
        return [{"path": path, "lag_bytes": lag}
                for lag, path in heapq.nlargest(limit, lags, key=lambda item: item[0])]

    def binary_chars(self) -> int:
        """NUL and control runs dropped from the lines of the files open now."""
        return sum(gen.binary_chars for gen in [*self.retired, *self.current.values()])

    def describe(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for gen in [*self.current.values(), *self.retired]:
            rows.append({"path": gen.path, "dev": gen.identity.dev, "ino": gen.identity.ino,
                         "fingerprint": gen.identity.fingerprint, "committed": gen.committed,
                         "read": gen.reader.offset, "size": gen.size,
                         "lag_bytes": max(0, gen.size - gen.committed),
                         "retired": gen.retired, "inflight_batches": len(gen.inflight),
                         "open": True, "binary_bytes_dropped": gen.binary_chars})
        for path, closed in self.dormant.items():
            rows.append({"path": path, "dev": closed.identity.dev, "ino": closed.identity.ino,
                         "fingerprint": closed.identity.fingerprint, "committed": closed.offset,
                         "read": closed.offset, "size": closed.size,
                         "lag_bytes": max(0, closed.size - closed.offset), "retired": False,
                         "inflight_batches": 0, "open": False})
        return rows

    def close(self) -> None:
        for gen in [*self.retired, *self.current.values()]:
            self._close(gen)
        self.retired = []
        self.current = {}
