"""Finding files and deciding where each is read from: scans, the watcher's arrivals, the
positions of the last run, and files reopened after they were closed.

Identity, never twice (issue 9). Every file found (by a scan, by a rotation check, or opened
at once by the watcher on a creation or rename: :meth:`FileAdoption.adopt`) is first looked up
by identity (:meth:`FileAdoption._known`): a file followed already has its new descriptor
closed; a file closed while idle, or drained and closed, continues from its offset when it
still starts with its fingerprint and holds the same bytes before that offset; a reused inode,
or a file shorter than the offset, is new and read from 0. A new file the watcher found under
a rotated name is a generation the tailer never saw at its path: read in full (from 0), then
closed.

Start-up resolution of a discovered path (positions from the previous run):

* a stored position with this file's identity: validated; resume at its offset, or (file cut)
  drain the tail from the rotated copy, then read the file from 0;
* stored positions at this path for other inodes: those files were rotated away while logcap
  was down; each found renamed (same inode, same first bytes) is drained from its offset;
* no stored position: ``start_at`` (beginning: 0, end: the current size) for the files
  present at the first scan; files that appear later are read from 0.

In every case the disk buffer is the positions' write-ahead log: bytes it holds durably are
not read again (:meth:`~logcap.sources.files.file_table.FileTable._past_buffered`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from logcap.sources.files.compressed_follow import CompressedFiles
from logcap.sources.files.discovery import scan
from logcap.sources.files.file_table import CAP_PROBLEM, SkippedFile, log, stat_now
from logcap.sources.files.generation import (
    ClosedFile,
    open_log,
)
from logcap.sources.files.rotation import find_renamed, find_rotated_copy
from logcap.sources.files.watcher import Arrival
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    identity_of,
)
from logcap.state.positions import FilePosition, Validity, validate_file


class FileAdoption(CompressedFiles):
    """The tailer's discovery and resumption of files (module docstring)."""

    def rescan(self, stats: dict[str, os.stat_result] | None = None) -> list[str]:
        """Pick up files that appeared; returns new problems (path: reason) to report.

        A matched path whose file is already followed (under another name: a rotated file
        the globs match too), or is a drained file unchanged since it was closed, is not
        opened; one that is a known file under a new name continues from its offset.
        ``stats``, when given, receives the scan's ``stat`` of every matched file (links
        followed), for a sweep that looks at every path right after.
        """
        result = scan(self.settings.include, self.settings.exclude)
        if stats is not None:
            stats.update(result.files)
        self.unmatched = result.unmatched
        self.links = result.links
        problems: list[str] = []
        for err in result.errors:
            self._note_problem(err.path, err.reason, problems)
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

    def _open_path(self, path: str, size: int, problems: list[str],
                   first: bool = False) -> None:
        try:
            self._discover(path, size, first or self._first_scan)
        except (OSError, SkippedFile) as exc:
            reason = str(exc) if isinstance(exc, SkippedFile) else exc.strerror or str(exc)
            self._note_problem(path, reason, problems)

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
                self._note_problem(arrival.path, str(exc), problems)
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

    def sweep_dormant(self, paths: set[str] | None = None,
                      stats: dict[str, os.stat_result] | None = None) -> None:
        """Reopen the closed current files that changed (by ``stat``; only those among
        ``paths``, the ones with directory events, when given), as room under the cap allows
        (the longest closed first). A file found rotated while closed has its unread tail
        read under its new name; a reused inode or a file shorter than its offset is a new
        file, read from 0. ``stats``: ``stat`` results just taken (by a re-scan), used
        instead of a new ``stat`` of the same path. The changed files the cap leaves closed
        are looked at again by the next call whatever its ``paths`` (:attr:`reopen_waiting`)."""
        cap = self.settings.max_open_files
        changed: list[tuple[str, ClosedFile, os.stat_result | None]] = []
        if paths is None:
            looked = list(self.dormant.items())
        else:
            if self.reopen_waiting:
                paths = paths | self.reopen_waiting
            looked = [(path, self.dormant[path]) for path in paths if path in self.dormant]
        self.reopen_waiting = set()
        for path, closed in looked:
            st = stat_now(path, stats)
            if st is None or not closed.unchanged(st):
                changed.append((path, closed, st))
        if not changed and not self.waiting and self.open_count() <= cap \
                and CAP_PROBLEM not in self.errors:
            return  # nothing to open, nothing over the cap (the common wake-up)
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
        for at, (path, closed, st) in enumerate(changed):
            if room <= 0:
                self.reopen_waiting = {path for path, _, _ in changed[at:]}
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
