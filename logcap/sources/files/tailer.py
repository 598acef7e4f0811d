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
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable

from logcap.messages import Entries
from logcap.origin import FILE_KIND, Buffered, FileStream, ReadToken
from logcap.sources.files.binary_runs import drop_binary_runs
from logcap.sources.files.compression import compression_of
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
    ) -> None:
        self.settings = settings
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

    def _check_compressed(self, path: str, fd: int, identity: FileIdentity) -> None:
        compressed = compression_of(fd)
        if compressed is not None:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            raise SkippedFile(f"compressed ({compressed}): skipped, never shipped as text")
        self._skipped.pop(path, None)

    def _known(self, origin: str, path: str, fd: int, identity: FileIdentity) -> bool:
        """Is the open file ``fd`` (now at ``path``, first seen at ``origin``) one the tailer
        knows? Then it is handled here (closed, or resumed from its offset) and True."""
        key = (identity.dev, identity.ino)
        if key in self._open_keys():
            os.close(fd)  # followed already: never read twice
            return True
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
                self._check_compressed(arrival.path, fd, identity)
            except SkippedFile as exc:
                if self.errors.get(arrival.path) != str(exc):
                    problems.append(f"{arrival.path}: {exc}")
                self.errors[arrival.path] = str(exc)
                continue
            except OSError:
                with contextlib.suppress(OSError):
                    os.close(fd)
                continue
            if self._known(arrival.origin, arrival.path, fd, identity):
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
            self._check_compressed(path, fd, identity)
        except OSError:
            os.close(fd)
            raise
        if self._known(path, path, fd, identity):
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
                log.warning("%s: %s was rotated away while logcap was stopped and is gone; "
                            "lines after offset %d of it could not be read", self.settings.source,
                            path, pos.offset)
                self._pending_forget.append(pos.key)
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

    def _past_buffered(self, fd: int, identity: FileIdentity, offset: int,
                       buffered: Buffered | None = None) -> int:
        """The disk buffer is the positions' write-ahead log: skip bytes it holds durably
        (``buffered``, else what it held at the start).

        Only ranges read from this inode while it began with the same bytes count (inode
        reuse and copytruncate leave ranges of other content under the same inode).
        """
        spans: list[tuple[int, int]] = []
        for stream, ranges in (self.buffered if buffered is None else buffered).items():
            if isinstance(stream, FileStream) and (stream.dev, stream.ino) == (
                    identity.dev, identity.ino) and fingerprint_matches(stream.fingerprint, fd):
                spans.extend(ranges)
        resumed = min(covered_from(offset, spans), os.fstat(fd).st_size)
        if resumed > offset:
            log.info("%s: resuming %d bytes further than the positions file: they are safe in "
                     "the disk buffer", self.settings.source, resumed - offset)
        return resumed

    def _new_gen(self, path: str, fd: int, identity: FileIdentity, offset: int) -> Generation:
        gen = Generation(
            gen_id=f"g{next(self._ids)}", path=path, fd=fd, identity=identity,
            reader=self._make_reader(path, fd, offset),
            committed=offset,
        )
        gen.size = os.fstat(fd).st_size
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
        look); retire generations whose file was rotated (module table)."""
        if paths is None:
            looked = list(self.current.items())
        else:
            looked = [(path, self.current[path]) for path in paths if path in self.current]
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
        """Same inode, new content: the old generation keeps only its in-flight reads."""
        fresh_fd = open_log(path)
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
            result = gen.reader.read_batch(self.settings.read_bytes, self.settings.batch_lines,
                                           final=final)
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
        if needs_refresh(gen.identity.fingerprint, result.end_offset):
            # A token's identity must tell this content from the next file in a reused
            # inode: a fingerprint of the empty file it was when opened would not (the sinks'
            # deduplication would take the new file's lines for ones already delivered).
            gen.identity = identity_of(gen.fd)
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
        return Entries(self.settings.source, gen.path, labels, lines, self.time_ns(),
                       token, size)

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
            prefix = hash_prefix(gen.fd, offset) if offset else ""
        except OSError:
            return None
        return ClosedFile(gen.path, gen.identity, offset, st.st_size, st.st_mtime_ns, prefix)

    def _remember_finished(self, gen: Generation) -> None:
        closed = self._closed_file(gen)
        if closed is None:
            return
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

    def sweep_dormant(self) -> None:
        """Reopen the closed current files that changed (by ``stat``), as room under the cap
        allows (the longest closed first). A file found rotated while closed has its unread
        tail read under its new name; a reused inode or a file shorter than its offset is a
        new file, read from 0."""
        cap = self.settings.max_open_files
        changed: list[tuple[str, ClosedFile, os.stat_result | None]] = []
        for path, closed in self.dormant.items():
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
                                                    buffered)
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
