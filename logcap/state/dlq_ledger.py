"""The DLQ's idempotency ledger: which entries were already re-sent (``reprocessed.json``).

Reprocessing claims entries before sending them; an id claimed once is never claimed again, so a
repeated or concurrent reprocess never sends an entry twice. A claim is written (atomically:
tmp, fsync, rename, fsync dir; the previous copy kept as ``.bak``) before :meth:`claim` returns.
The file is ``flock``-ed through ``reprocessed.lock`` while claiming and re-read under that lock,
so claims by another process count too. Layout (version 1)::

    {"version": 1, "entries": {"<id>": {"claimed_at": 1700000000.5, "finished": null}}}

``finished`` is null while the resend is under way, then its outcome (``"delivered"``,
``"rejected"``, ``"gone"``). Outcomes are kept in memory and written by :meth:`flush` (the
actor flushes periodically and on stop): a crash before then makes the resend run again at the
next start, at least once and with the original timestamps. A resend given up is
:meth:`release`-d: its claim is removed, so a later reprocess may try it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from logcap.state.atomic import atomic_write_bytes

__all__ = ["LEDGER_FILE", "LEDGER_VERSION", "LOCK_FILE", "ReprocessLedger"]

LEDGER_FILE = "reprocessed.json"
LOCK_FILE = "reprocessed.lock"
LEDGER_VERSION = 1


class ReprocessLedger:
    """The ledger of one DLQ directory (module docstring). Thread-safe."""

    def __init__(self, directory: str, clock: Callable[[], float]) -> None:
        self.path = os.path.join(directory, LEDGER_FILE)
        self._lock_path = os.path.join(directory, LOCK_FILE)
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    def load(self) -> list[str]:
        """Read the file (its backup if it is damaged), merged with what is in memory;
        return the problems found. Never raises for bad data."""
        with self._lock:
            problems: list[str] = []
            for candidate in (self.path, self.path + ".bak"):
                try:
                    with open(candidate, "rb") as handle:
                        doc = json.loads(handle.read())
                    if doc.get("version") != LEDGER_VERSION or not isinstance(
                            doc["entries"], dict):
                        raise ValueError("not a version 1 ledger")
                except FileNotFoundError:
                    if candidate == self.path:
                        return problems
                    continue
                except (ValueError, KeyError, AttributeError, OSError) as exc:
                    problems.append(f"{os.path.basename(candidate)}: unreadable ({exc})")
                    continue
                for entry_id, state in doc["entries"].items():
                    mine = self._entries.get(entry_id, {})  # an outcome not yet written wins
                    self._entries[entry_id] = {**state, **{k: v for k, v in mine.items() if v}}
                if problems:
                    problems.append(f"{LEDGER_FILE}: recovered from its backup")
                return problems
            problems.append(f"{LEDGER_FILE}: no readable copy: entries reprocessed before may "
                            "be sent again")
            return problems

    def reset(self) -> None:
        with self._lock:
            self._entries, self._dirty = {}, False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.load()  # what another process recorded counts too
                yield
            finally:
                os.close(fd)  # releases the flock

    def _write(self, known: Collection[str]) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k in known}
        data = json.dumps({"version": LEDGER_VERSION, "entries": self._entries},
                          sort_keys=True).encode()
        atomic_write_bytes(self.path, data, keep_backup=True)
        self._dirty = False

    def claimed(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` already claimed (no change)."""
        with self._lock:
            return {entry_id for entry_id in ids if entry_id in self._entries}

    def claim(self, ids: Iterable[str], known: Collection[str]) -> list[str]:
        """Claim those of ``ids`` that are in ``known`` (the stored entries) and were never
        claimed; return them, in order, once written durably."""
        with self._locked():
            fresh = [i for i in dict.fromkeys(ids) if i in known and i not in self._entries]
            if fresh:
                now = self._clock()
                for entry_id in fresh:
                    self._entries[entry_id] = {"claimed_at": now, "finished": None}
                self._write(known)
            return fresh

    def finish(self, ids: Iterable[str], outcome: str) -> None:
        """Record the outcome of claimed resends in memory (written by :meth:`flush`)."""
        with self._lock:
            for entry_id in ids:
                if entry_id in self._entries:
                    self._entries[entry_id]["finished"] = outcome
                    self._dirty = True

    def release(self, ids: Iterable[str], known: Collection[str]) -> None:
        """Remove claims durably, so a later reprocess may claim those ids again."""
        with self._locked():
            for entry_id in ids:
                self._entries.pop(entry_id, None)
            self._write(known)

    def forget(self, ids: Iterable[str]) -> None:
        """Entries no longer stored (retention): their claims go at the next write."""
        with self._lock:
            for entry_id in ids:
                if self._entries.pop(entry_id, None) is not None:
                    self._dirty = True

    def unfinished(self, ordered_ids: Iterable[str]) -> list[str]:
        """Those of ``ordered_ids`` claimed with no recorded outcome, in the given order."""
        with self._lock:
            return [i for i in ordered_ids
                    if i in self._entries and self._entries[i].get("finished") is None]

    @property
    def dirty(self) -> bool:
        return self._dirty

    def flush(self, known: Collection[str]) -> None:
        """Write outcomes and forgotten claims, if any."""
        with self._lock:
            if not self._dirty:
                return
            with self._locked():
                self._write(known)
