"""The positions store: where each file and container was read up to, durable across restarts.

A source position is committed only once every line before it is safe; this
store keeps the committed positions in memory and writes them to disk now and then. On restart,
each source resumes from its stored position, so nothing is lost and little is sent twice.

Entries
    :class:`FilePosition` (keyed by ``(dev, ino)``) and :class:`ContainerPosition` (keyed by
    container id), described in :mod:`logcap.state.positions_entries`. ``updated_at`` is set by
    the store from its clock at each commit (wall-clock seconds); the value passed in is
    replaced.

Forward only
    A commit with a lower offset (cursor) than the stored one for the *same identity* (same
    ``(dev, ino)`` and same fingerprint; same container id) is refused and
    :meth:`PositionsStore.commit_file` returns False: a late or duplicated commit must not send
    lines again. ``force=True`` overrides, for deliberate restarts. A different fingerprint for
    the same inode is a different file (inode reuse, truncation): its commit is accepted.

Every commit is logged
    Each accepted commit and each removal is appended at once to the positions log
    (:mod:`logcap.state.positions_log`: one ``write``, no ``fsync``), so a process crash
    keeps it: committing at every ack costs microseconds, not a file replacement. A failed
    append (disk full) closes the log until the next successful flush reopens it, and is
    reported once (:meth:`PositionsStore.take_log_error`); the commits stay in memory and
    reach disk with the next snapshot, as without a log. ``log=False`` keeps no log.

When to write the snapshot
    :meth:`PositionsStore.should_flush` is true when there are unwritten changes and either
    ``flush_interval_s`` has passed since the last flush (or the clock went backwards),
    ``max_memory_buffer`` accepted updates are pending, or the log passed
    :data:`~logcap.state.positions_log.COMPACT_BYTES`. The owner also flushes on exit.
    :meth:`PositionsStore.flush` writes only the files whose entries changed, atomically, keeping
    the previous file as ``.bak`` (the format: :mod:`logcap.state.positions_format`), then
    empties the log: the snapshot holds all it said.

Loading (:meth:`PositionsStore.load`, once, before anything else)
    Both files are read as :mod:`logcap.state.positions_format` describes: a corrupt file is set
    aside and its ``.bak`` used, or the kind starts empty; then the valid prefix of the log is
    replayed over them in order (last writer wins; a torn or corrupt tail is ignored and
    reported). A :class:`PositionsLoadReport` lists every problem, for the caller to log
    loudly. Memory is replaced by what was loaded, and a kind loaded from its backup, with
    problems, or changed by the log is written again at the next flush. Positions files of an
    older logcap (no log) load as before. Flushing before loading is refused: it would
    overwrite positions the store never read.

Validation (:func:`validate_file`, in :mod:`logcap.state.positions_validation`) and cleanup
(:meth:`PositionsStore.cleanup`) are described on the functions. The store is not thread-safe:
one owner (the PositionsKeeper actor) calls it.

This module re-exports the entries, the format's names and the validation, so that everything
about positions can be imported from here.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from logcap.state.atomic import atomic_write_bytes
from logcap.state.positions_entries import (
    ContainerPosition,
    FileKey,
    FilePosition,
    check_container_position,
    check_file_position,
)
from logcap.state.positions_format import (
    CONTAINER_KIND,
    CONTAINER_POSITIONS_FILE,
    CORRUPT_INFIX,
    FILE_KIND,
    FILE_POSITIONS_FILE,
    FORMAT_VERSION,
    LoadReport,
    LoadSource,
    PositionsLoadReport,
    encode_document_of,
    encode_entry,
    encode_file_entry,
    read_positions_file,
)
from logcap.state.positions_format import checksum as _checksum  # noqa: F401 (re-export)
from logcap.state.positions_log import (
    COMPACT_BYTES,
    LOG_FILE,
    PositionsLog,
    encode_commit,
    encode_forget,
)
from logcap.state.positions_validation import Validity, validate_file

__all__ = [
    "CONTAINER_POSITIONS_FILE",
    "CORRUPT_INFIX",
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_MAX_MEMORY_BUFFER",
    "DEFAULT_MAX_POSITION_AGE_S",
    "FILE_POSITIONS_FILE",
    "FORMAT_VERSION",
    "ContainerPosition",
    "FileKey",
    "FilePosition",
    "LoadReport",
    "LoadSource",
    "PositionsLoadReport",
    "PositionsStore",
    "Validity",
    "validate_file",
]

DEFAULT_FLUSH_INTERVAL_S = 5.0
DEFAULT_MAX_MEMORY_BUFFER = 1000
"""Accepted updates pending in memory that force a flush."""
DEFAULT_MAX_POSITION_AGE_S = 7 * 24 * 3600.0


class PositionsStore:
    """In-memory positions, flushed atomically to ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        max_memory_buffer: int = DEFAULT_MAX_MEMORY_BUFFER,
        max_position_age_s: float = DEFAULT_MAX_POSITION_AGE_S,
        clock: Callable[[], float] = time.time,
        log: bool = True,
    ) -> None:
        if flush_interval_s < 0 or max_memory_buffer < 1 or max_position_age_s <= 0:
            raise ValueError(
                "flush_interval_s must be >= 0, max_memory_buffer >= 1, max_position_age_s > 0"
            )
        self.directory = os.fspath(directory)
        self.flush_interval_s = flush_interval_s
        self.max_memory_buffer = max_memory_buffer
        self.max_position_age_s = max_position_age_s
        self._clock = clock
        self._files: dict[FileKey, FilePosition] = {}
        self._containers: dict[str, ContainerPosition] = {}
        self._dirty = {FILE_KIND: False, CONTAINER_KIND: False}
        self._pending = 0
        self._last_flush = clock()
        self._loaded = False
        self._log = PositionsLog(os.path.join(self.directory, LOG_FILE)) if log else None
        self._log_error: OSError | None = None
        self._encoded: dict[Any, tuple[FilePosition | ContainerPosition, str]] = {}
        """Each position's entry as last encoded (:func:`encode_entry`), by file key or
        container id, with the position it encodes: a write re-encodes only the changed ones
        (5,000 files: most positions are unchanged between two writes)."""

    # paths

    @property
    def file_positions_path(self) -> str:
        return os.path.join(self.directory, FILE_POSITIONS_FILE)

    @property
    def container_positions_path(self) -> str:
        return os.path.join(self.directory, CONTAINER_POSITIONS_FILE)

    def _path(self, kind: str) -> str:
        return self.file_positions_path if kind == FILE_KIND else self.container_positions_path

    # state

    @property
    def pending_updates(self) -> int:
        """Accepted commits not yet flushed."""
        return self._pending

    @property
    def dirty(self) -> bool:
        """Whether memory holds changes not yet on disk."""
        return any(self._dirty.values())

    @property
    def last_flush_at(self) -> float:
        return self._last_flush

    def files(self) -> list[FilePosition]:
        return list(self._files.values())

    def containers(self) -> list[ContainerPosition]:
        return list(self._containers.values())

    def get_file(self, dev: int, ino: int) -> FilePosition | None:
        return self._files.get((dev, ino))

    def files_at(self, path: str) -> list[FilePosition]:
        """Entries recorded under ``path``, most recently updated first."""
        found = [pos for pos in self._files.values() if pos.path == path]
        found.sort(key=lambda pos: pos.updated_at, reverse=True)
        return found

    def get_container(self, container_id: str) -> ContainerPosition | None:
        return self._containers.get(container_id)

    # commits

    def commit_file(self, pos: FilePosition, *, force: bool = False) -> bool:
        """Record ``pos``; False (and nothing changes) if it would move the same file backwards.

        Raises ValueError for a malformed position (negative offset, bad fingerprint).
        """
        check_file_position(pos)
        stored = self._files.get(pos.key)
        if (
            stored is not None
            and not force
            and stored.fingerprint == pos.fingerprint
            and pos.offset < stored.offset
        ):
            return False
        stamped = pos.at(self._clock())
        self._files[pos.key] = stamped
        changed = stored is None or _without_time(stored) != _without_time(pos)
        self._mark(FILE_KIND, changed=changed)
        self._append(encode_commit(stamped))
        return True

    def commit_container(self, pos: ContainerPosition, *, force: bool = False) -> bool:
        """Record ``pos``; False if its cursor is behind the stored one for the same container."""
        check_container_position(pos)
        stored = self._containers.get(pos.id)
        if stored is not None and not force and pos.cursor_ns < stored.cursor_ns:
            return False
        stamped = dataclasses.replace(pos, updated_at=self._clock())
        self._containers[pos.id] = stamped
        self._mark(
            CONTAINER_KIND,
            changed=stored is None or _without_time(stored) != _without_time(pos),
        )
        self._append(encode_commit(stamped))
        return True

    def forget_file(self, dev: int, ino: int) -> bool:
        """Drop a file's entry (a rotated file drained to its end); True if there was one."""
        if self._files.pop((dev, ino), None) is None:
            return False
        self._mark(FILE_KIND, changed=True)
        self._append(encode_forget("file", (dev, ino)))
        return True

    def forget_container(self, container_id: str) -> bool:
        """Drop a container's entry; True if there was one."""
        if self._containers.pop(container_id, None) is None:
            return False
        self._mark(CONTAINER_KIND, changed=True)
        self._append(encode_forget("container", container_id))
        return True

    def _append(self, line: bytes) -> None:
        log_ = self._log
        if log_ is None or not log_.is_open:
            return
        try:
            log_.append(line)
        except OSError as exc:
            self._log_error = exc

    def take_log_error(self) -> OSError | None:
        """The error that closed the log since the last call (None: none)."""
        error, self._log_error = self._log_error, None
        return error

    @property
    def log_bytes(self) -> int:
        """The log's size (0 without a log, or while it is closed)."""
        return self._log.size if self._log is not None and self._log.is_open else 0

    def _mark(self, kind: str, *, changed: bool) -> None:
        self._dirty[kind] = True
        if changed:
            self._pending += 1

    # flushing

    def should_flush(self, now: float | None = None) -> bool:
        """Whether :meth:`flush` is due (see *When to write* in the module docstring)."""
        if not self.dirty:
            return False
        if self._pending >= self.max_memory_buffer or self.log_bytes > COMPACT_BYTES:
            return True
        elapsed = (self._clock() if now is None else now) - self._last_flush
        return elapsed < 0 or elapsed >= self.flush_interval_s

    def flush(self) -> int:
        """Write the changed positions files; return how many were written.

        Raises OSError (disk full ...) with the unwritten changes still pending, to be retried.
        Raises RuntimeError if :meth:`load` was never called.
        """
        if not self._loaded:
            raise RuntimeError("PositionsStore.flush() before load() would overwrite positions")
        now = self._clock()
        written = 0
        for kind in (FILE_KIND, CONTAINER_KIND):
            if not self._dirty[kind]:
                continue
            atomic_write_bytes(self._path(kind), self._serialise(kind, now), keep_backup=True)
            self._dirty[kind] = False
            written += 1
        self._pending = 0
        self._last_flush = now
        if self._log is not None:
            try:
                self._log.reset()  # the snapshot holds what it said
            except OSError as exc:
                self._log_error = exc
        return written

    def _serialise(self, kind: str, now: float) -> bytes:
        ordered: list[FilePosition] | list[ContainerPosition]
        if kind == FILE_KIND:
            ordered = sorted(self._files.values(), key=lambda p: (p.path, p.dev, p.ino))
        else:
            ordered = sorted(self._containers.values(), key=lambda p: p.id)
        cache = self._encoded
        encoded = []
        for pos in ordered:
            key = pos.key if isinstance(pos, FilePosition) else pos.id
            known = cache.get(key)
            if known is None or known[0] is not pos:
                line = (encode_file_entry(pos)
                        if isinstance(pos, FilePosition) else encode_entry(_container_json(pos)))
                known = cache[key] = (pos, line)
            encoded.append(known[1])
        if len(cache) > len(self._files) + len(self._containers):  # forgotten ones
            live = {*self._files, *self._containers}
            for key in [k for k in cache if k not in live]:
                del cache[key]
        return encode_document_of(kind, encoded, now)

    # loading

    def load(self) -> PositionsLoadReport:
        """Read both files from disk, replacing memory (see *Loading* in the module docstring).

        Raises OSError only if ``directory`` cannot be created.
        """
        os.makedirs(self.directory, exist_ok=True)
        files_report, files = self._load_kind(FILE_KIND)
        containers_report, containers = self._load_kind(CONTAINER_KIND)
        self._files = {pos.key: pos for pos in files}
        self._containers = {pos.id: pos for pos in containers}
        log_problems, replayed = self._replay_log()
        self._pending = 0
        self._dirty = {
            FILE_KIND: files_report.source == "backup" or bool(files_report.problems)
            or FILE_KIND in replayed,
            CONTAINER_KIND: containers_report.source == "backup"
            or bool(containers_report.problems) or CONTAINER_KIND in replayed,
        }
        self._last_flush = self._clock()
        self._loaded = True
        return PositionsLoadReport(files=files_report, containers=containers_report,
                                   log_problems=log_problems,
                                   log_records=sum(replayed.values()))

    def _replay_log(self) -> tuple[list[str], Counter[str]]:
        """Apply the log's valid prefix over the loaded snapshot (last writer wins); the
        problems met and how many records of each kind were applied."""
        replayed: Counter[str] = Counter()
        if self._log is None:
            return [], replayed
        content = self._log.load()
        for rec in content.records:
            if isinstance(rec, FilePosition):
                self._files[rec.key] = rec
                replayed[FILE_KIND] += 1
            elif isinstance(rec, ContainerPosition):
                self._containers[rec.id] = rec
                replayed[CONTAINER_KIND] += 1
            elif rec[0] == "file":
                self._files.pop(rec[1], None)
                replayed[FILE_KIND] += 1
            else:
                self._containers.pop(rec[1], None)
                replayed[CONTAINER_KIND] += 1
        return content.problems, replayed

    def close(self) -> None:
        """Close the log (the owner stops or crashed); nothing is written."""
        if self._log is not None:
            self._log.close()

    def _load_kind(self, kind: str) -> tuple[LoadReport, list[Any]]:
        """The valid entries of ``kind`` (positions) and how they were found."""
        return read_positions_file(self._path(kind), kind, self._clock)

    # maintenance and reporting

    def validate_file(self, pos: FilePosition) -> Validity:
        """:func:`validate_file` (here for the owner's convenience)."""
        return validate_file(pos)

    def cleanup(
        self,
        now: float | None = None,
        *,
        keep_files: Collection[FileKey] = (),
        keep_containers: Collection[str] = (),
    ) -> int:
        """Drop entries not updated for ``max_position_age_s``; return how many were dropped.

        Entries of files and containers still followed (``keep_*``) are kept however old: an
        idle log file that has not grown in weeks must not lose its position.
        """
        limit = (self._clock() if now is None else now) - self.max_position_age_s
        stale_files = [
            key
            for key, pos in self._files.items()
            if pos.updated_at < limit and key not in keep_files
        ]
        stale_containers = [
            cid
            for cid, cpos in self._containers.items()
            if cpos.updated_at < limit and cid not in keep_containers
        ]
        for key in stale_files:
            del self._files[key]
        for cid in stale_containers:
            del self._containers[cid]
        if stale_files:
            self._dirty[FILE_KIND] = True
        if stale_containers:
            self._dirty[CONTAINER_KIND] = True
        return len(stale_files) + len(stale_containers)

    def snapshot(self) -> dict[str, Any]:
        """Every position and identity, JSON-ready (for ``GET /positions``)."""
        return {
            "directory": self.directory,
            "files": [
                _file_json(p)
                for p in sorted(self._files.values(), key=lambda p: (p.path, p.dev, p.ino))
            ],
            "containers": [
                _container_json(p)
                for p in sorted(self._containers.values(), key=lambda p: p.id)
            ],
            "pending_updates": self._pending,
            "log_bytes": self.log_bytes,
            "dirty": self.dirty,
            "last_flush_at": self._last_flush,
        }


_FILE_FIELDS = tuple(f.name for f in dataclasses.fields(FilePosition))


def _file_json(pos: FilePosition) -> dict[str, Any]:
    """``pos`` by field name (what ``dataclasses.asdict`` gives, without its deep copies)."""
    return {name: getattr(pos, name) for name in _FILE_FIELDS}


def _container_json(pos: ContainerPosition) -> dict[str, Any]:
    return {"id": pos.id, "name": pos.name, "cursor_ns": pos.cursor_ns,
            "cursor": dict(pos.cursor), "updated_at": pos.updated_at}


_FILE_FIELDS_BUT_TIME = operator.attrgetter(
    *(f.name for f in dataclasses.fields(FilePosition) if f.name != "updated_at"))


def _without_time(pos: FilePosition | ContainerPosition) -> tuple[Any, ...]:
    """The entry's fields but ``updated_at`` (no deep copy: this runs at every commit)."""
    if isinstance(pos, ContainerPosition):
        return (pos.id, pos.name, pos.cursor_ns, pos.cursor)
    values: tuple[Any, ...] = _FILE_FIELDS_BUT_TIME(pos)
    return values
