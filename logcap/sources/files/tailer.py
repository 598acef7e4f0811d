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

The tailer is built in layers, one concept per module: the file table and descriptor cap
(:mod:`~logcap.sources.files.file_table`), compressed files
(:mod:`~logcap.sources.files.compressed_follow`), finding and resuming files
(:mod:`~logcap.sources.files.adoption`), and here rotation, reading and acknowledgement.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable

from logcap.messages import Entries
from logcap.origin import FILE_KIND, Buffered, FileStream, ReadToken
from logcap.sources.files.adoption import FileAdoption
from logcap.sources.files.binary_runs import drop_binary_runs
from logcap.sources.files.decompress import CorruptCompressedFile
from logcap.sources.files.file_table import (
    CAP_PROBLEM,
    FINISHED_MEMORY,
    SkippedFile,
    log,
    stat_now,
)
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
from logcap.sources.files.joining import entry_due, held_entry
from logcap.sources.files.reader import ReadResult
from logcap.sources.files.rotation import find_rotated_copy
from logcap.state.file_identity import (
    fingerprint_matches,
    identity_of,
    needs_refresh,
)
from logcap.state.positions import FilePosition

__all__ = [
    "CAP_PROBLEM",
    "DEFAULT_CLOSE_INACTIVE_S",
    "DEFAULT_DRAIN_GRACE_S",
    "DEFAULT_MAX_INFLIGHT_BATCHES",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "DEFAULT_MAX_OPEN_FILES",
    "DEFAULT_READ_BYTES",
    "FINISHED_MEMORY",
    "Generation",
    "PollResult",
    "SkippedFile",
    "SourceTailer",
    "TailerSettings",
    "covered_from",
]


class SourceTailer(FileAdoption):
    """Follows every file one ``sources.files[]`` entry's globs match (module docstring)."""

    def check_rotation(self, deep: bool = False, paths: set[str] | None = None,
                       stats: dict[str, os.stat_result] | None = None) -> None:
        """Look at every path (or only ``paths``, those with directory events since the last
        look, and the files with unread bytes); retire generations whose file was rotated
        (module table). ``stats``: ``stat`` results just taken (by a re-scan), used instead
        of a new ``stat`` of the same path (a path missing from them is looked at anew)."""
        if paths is None:
            looked = list(self.current.items())
        else:
            # Also every file with unread bytes: the poll that follows reads it, and must not
            # read a file cut and rewritten since its last stat (its events may still be on
            # their way from the watcher thread).
            looked = [(path, gen) for path, gen in self.current.items()
                      if path in paths or gen.size > gen.reader.read_position]
        for path, gen in looked:
            st = stat_now(path, stats)
            if st is None:
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

    def _has_room(self, gen: Generation) -> bool:
        return (len(gen.inflight) < self.settings.max_inflight_batches
                and self.inflight_bytes < self.settings.max_inflight_bytes)

    def poll(self, seen: float | None = None,
             next_read_at: float | None = None) -> PollResult:
        """Read what the windows allow from every generation (retired ones first); the
        entries carry ``seen`` and ``next_read_at`` (monotonic; when the source saw their
        lines and when it reads again at the earliest: ``Entries``; None: not known)."""
        out = PollResult(ack_reads=bool(self.retired))
        now = self.clock()
        for gen in [*self.retired, *self.current.values()]:
            if gen.finished:
                held = held_entry(gen.reader)  # cut in place with a multiline entry open
                if held is not None:
                    lines = self._text_only(gen, held.lines, out)
                    if lines:
                        out.entries.append(self._entries(gen, held, lines, seen, next_read_at))
                        out.lines += len(lines)
                    else:
                        self._settle_unsent(gen, held, out)
                continue
            if not self._has_room(gen):
                out.ack_reads = True
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
                    out.entries.append(self._entries(gen, result, lines, seen, next_read_at))
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

    def _entries(self, gen: Generation, result: ReadResult, lines: list[str],
                 seen: float | None, next_read_at: float | None) -> Entries:
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
                       now if stamps is None else stamps[0], token, size, timestamps=stamps,
                       seen=seen, next_read_at=next_read_at)

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

    def ack(self, tokens: Iterable[ReadToken]) -> list[FilePosition]:
        """Settle reads; returns the positions that advanced (to commit)."""
        touched: dict[str, Generation] = {}
        for token in tokens:
            gen = self.generations.get(token.generation)
            if gen is None or token.epoch != gen.epoch:
                continue
            for read in gen.inflight:
                if read.token is token or read.token == token:  # the same object, mostly
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
