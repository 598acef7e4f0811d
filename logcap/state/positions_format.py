"""The positions files on disk: their format, how they are written, and how they are loaded.

Files
    ``file_positions.json`` (:data:`FILE_POSITIONS_FILE`) and ``container_positions.json``
    (:data:`CONTAINER_POSITIONS_FILE`) in the store's directory, each with a ``.bak``.

Format (:func:`encode_document`)
    ``{"version": 1, "kind": ..., "written_at": <unix s>, "checksum": <hex>, "entries": [...]}``
    with one entry per line in its canonical form (:func:`encode_entry`), ASCII only.
    ``kind`` is :data:`FILE_KIND` or :data:`CONTAINER_KIND`;
    an entry is its position's fields by name (:mod:`logcap.state.positions_entries`).
    ``checksum`` (:func:`checksum`) is the SHA-256 of the entries serialised canonically
    (``json.dumps(entries, sort_keys=True, separators=(",", ":"))``), so any damage to the
    entries is detected, whatever the layout. The store writes the bytes with
    :func:`~logcap.state.atomic.atomic_write_bytes` and ``keep_backup``: ``.bak`` holds the
    previous good file, and a ``kill -9`` between any two system calls leaves the old or the new
    file complete.

Loading (:func:`read_positions_file`)
    Leftover temporary files of an interrupted write are removed first. Then the primary is
    read; if it is unreadable JSON, truncated, of another version or kind, or its checksum does
    not match (:func:`decode_document` raises :class:`CorruptPositionsFile`), it is renamed to
    ``<name>.corrupt-<UTC timestamp>`` (:data:`CORRUPT_INFIX`; never deleted) and the ``.bak``
    is tried the same way; a primary missing while its backup exists is reported too. If both
    fail, the kind starts empty. A :class:`LoadReport` says which copy was used and lists every
    problem, for the caller to log loudly. Entries that are individually malformed (in a file
    whose checksum is good: wrong or missing fields, or an entry invariant broken) are skipped
    and reported. :class:`PositionsLoadReport` joins the reports of both files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from logcap.state.atomic import BACKUP_SUFFIX, move_aside, remove_stale_temp_files
from logcap.state.positions_entries import (
    ContainerPosition,
    FilePosition,
    check_container_position,
    check_file_position,
)

__all__ = [
    "CONTAINER_KIND",
    "CONTAINER_POSITIONS_FILE",
    "CORRUPT_INFIX",
    "FILE_KIND",
    "FILE_POSITIONS_FILE",
    "FORMAT_VERSION",
    "CorruptPositionsFile",
    "LoadReport",
    "LoadSource",
    "PositionsLoadReport",
    "checksum",
    "container_from_json",
    "decode_document",
    "encode_document",
    "encode_document_of",
    "encode_entry",
    "encode_file_entry",
    "file_from_json",
    "read_positions_file",
]

FORMAT_VERSION = 1
FILE_POSITIONS_FILE = "file_positions.json"
CONTAINER_POSITIONS_FILE = "container_positions.json"
CORRUPT_INFIX = ".corrupt-"

FILE_KIND = "file_positions"
CONTAINER_KIND = "container_positions"

LoadSource = Literal["primary", "backup", "empty"]


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
    """The outcome of :meth:`~logcap.state.positions.PositionsStore.load` for both files."""

    files: LoadReport
    containers: LoadReport
    log_problems: list[str] = field(default_factory=list)
    """Problems of the positions log (:mod:`logcap.state.positions_log`): a torn tail."""
    log_records: int = 0
    """Records of the log replayed over the files."""

    @property
    def problems(self) -> list[str]:
        return [*self.files.problems, *self.containers.problems, *self.log_problems]

    @property
    def ok(self) -> bool:
        """True when nothing needs the operator's attention."""
        return not self.problems


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
    "cursor": lambda value: isinstance(value, dict),
    "updated_at": _is_number,
}


def encode_entry(entry: dict[str, Any]) -> str:
    """One entry in its canonical form (sorted keys, no spaces, ASCII): how it is written in
    the file and what the checksum covers."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def encode_file_entry(pos: FilePosition) -> str:
    """A file position's entry, exactly as :func:`encode_entry` writes its fields by name
    (keys in sorted order), built directly: a store with thousands of files writes them all."""
    when = pos.updated_at
    if isinstance(when, float) and (when != when or when in (_INF, -_INF)):
        raise ValueError(f"updated_at {when!r} is not a finite number")
    return (f'{{"dev":{int(pos.dev)},"fingerprint":{_json_str(pos.fingerprint)},'
            f'"fingerprint_len":{int(pos.fingerprint_len)},"ino":{int(pos.ino)},'
            f'"offset":{int(pos.offset)},"path":{_json_str(pos.path)},'
            f'"prefix_hash":{_json_str(pos.prefix_hash)},'
            f'"size_at_commit":{int(pos.size_at_commit)},"updated_at":{when!r}}}')


_json_str = json.encoder.encode_basestring_ascii
_INF = float("inf")


def _canonical_of_encoded(encoded: list[str]) -> bytes:
    # json.dumps of a list with these separators is exactly "[" + ",".join(items) + "]".
    return ("[" + ",".join(encoded) + "]").encode("ascii")


def checksum(entries: list[dict[str, Any]]) -> str:
    """The hex SHA-256 of ``entries`` serialised canonically (see the module docstring)."""
    return hashlib.sha256(_canonical_of_encoded([encode_entry(e) for e in entries])).hexdigest()


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


def file_from_json(raw: Any) -> FilePosition:
    """A file entry read back from disk; ValueError or TypeError if it is malformed."""
    values = _check_types(raw, _FILE_SCHEMA)
    values["updated_at"] = float(values["updated_at"])
    pos = FilePosition(**values)
    check_file_position(pos)
    return pos


def container_from_json(raw: Any) -> ContainerPosition:
    """A container entry read back from disk; ValueError or TypeError if it is malformed."""
    values = _check_types(raw, _CONTAINER_SCHEMA)
    values["updated_at"] = float(values["updated_at"])
    pos = ContainerPosition(**values)
    check_container_position(pos)
    return pos


def encode_document(kind: str, entries: list[dict[str, Any]], now: float) -> bytes:
    """The file for ``kind`` holding ``entries`` (in the order given), written at ``now``."""
    return encode_document_of(kind, [encode_entry(e) for e in entries], now)


def encode_document_of(kind: str, encoded: list[str], now: float) -> bytes:
    """The file for ``kind`` holding the entries already encoded by :func:`encode_entry` (a
    store re-encodes only the positions that changed since its last write)."""
    header = json.dumps(
        {
            "version": FORMAT_VERSION,
            "kind": kind,
            "written_at": now,
            "checksum": hashlib.sha256(_canonical_of_encoded(encoded)).hexdigest(),
        },
        ensure_ascii=True,
        allow_nan=False,
    )
    body = ",\n".join(encoded)
    text = header[:-1] + ', "entries": [\n' + body + ("\n" if encoded else "") + "]}\n"
    return text.encode("ascii")


class CorruptPositionsFile(Exception):
    """A positions file that cannot be trusted, and why."""


def decode_document(raw: bytes, kind: str) -> list[Any]:
    """The raw entries of a ``kind`` file; :class:`CorruptPositionsFile` if it cannot be trusted."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptPositionsFile(f"not valid JSON ({exc}); truncated or damaged") from None
    if not isinstance(doc, dict):
        raise CorruptPositionsFile("not a JSON object")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        raise CorruptPositionsFile(f"unsupported version {version!r} (expected {FORMAT_VERSION})")
    if doc.get("kind") != kind:
        raise CorruptPositionsFile(f"kind is {doc.get('kind')!r}, expected {kind!r}")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise CorruptPositionsFile("'entries' is missing or not a list")
    if doc.get("checksum") != checksum(entries):
        raise CorruptPositionsFile("checksum mismatch: the entries were damaged")
    return entries


def read_positions_file(
    primary: str, kind: str, clock: Callable[[], float]
) -> tuple[LoadReport, list[Any]]:
    """The valid entries (positions) of the ``kind`` file ``primary`` and how they were found.

    ``clock`` stamps the name of a file moved aside. Never raises for a bad or unreadable file.
    """
    remove_stale_temp_files(primary)
    problems: list[str] = []
    moved: list[str] = []
    parse = file_from_json if kind == FILE_KIND else container_from_json
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
            entries = decode_document(raw, kind)
        except CorruptPositionsFile as exc:
            problems.append(f"{path}: {exc}")
            aside = _move_aside(path, problems, clock)
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


def _move_aside(path: str, problems: list[str], clock: Callable[[], float]) -> str | None:
    """Set a corrupt file aside (see :func:`~logcap.state.atomic.move_aside`)."""
    try:
        target = move_aside(path, CORRUPT_INFIX, clock())
    except OSError as exc:
        problems.append(f"{path}: could not be moved aside: {exc.strerror or exc}")
        return None
    problems.append(f"{path}: moved aside to {target}")
    return target
