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
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable

from logcap.messages import Entries
from logcap.origin import FILE_KIND, Buffered, FileStream, ReadToken
from logcap.sources.files.compression import compression_of
from logcap.sources.files.discovery import scan
from logcap.sources.files.generation import (
    DEFAULT_DRAIN_GRACE_S,
    DEFAULT_MAX_INFLIGHT_BATCHES,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_READ_BYTES,
    Generation,
    PollResult,
    Read,
    TailerSettings,
    covered_from,
    open_log,
)
from logcap.sources.files.joining import ReaderFactory, entry_due, reader_factory
from logcap.sources.files.reader import ReadResult
from logcap.sources.files.rotation import find_renamed, find_rotated_copy
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    identity_of,
    needs_refresh,
)
from logcap.state.positions import FilePosition, Validity, validate_file

__all__ = [
    "DEFAULT_DRAIN_GRACE_S",
    "DEFAULT_MAX_INFLIGHT_BATCHES",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_READ_BYTES",
    "Generation",
    "PollResult",
    "SourceTailer",
    "TailerSettings",
    "covered_from",
]

log = logging.getLogger(__name__)

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

    # -- discovery -------------------------------------------------------------------------

    def rescan(self) -> list[str]:
        """Pick up files that appeared; returns new problems (path: reason) to report."""
        result = scan(self.settings.include, self.settings.exclude)
        problems = []
        for err in result.errors:
            if self.errors.get(err.path) != err.reason:
                problems.append(f"{err.path}: {err.reason}")
            self.errors[err.path] = err.reason
        for path in list(self.errors):
            if path in result.files and not self._still_skipped(path, result.files[path]):
                del self.errors[path]
        for path, st in result.files.items():
            if path not in self.current and not self._still_skipped(path, st):
                try:
                    self._discover(path, st.st_size)
                except (OSError, SkippedFile) as exc:
                    reason = str(exc) if isinstance(exc, SkippedFile) else exc.strerror or str(exc)
                    if self.errors.get(path) != reason:
                        problems.append(f"{path}: {reason}")
                    self.errors[path] = reason
        self._first_scan = False
        return problems

    def _still_skipped(self, path: str, st: os.stat_result) -> bool:
        """``path`` is the compressed file we skipped (same dev and inode)."""
        return self._skipped.get(path) == (st.st_dev, st.st_ino)

    def _discover(self, path: str, size: int) -> None:
        fd = open_log(path)
        try:
            identity = identity_of(fd)
            compressed = compression_of(fd)
        except OSError:
            os.close(fd)
            raise
        if compressed is not None:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            raise SkippedFile(f"compressed ({compressed}): skipped, never shipped as text")
        self._skipped.pop(path, None)
        stored = self._stored.pop(path, [])
        offset = 0 if not self._first_scan or self.settings.start_at == "beginning" else size
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

    def _past_buffered(self, fd: int, identity: FileIdentity, offset: int) -> int:
        """The disk buffer is the positions' write-ahead log: skip bytes it holds durably.

        Only ranges read from this inode while it began with the same bytes count (inode
        reuse and copytruncate leave ranges of other content under the same inode).
        """
        spans: list[tuple[int, int]] = []
        for stream, ranges in self.buffered.items():
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
        self.generations[gen.gen_id] = gen
        return gen

    def _add_current(self, path: str, fd: int, identity: FileIdentity, offset: int) -> None:
        self.current[path] = self._new_gen(path, fd, identity, offset)

    def _retire_at(self, path: str, pos: FilePosition) -> None:
        fd = open_log(path)
        gen = self._new_gen(pos.path, fd, identity_of(fd), pos.offset)
        gen.retired = True
        gen.idle_since = self.clock()
        self.retired.append(gen)

    # -- rotation --------------------------------------------------------------------------

    def check_rotation(self, deep: bool = False) -> None:
        """Look at every path; retire generations whose file was rotated (module table)."""
        for path, gen in list(self.current.items()):
            try:
                st = os.stat(path)
            except OSError:
                self._retire(gen, "deleted")
                del self.current[path]
                continue
            if (st.st_dev, st.st_ino) != gen.key:
                self._retire(gen, "rename")
                del self.current[path]
                try:
                    fd = open_log(path)
                    self._add_current(path, fd, identity_of(fd), 0)
                except OSError:
                    pass  # picked up by the next rescan
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
            if gen.finished or not self._has_room(gen):
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
            if result.lines:
                out.entries.append(self._entries(gen, result))
                out.lines += len(result.lines)
                out.bytes += result.end_offset - result.start_offset
                out.truncated_lines += result.truncated_count
                gen.idle_since = None
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

    def _entries(self, gen: Generation, result: ReadResult) -> Entries:
        ident = gen.identity
        token = ReadToken(self.settings.source, FILE_KIND,
                          FileStream(ident.dev, ident.ino, ident.fingerprint),
                          result.start_offset, result.end_offset, gen.gen_id, gen.epoch)
        size = result.end_offset - result.start_offset
        gen.inflight.append(Read(token))
        gen.inflight_bytes += size
        self.inflight_bytes += size
        labels = (*self.settings.labels, ("filename", gen.path))
        return Entries(self.settings.source, gen.path, labels, result.lines, self.time_ns(),
                       token, size)

    def _reap(self, out: PollResult) -> None:
        keep = []
        for gen in self.retired:
            if gen.finished and not gen.inflight:
                self._close(gen)
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

    def rewind(self, streams: Callable[[str], bool] | None = None) -> int:
        """Forget unacknowledged reads (of the paths ``streams`` selects); returns how many."""
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
            gen.reader.reset(gen.committed)
        return dropped

    # -- reporting -------------------------------------------------------------------------

    def lag_bytes(self) -> int:
        total = 0
        for gen in [*self.retired, *self.current.values()]:
            if not gen.exhausted:
                total += max(0, gen.size - gen.committed)
        return total

    def describe(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for gen in [*self.current.values(), *self.retired]:
            rows.append({"path": gen.path, "dev": gen.identity.dev, "ino": gen.identity.ino,
                         "fingerprint": gen.identity.fingerprint, "committed": gen.committed,
                         "read": gen.reader.offset, "size": gen.size,
                         "lag_bytes": max(0, gen.size - gen.committed),
                         "retired": gen.retired, "inflight_batches": len(gen.inflight)})
        return rows

    def close(self) -> None:
        for gen in [*self.retired, *self.current.values()]:
            self._close(gen)
        self.retired = []
        self.current = {}
