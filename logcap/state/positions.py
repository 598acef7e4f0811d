"""The positions store: where each file and container was read up to, durable across restarts.

A source position is committed only once every line before it is safe (DESIGN.md §1); this
store keeps the committed positions in memory and writes them to disk now and then. On restart,
each source resumes from its stored position, so nothing is lost and little is sent twice.

Entries
    - :class:`FilePosition`, keyed by the file's ``(dev, ino)``, not by its path: a file renamed
      by rotation keeps its entry while it is drained, and the new file at the same path gets its
      own. ``fingerprint`` (first bytes, with their length) and ``prefix_hash`` (the bytes before
      the offset) are described in :mod:`logcap.sources.files.identity`. ``size_at_commit`` is
      the file's size when the position was committed (at least ``offset``), used to tell a
      shrunk file.
    - :class:`ContainerPosition`, keyed by container id: ``cursor_ns`` is the timestamp of the last
      line shipped, in nanoseconds from Docker's own timestamps; ``last_line_hash`` identifies
      that line among others with the same timestamp.
    - ``updated_at`` is set by the store from its clock at each commit (wall-clock seconds); the
      value passed in is replaced.

Forward only
    A commit with a lower offset (cursor) than the stored one for the *same identity* (same
    ``(dev, ino)`` and same fingerprint; same container id) is refused and
    :meth:`PositionsStore.commit_file` returns False: a late or duplicated commit must not send
    lines again. ``force=True`` overrides, for deliberate restarts. A different fingerprint for
    the same inode is a different file (inode reuse, truncation): its commit is accepted.

When to write
    :meth:`PositionsStore.should_flush` is true when there are unwritten changes and either
    ``flush_interval_s`` has passed since the last flush (or the clock went backwards), or
    ``max_memory_buffer`` accepted updates are pending. The owner also flushes on exit.
    :meth:`PositionsStore.flush` writes only the files whose entries changed.

On-disk format (``file_positions.json``, ``container_positions.json``, each with a ``.bak``)
    ``{"version": 1, "kind": ..., "written_at": <unix s>, "checksum": <hex>, "entries": [...]}``
    with one entry per line. ``checksum`` is the SHA-256 of the entries serialised canonically
    (``json.dumps(entries, sort_keys=True, separators=(",", ":"))``), so any damage to the
    entries is detected, whatever the layout. Written by
    :func:`~logcap.state.atomic.atomic_write_bytes` with ``keep_backup``: ``.bak`` holds the
    previous good file, and a ``kill -9`` between any two system calls leaves the old or the new
    file complete.

Loading (:meth:`PositionsStore.load`, once, before anything else)
    For each file: the primary is read; if it is unreadable JSON, truncated, of another version or
    kind, or its checksum does not match, it is renamed to ``<name>.corrupt-<UTC timestamp>``
    (never deleted) and the ``.bak`` is tried the same way; if both fail, the store starts empty
    for that kind. A :class:`LoadReport` says which was used and lists every problem, for the
    caller to log loudly. Entries that are individually malformed (in a file whose checksum is
    good) are skipped and reported. Flushing before loading is refused: it would overwrite
    positions the store never read.

Validation (:func:`validate_file`) and cleanup (:meth:`PositionsStore.cleanup`) are described on
the functions. The store is not thread-safe: one owner (the PositionsKeeper actor) calls it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from logcap.sources.files.identity import (
    FileIdentity,
    fingerprint_length,
    fingerprint_matches,
    hash_prefix,
)
from logcap.state.atomic import (
    BACKUP_SUFFIX,
    atomic_write_bytes,
    move_aside,
    remove_stale_temp_files,
)

__all__ = [
    "CONTAINER_POSITIONS_FILE",
    "CORRUPT_INFIX",
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_MAX_MEMORY_BUFFER",
    "DEFAULT_MAX_POSITION_AGE_S",
    "FILE_POSITIONS_FILE",
    "FORMAT_VERSION",
    "ContainerPosition",
    "FilePosition",
    "LoadReport",
    "PositionsLoadReport",
    "PositionsStore",
    "Validity",
    "validate_file",
]

FORMAT_VERSION = 1
FILE_POSITIONS_FILE = "file_positions.json"
CONTAINER_POSITIONS_FILE = "container_positions.json"
CORRUPT_INFIX = ".corrupt-"

DEFAULT_FLUSH_INTERVAL_S = 5.0
DEFAULT_MAX_MEMORY_BUFFER = 1000
"""Accepted updates pending in memory that force a flush."""
DEFAULT_MAX_POSITION_AGE_S = 7 * 24 * 3600.0

_FILE_KIND = "file_positions"
_CONTAINER_KIND = "container_positions"

FileKey = tuple[int, int]
LoadSource = Literal["primary", "backup", "empty"]


class Validity(enum.Enum):
    """Whether a stored file position can be used (see :func:`validate_file`)."""

    RESUME = "resume"
    """Same file, unchanged up to the offset: continue from the offset."""
    RESTART_FROM_ZERO = "restart_from_zero"
    """Another file lives at the path now: read it from 0 (and look for the old one renamed)."""
    MISSING = "missing"
    """The path does not name a readable regular file any more."""
    TRUNCATED = "truncated"
    """Same inode, but cut or rewritten before the offset: read the tail from a rotated copy if
    there is one, then the file from 0."""


@dataclass(frozen=True, slots=True)
class FilePosition:
    """How far a file was read; see the module docstring for each field."""

    path: str
    dev: int
    ino: int
    fingerprint: str
    fingerprint_len: int
    offset: int
    prefix_hash: str
    size_at_commit: int
    updated_at: float

    @classmethod
    def of(
        cls,
        path: str,
        identity: FileIdentity,
        offset: int,
        prefix_hash: str,
        size_at_commit: int,
        updated_at: float = 0.0,
    ) -> FilePosition:
        """Build a position from a file's identity (``fingerprint_len`` is derived)."""
        return cls(
            path=path,
            dev=identity.dev,
            ino=identity.ino,
            fingerprint=identity.fingerprint,
            fingerprint_len=fingerprint_length(identity.fingerprint),
            offset=offset,
            prefix_hash=prefix_hash,
            size_at_commit=size_at_commit,
            updated_at=updated_at,
        )

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino, self.fingerprint)


@dataclass(frozen=True, slots=True)
class ContainerPosition:
    """How far a container's log stream was read; see the module docstring."""

    id: str
    name: str
    cursor_ns: int
    last_line_hash: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class LoadReport:
    """How one positions file was loaded: from which copy, and every problem met."""

    source: LoadSource
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    moved_aside: list[str] = field(default_factory=list)
    """Where corrupt files were renamed to."""


@dataclass(frozen=True, slots=True)
class PositionsLoadReport:
    """The outcome of :meth:`PositionsStore.load` for both files."""

    files: LoadReport
    containers: LoadReport

    @property
    def problems(self) -> list[str]:
        return [*self.files.problems, *self.containers.problems]

    @property
    def ok(self) -> bool:
        """True when nothing needs the operator's attention."""
        return not self.problems


# --- entry (de)serialisation ------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value  # NaN != NaN


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_Schema = dict[str, Callable[[Any], bool]]
_FILE_SCHEMA: _Schema = {
    "path": _is_str,
    "dev": _is_int,
    "ino": _is_int,
    "fingerprint": _is_str,
    "fingerprint_len": _is_int,
    "offset": _is_int,
    "prefix_hash": _is_str,
    "size_at_commit": _is_int,
    "updated_at": _is_number,
}
_CONTAINER_SCHEMA: _Schema = {
    "id": _is_str,
    "name": _is_str,
    "cursor_ns": _is_int,
    "last_line_hash": _is_str,
    "updated_at": _is_number,
}


def _canonical(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        entries, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _checksum(entries: list[dict[str, Any]]) -> str:
    return hashlib.sha256(_canonical(entries)).hexdigest()


def _check_types(raw: Any, schema: _Schema) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("entry is not an object")
    missing = [name for name in schema if name not in raw]
    if missing:
        raise ValueError(f"missing fields {missing}")
    for name, valid in schema.items():
        if not valid(raw[name]):
            raise ValueError(f"field {name!r} has a wrong type: {raw[name]!r}")
    return {name: raw[name] for name in schema}


def _file_from_json(raw: Any) -> FilePosition:
    values = _check_types(raw, _FILE_SCHEMA)
    values["updated_at"] = float(values["updated_at"])
    pos = FilePosition(**values)
    _check_file_position(pos)
    return pos


def _container_from_json(raw: Any) -> ContainerPosition:
    values = _check_types(raw, _CONTAINER_SCHEMA)
    values["updated_at"] = float(values["updated_at"])
    pos = ContainerPosition(**values)
    _check_container_position(pos)
    return pos


def _check_file_position(pos: FilePosition) -> None:
    if pos.offset < 0 or pos.size_at_commit < 0 or pos.dev < 0 or pos.ino < 0:
        raise ValueError("negative offset, size, device or inode")
    if fingerprint_length(pos.fingerprint) != pos.fingerprint_len:
        raise ValueError("fingerprint_len does not match the fingerprint")
    if pos.prefix_hash:
        fingerprint_length(pos.prefix_hash)


def _check_container_position(pos: ContainerPosition) -> None:
    if not pos.id:
        raise ValueError("empty container id")
    if pos.cursor_ns < 0:
        raise ValueError("negative cursor")


# --- validation -------------------------------------------------------------------------------


def validate_file(pos: FilePosition) -> Validity:
    """Can ``pos`` be resumed? Looks at the file at ``pos.path`` now; never raises.

    - MISSING: the path does not exist, is not a regular file, or cannot be opened.
    - RESTART_FROM_ZERO: another inode lives at the path, or the same inode no longer starts
      with the stored fingerprint (inode reuse).
    - TRUNCATED: same file, but it is shorter than the offset or than ``size_at_commit``, or the
      bytes before the offset changed (``prefix_hash``): it was truncated, perhaps rewritten.
    - RESUME: same ``(dev, ino)``, same first bytes, same bytes before the offset. Also when
      only ``st_dev`` changed but the inode, the fingerprint and the prefix hash all match:
      device numbers are not stable across reboots for some file systems and bind mounts.
    """
    try:
        fd = os.open(pos.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return Validity.MISSING
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Validity.MISSING
        if st.st_ino != pos.ino:
            return Validity.RESTART_FROM_ZERO
        shrunk = st.st_size < pos.offset or st.st_size < pos.size_at_commit
        head_same = fingerprint_matches(pos.fingerprint, fd)
        tail_same = not pos.prefix_hash or hash_prefix(fd, pos.offset) == pos.prefix_hash
        if st.st_dev != pos.dev:
            if shrunk or not head_same or not tail_same:
                return Validity.RESTART_FROM_ZERO
            return Validity.RESUME
        if shrunk:
            return Validity.TRUNCATED
        if not head_same:
            return Validity.RESTART_FROM_ZERO
        if not tail_same:
            return Validity.TRUNCATED
        return Validity.RESUME
    except OSError:
        return Validity.MISSING
    finally:
        os.close(fd)


# --- the store --------------------------------------------------------------------------------


class _Corrupt(Exception):
    """A positions file that cannot be trusted, and why."""


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
        self._dirty = {_FILE_KIND: False, _CONTAINER_KIND: False}
        self._pending = 0
        self._last_flush = clock()
        self._loaded = False

    # paths

    @property
    def file_positions_path(self) -> str:
        return os.path.join(self.directory, FILE_POSITIONS_FILE)

    @property
    def container_positions_path(self) -> str:
        return os.path.join(self.directory, CONTAINER_POSITIONS_FILE)

    def _path(self, kind: str) -> str:
        return self.file_positions_path if kind == _FILE_KIND else self.container_positions_path

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
        _check_file_position(pos)
        stored = self._files.get(pos.key)
        if (
            stored is not None
            and not force
            and stored.fingerprint == pos.fingerprint
            and pos.offset < stored.offset
        ):
            return False
        stamped = dataclasses.replace(pos, updated_at=self._clock())
        self._files[pos.key] = stamped
        changed = stored is None or _without_time(stored) != _without_time(pos)
        self._mark(_FILE_KIND, changed=changed)
        return True

    def commit_container(self, pos: ContainerPosition, *, force: bool = False) -> bool:
        """Record ``pos``; False if its cursor is behind the stored one for the same container."""
        _check_container_position(pos)
        stored = self._containers.get(pos.id)
        if stored is not None and not force and pos.cursor_ns < stored.cursor_ns:
            return False
        stamped = dataclasses.replace(pos, updated_at=self._clock())
        self._containers[pos.id] = stamped
        self._mark(
            _CONTAINER_KIND,
            changed=stored is None or _without_time(stored) != _without_time(pos),
        )
        return True

    def forget_file(self, dev: int, ino: int) -> bool:
        """Drop a file's entry (a rotated file drained to its end); True if there was one."""
        if self._files.pop((dev, ino), None) is None:
            return False
        self._mark(_FILE_KIND, changed=True)
        return True

    def forget_container(self, container_id: str) -> bool:
        """Drop a container's entry; True if there was one."""
        if self._containers.pop(container_id, None) is None:
            return False
        self._mark(_CONTAINER_KIND, changed=True)
        return True

    def _mark(self, kind: str, *, changed: bool) -> None:
        self._dirty[kind] = True
        if changed:
            self._pending += 1

    # flushing

    def should_flush(self, now: float | None = None) -> bool:
        """Whether :meth:`flush` is due (see *When to write* in the module docstring)."""
        if not self.dirty:
            return False
        if self._pending >= self.max_memory_buffer:
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
        for kind in (_FILE_KIND, _CONTAINER_KIND):
            if not self._dirty[kind]:
                continue
            atomic_write_bytes(self._path(kind), self._serialise(kind, now), keep_backup=True)
            self._dirty[kind] = False
            written += 1
        self._pending = 0
        self._last_flush = now
        return written

    def _serialise(self, kind: str, now: float) -> bytes:
        entries: list[dict[str, Any]]
        if kind == _FILE_KIND:
            ordered_files = sorted(self._files.values(), key=lambda p: (p.path, p.dev, p.ino))
            entries = [dataclasses.asdict(p) for p in ordered_files]
        else:
            ordered = sorted(self._containers.values(), key=lambda p: p.id)
            entries = [dataclasses.asdict(p) for p in ordered]
        header = json.dumps(
            {
                "version": FORMAT_VERSION,
                "kind": kind,
                "written_at": now,
                "checksum": _checksum(entries),
            },
            ensure_ascii=True,
            allow_nan=False,
        )
        lines = [json.dumps(e, sort_keys=True, ensure_ascii=True, allow_nan=False) for e in entries]
        body = ",\n".join(lines)
        text = header[:-1] + ', "entries": [\n' + body + ("\n" if lines else "") + "]}\n"
        return text.encode("ascii")

    # loading

    def load(self) -> PositionsLoadReport:
        """Read both files from disk, replacing memory (see *Loading* in the module docstring).

        Raises OSError only if ``directory`` cannot be created.
        """
        os.makedirs(self.directory, exist_ok=True)
        files_report, files = self._load_kind(_FILE_KIND)
        containers_report, containers = self._load_kind(_CONTAINER_KIND)
        self._files = {pos.key: pos for pos in files}
        self._containers = {pos.id: pos for pos in containers}
        self._pending = 0
        self._dirty = {
            _FILE_KIND: files_report.source == "backup" or bool(files_report.problems),
            _CONTAINER_KIND: containers_report.source == "backup"
            or bool(containers_report.problems),
        }
        self._last_flush = self._clock()
        self._loaded = True
        return PositionsLoadReport(files=files_report, containers=containers_report)

    def _load_kind(self, kind: str) -> tuple[LoadReport, list[Any]]:
        """The valid entries of ``kind`` (positions) and how they were found."""
        primary = self._path(kind)
        remove_stale_temp_files(primary)
        problems: list[str] = []
        moved: list[str] = []
        parse = _file_from_json if kind == _FILE_KIND else _container_from_json
        source: LoadSource
        for source, path in (("primary", primary), ("backup", primary + BACKUP_SUFFIX)):
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
            except FileNotFoundError:
                if source == "primary" and os.path.exists(primary + BACKUP_SUFFIX):
                    problems.append(f"{path}: missing while its backup exists; using the backup")
                continue
            except OSError as exc:
                problems.append(f"{path}: cannot be read: {exc.strerror or exc}")
                continue
            try:
                entries = self._parse(raw, kind)
            except _Corrupt as exc:
                problems.append(f"{path}: {exc}")
                aside = self._move_aside(path, problems)
                if aside is not None:
                    moved.append(aside)
                continue
            valid = []
            for index, entry in enumerate(entries):
                try:
                    valid.append(parse(entry))
                except (ValueError, TypeError) as exc:
                    problems.append(f"{path}: entry {index} skipped: {exc}")
            return LoadReport(source, problems, len(valid), moved), valid
        return LoadReport("empty", problems, 0, moved), []

    @staticmethod
    def _parse(raw: bytes, kind: str) -> list[Any]:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Corrupt(f"not valid JSON ({exc}); truncated or damaged") from None
        if not isinstance(doc, dict):
            raise _Corrupt("not a JSON object")
        version = doc.get("version")
        if version != FORMAT_VERSION:
            raise _Corrupt(f"unsupported version {version!r} (expected {FORMAT_VERSION})")
        if doc.get("kind") != kind:
            raise _Corrupt(f"kind is {doc.get('kind')!r}, expected {kind!r}")
        entries = doc.get("entries")
        if not isinstance(entries, list):
            raise _Corrupt("'entries' is missing or not a list")
        if doc.get("checksum") != _checksum(entries):
            raise _Corrupt("checksum mismatch: the entries were damaged")
        return entries

    def _move_aside(self, path: str, problems: list[str]) -> str | None:
        """Set a corrupt file aside (see :func:`~logcap.state.atomic.move_aside`)."""
        try:
            target = move_aside(path, CORRUPT_INFIX, self._clock())
        except OSError as exc:
            problems.append(f"{path}: could not be moved aside: {exc.strerror or exc}")
            return None
        problems.append(f"{path}: moved aside to {target}")
        return target

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
            self._dirty[_FILE_KIND] = True
        if stale_containers:
            self._dirty[_CONTAINER_KIND] = True
        return len(stale_files) + len(stale_containers)

    def snapshot(self) -> dict[str, Any]:
        """Every position and identity, JSON-ready (for ``GET /positions``)."""
        return {
            "directory": self.directory,
            "files": [
                dataclasses.asdict(p)
                for p in sorted(self._files.values(), key=lambda p: (p.path, p.dev, p.ino))
            ],
            "containers": [
                dataclasses.asdict(p) for p in sorted(self._containers.values(), key=lambda p: p.id)
            ],
            "pending_updates": self._pending,
            "dirty": self.dirty,
            "last_flush_at": self._last_flush,
        }


def _without_time(pos: FilePosition | ContainerPosition) -> tuple[Any, ...]:
    values = dataclasses.astuple(pos)
    return values[:-1]
