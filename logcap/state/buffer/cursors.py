"""Per-sink cursors of the disk buffer: what each sink has acknowledged, and where it reads.

A :class:`SinkCursor` keeps, for one sink, ``acked`` (every seq <= ``acked`` is settled for that
sink), the set of seqs acknowledged out of order above it, and ``next_read``, the in-memory read
position. Acks may arrive in any order; ``acked`` advances over every contiguous settled seq.
A seq the store knows is lost (an unreadable record, a dropped segment) counts as settled for
every sink, so a hole never stalls a cursor.

Only ``acked`` is persisted, with the highest seq ever assigned (``last_seq``), in
``cursors.json`` (and its ``.bak``), written by
:func:`~logcap.state.atomic.atomic_write_bytes`::

    {"version": 1, "kind": "buffer-cursors", "written_at": <unix s>, "last_seq": <int>,
     "sinks": {"<sink>": <acked seq>, ...}, "checksum": "<hex>"}

``checksum`` is the SHA-256 of ``{"last_seq": ..., "sinks": ...}`` serialised with sorted keys
and no spaces. A damaged file (bad JSON, other version or kind, checksum mismatch) is renamed
``cursors.json.corrupt-<UTC time>`` (kept for a post-mortem) and the backup is tried; with
neither, every sink starts from the oldest stored record: duplicates, never a loss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from logcap.state.atomic import BACKUP_SUFFIX, atomic_write_bytes, move_aside

__all__ = [
    "CURSORS_FILE",
    "CURSORS_VERSION",
    "CursorTable",
    "CursorsLoad",
    "SinkCursor",
    "load_cursors",
    "parse_cursors",
    "write_cursors",
]

CURSORS_FILE = "cursors.json"
CURSORS_VERSION = 1
_KIND = "buffer-cursors"
_CORRUPT_INFIX = ".corrupt-"


@dataclass(slots=True)
class SinkCursor:
    """One sink's acknowledgement state and read position."""

    acked: int = 0
    pending: set[int] = field(default_factory=set)
    next_read: int = 1

    def is_settled(self, seq: int) -> bool:
        return seq <= self.acked or seq in self.pending

    def settle(self, seq: int, lost: Container[int]) -> None:
        """Mark exactly ``seq`` acknowledged, then advance over contiguous settled seqs."""
        if seq > self.acked:
            self.pending.add(seq)
            self.advance(lost)

    def settle_through(self, seq: int, lost: Container[int]) -> None:
        """Mark every seq <= ``seq`` settled (a dropped segment, the start of the store)."""
        if seq > self.acked:
            self.acked = seq
            self.pending = {s for s in self.pending if s > seq}
        self.advance(lost)
        self.next_read = max(self.next_read, self.acked + 1)

    def advance(self, lost: Container[int]) -> None:
        following = self.acked + 1
        while True:
            if following in self.pending:
                self.pending.discard(following)
            elif following not in lost:
                break
            following += 1
        self.acked = following - 1

    def rewind(self) -> None:
        """Read again from the first unacknowledged seq."""
        self.next_read = self.acked + 1


class CursorTable:
    """The cursors of every sink, and the seqs known to be lost (settled for all of them)."""

    def __init__(self, sinks: Collection[str]) -> None:
        self.sinks = tuple(sinks)
        self.cursors: dict[str, SinkCursor] = {}
        self.lost: set[int] = set()

    def start(self, acked: Mapping[str, int], *, first_seq: int, last_seq: int) -> None:
        """Set every sink's cursor from the persisted ``acked`` (a sink without an entry
        starts at ``first_seq``), then settle everything below ``first_seq`` and the lost seqs."""
        for sink in self.sinks:
            cursor = SinkCursor(acked=min(acked.get(sink, first_seq - 1), last_seq))
            cursor.settle_through(first_seq - 1, self.lost)
            cursor.rewind()
            self.cursors[sink] = cursor

    def add_sink(self, sink: str, acked: int) -> None:
        """A sink joins with every seq <= ``acked`` settled for it (it reads what comes after)."""
        if sink in self.cursors:
            raise ValueError(f"sink {sink!r} has a cursor already")
        cursor = SinkCursor(acked=acked)
        cursor.advance(self.lost)
        cursor.rewind()
        self.cursors[sink] = cursor
        self.sinks = (*self.sinks, sink)

    def remove_sink(self, sink: str) -> None:
        """A sink leaves: its cursor no longer holds records back (unknown sinks ignored)."""
        if self.cursors.pop(sink, None) is not None:
            self.sinks = tuple(s for s in self.sinks if s != sink)

    def __getitem__(self, sink: str) -> SinkCursor:
        try:
            return self.cursors[sink]
        except KeyError:
            raise ValueError(f"unknown sink {sink!r} (known: {', '.join(self.sinks)})") from None

    def floor(self, default: int) -> int:
        """The highest seq settled for every sink (``default`` without sinks)."""
        return min((cursor.acked for cursor in self.cursors.values()), default=default)

    def pending_somewhere(self, seq: int) -> bool:
        """Some sink has not settled ``seq`` (and it is not known lost)."""
        return seq not in self.lost and any(
            not cursor.is_settled(seq) for cursor in self.cursors.values())

    def settle_through(self, seq: int) -> None:
        """Every seq <= ``seq`` is gone: settle it for every sink."""
        for cursor in self.cursors.values():
            cursor.settle_through(seq, self.lost)

    def mark_lost(self, seq: int) -> None:
        """``seq`` can never be read: settle it for every sink."""
        self.lost.add(seq)
        for cursor in self.cursors.values():
            cursor.advance(self.lost)

    def prune(self) -> None:
        """Forget lost seqs every cursor has passed."""
        floor = self.floor(default=max(self.lost, default=0))
        self.lost = {seq for seq in self.lost if seq > floor}

    def acked(self) -> dict[str, int]:
        return {sink: cursor.acked for sink, cursor in self.cursors.items()}


@dataclass(frozen=True, slots=True)
class CursorsLoad:
    """What :func:`load_cursors` found; ``problems`` are for the caller to log loudly."""

    source: Literal["primary", "backup", "missing", "empty"]
    last_seq: int = 0
    acked: Mapping[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    moved_aside: tuple[str, ...] = ()


def _canonical(last_seq: int, acked: Mapping[str, int]) -> bytes:
    content = {"last_seq": last_seq, "sinks": dict(acked)}
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_cursors(path: str, last_seq: int, acked: Mapping[str, int], now: float) -> None:
    """Persist the cursors crash-safely (the previous file kept as ``.bak``)."""
    document = {
        "version": CURSORS_VERSION,
        "kind": _KIND,
        "written_at": now,
        "last_seq": last_seq,
        "sinks": dict(sorted(acked.items())),
        "checksum": hashlib.sha256(_canonical(last_seq, acked)).hexdigest(),
    }
    atomic_write_bytes(path, json.dumps(document, indent=1).encode("utf-8") + b"\n",
                       keep_backup=True)


def parse_cursors(data: bytes) -> tuple[int, dict[str, int]]:
    """``(last_seq, {sink: acked})`` from the file's bytes; ValueError says what is wrong."""
    try:
        document: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("version") != CURSORS_VERSION or document.get("kind") != _KIND:
        raise ValueError(f"unknown version/kind {document.get('version')!r}/"
                         f"{document.get('kind')!r}")
    last_seq, sinks = document.get("last_seq"), document.get("sinks")
    if type(last_seq) is not int or last_seq < 0 or not isinstance(sinks, dict):
        raise ValueError("last_seq or sinks missing or of the wrong type")
    if any(type(seq) is not int or not 0 <= seq <= last_seq for seq in sinks.values()):
        raise ValueError("a sink's seq is not an integer in [0, last_seq]")
    if hashlib.sha256(_canonical(last_seq, sinks)).hexdigest() != document.get("checksum"):
        raise ValueError("checksum mismatch")
    return last_seq, sinks


def load_cursors(path: str, now: float) -> CursorsLoad:
    """Read the cursors: the primary, else the backup (see the module docstring)."""
    problems: list[str] = []
    moved: list[str] = []
    seen_any = False
    candidates: tuple[tuple[str, Literal["primary", "backup"]], ...] = (
        (path, "primary"), (path + BACKUP_SUFFIX, "backup"))
    for candidate, source in candidates:
        try:
            with open(candidate, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            continue
        seen_any = True
        try:
            last_seq, acked = parse_cursors(data)
        except ValueError as exc:
            problems.append(f"{candidate}: {exc}")
            try:
                moved.append(move_aside(candidate, _CORRUPT_INFIX, now))
            except OSError as move_error:
                problems.append(f"{candidate}: could not be set aside: {move_error}")
            continue
        if source == "backup":
            problems.append(f"{path}: using the backup {os.path.basename(candidate)}")
        return CursorsLoad(source, last_seq, acked, tuple(problems), tuple(moved))
    return CursorsLoad("empty" if seen_any else "missing", problems=tuple(problems),
                       moved_aside=tuple(moved))
