"""The positions store: durable, forward-only, defensive on load, and crash-safe on write."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from logcap.state import atomic
from logcap.state.atomic import atomic_write_bytes, move_aside
from logcap.state.file_identity import FileIdentity, hash_prefix, identity_of
from logcap.state.positions import (
    CONTAINER_POSITIONS_FILE,
    FILE_POSITIONS_FILE,
    ContainerPosition,
    FilePosition,
    PositionsStore,
    Validity,
    validate_file,
)
from logcap.state.positions_format import encode_entry, encode_file_entry
from logcap.state.positions_log import LOG_FILE

FP_A = "1024:" + "a" * 16
FP_B = "1024:" + "b" * 16


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def file_pos(
    offset: int, *, dev: int = 1, ino: int = 10, fp: str = FP_A, path: str = "/var/log/a.log"
) -> FilePosition:
    return FilePosition(
        path=path,
        dev=dev,
        ino=ino,
        fingerprint=fp,
        fingerprint_len=int(fp.split(":")[0]),
        offset=offset,
        prefix_hash="",
        size_at_commit=offset,
        updated_at=0.0,
    )


def container_pos(cursor_ns: int, cid: str = "c0ffee") -> ContainerPosition:
    return ContainerPosition(
        id=cid, name="opensips", cursor_ns=cursor_ns,
        cursor={"version": 1, "floor_ns": str(max(cursor_ns, 0)), "streams": {}}, updated_at=0.0
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> PositionsStore:
    s = PositionsStore(tmp_path, flush_interval_s=5.0, max_memory_buffer=3, clock=clock)
    s.load()
    return s


def reopen(store: PositionsStore, clock: FakeClock) -> tuple[PositionsStore, Any]:
    fresh = PositionsStore(store.directory, clock=clock)
    return fresh, fresh.load()


def offsets(store: PositionsStore) -> dict[tuple[int, int], int]:
    return {p.key: p.offset for p in store.files()}


# --- round trip, forward only -----------------------------------------------------------------


def test_positions_survive_a_flush_and_a_reload(store: PositionsStore, clock: FakeClock) -> None:
    assert store.commit_file(file_pos(100))
    assert store.commit_file(file_pos(7, ino=11, path="/var/log/\udcff-odd-bytes.log"))
    assert store.commit_container(container_pos(1_700_000_000_123_456_789))
    assert store.flush() == 2
    fresh, report = reopen(store, clock)
    assert report.files.source == "primary" and report.containers.source == "primary"
    assert report.ok and report.files.entries == 2
    assert sorted(fresh.files(), key=lambda p: p.ino) == sorted(store.files(), key=lambda p: p.ino)
    assert fresh.containers() == store.containers()
    assert fresh.get_container("c0ffee") == store.get_container("c0ffee")


def test_commits_are_stamped_with_the_store_clock(store: PositionsStore, clock: FakeClock) -> None:
    clock.now += 42
    store.commit_file(file_pos(1))
    pos = store.get_file(1, 10)
    assert pos is not None and pos.updated_at == clock.now


def test_a_lower_offset_for_the_same_file_is_refused_unless_forced(store: PositionsStore) -> None:
    assert store.commit_file(file_pos(500))
    assert not store.commit_file(file_pos(400))
    assert offsets(store) == {(1, 10): 500}
    assert store.commit_file(file_pos(400), force=True)
    assert offsets(store) == {(1, 10): 400}


def test_a_lower_offset_with_another_fingerprint_is_another_file_and_accepted(
    store: PositionsStore,
) -> None:
    store.commit_file(file_pos(500, fp=FP_A))
    assert store.commit_file(file_pos(10, fp=FP_B))
    pos = store.get_file(1, 10)
    assert pos is not None and (pos.offset, pos.fingerprint) == (10, FP_B)


def test_a_rotated_file_and_its_successor_at_the_same_path_have_separate_entries(
    store: PositionsStore, clock: FakeClock
) -> None:
    store.commit_file(file_pos(900, ino=10))
    clock.now += 1
    store.commit_file(file_pos(30, ino=11))
    assert [p.ino for p in store.files_at("/var/log/a.log")] == [11, 10]
    assert store.forget_file(1, 10) and not store.forget_file(1, 10)
    assert offsets(store) == {(1, 11): 30}


def test_a_container_cursor_only_moves_forward_unless_forced(store: PositionsStore) -> None:
    assert store.commit_container(container_pos(2_000))
    assert not store.commit_container(container_pos(1_999))
    assert store.commit_container(container_pos(2_000))  # same timestamp, next line
    assert store.commit_container(container_pos(5, cid="other"))
    assert store.commit_container(container_pos(1, cid="other"), force=True)
    stored = store.get_container("other")
    assert stored is not None and stored.cursor_ns == 1


def test_malformed_positions_are_refused_with_an_error(store: PositionsStore) -> None:
    with pytest.raises(ValueError):
        store.commit_file(file_pos(-1))
    with pytest.raises(ValueError):
        store.commit_file(file_pos(1, fp="not a fingerprint"))
    with pytest.raises(ValueError):
        store.commit_container(container_pos(-5))


# --- when to flush ----------------------------------------------------------------------------


def test_nothing_to_flush_when_nothing_changed(store: PositionsStore, clock: FakeClock) -> None:
    clock.now += 3600
    assert not store.should_flush()


def test_a_flush_is_due_once_the_interval_has_passed_with_changes(
    store: PositionsStore, clock: FakeClock
) -> None:
    store.commit_file(file_pos(1))
    assert not store.should_flush(clock.now + 4.9)
    assert store.should_flush(clock.now + 5.0)
    clock.now += 5.0
    store.flush()
    assert not store.should_flush(clock.now + 100)


def test_a_flush_is_due_at_once_when_max_memory_buffer_updates_are_pending(
    store: PositionsStore,
) -> None:
    store.commit_file(file_pos(1))
    store.commit_file(file_pos(2))
    assert not store.should_flush()
    store.commit_container(container_pos(3))
    assert store.pending_updates == 3 and store.should_flush()


def test_a_commit_that_changes_nothing_but_the_time_does_not_count_as_pending(
    store: PositionsStore,
) -> None:
    for _ in range(10):
        store.commit_file(file_pos(1))
    assert store.pending_updates == 1 and store.dirty


def test_a_clock_that_went_backwards_makes_a_flush_due(
    store: PositionsStore, clock: FakeClock
) -> None:
    store.commit_file(file_pos(1))
    assert store.should_flush(clock.now - 60)


def test_flush_writes_only_the_file_that_changed(store: PositionsStore, tmp_path: Path) -> None:
    store.commit_container(container_pos(1))
    assert store.flush() == 1
    assert (tmp_path / CONTAINER_POSITIONS_FILE).exists()
    assert not (tmp_path / FILE_POSITIONS_FILE).exists()


def test_flushing_before_loading_is_refused(tmp_path: Path) -> None:
    unloaded = PositionsStore(tmp_path)
    unloaded.commit_file(file_pos(1))
    with pytest.raises(RuntimeError):
        unloaded.flush()


def test_the_file_format_is_versioned_and_checksummed(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    store.commit_file(file_pos(123))
    store.flush()
    doc = json.loads((tmp_path / FILE_POSITIONS_FILE).read_bytes())
    assert doc["version"] == 1 and doc["kind"] == "file_positions"
    assert doc["written_at"] == clock.now and len(doc["checksum"]) == 64
    assert doc["entries"][0]["offset"] == 123 and doc["entries"][0]["fingerprint"] == FP_A


def test_each_flush_keeps_the_previous_file_as_backup(
    store: PositionsStore, tmp_path: Path
) -> None:
    store.commit_file(file_pos(1))
    store.flush()
    first = (tmp_path / FILE_POSITIONS_FILE).read_bytes()
    store.commit_file(file_pos(2))
    store.flush()
    assert (tmp_path / (FILE_POSITIONS_FILE + ".bak")).read_bytes() == first


# --- defensive loading ------------------------------------------------------------------------


def two_generations(store: PositionsStore) -> None:
    store.commit_file(file_pos(100))
    store.flush()
    store.commit_file(file_pos(200))
    store.flush()


def corrupt_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".corrupt-" in p.name)


def test_a_corrupt_primary_is_set_aside_and_the_backup_is_used(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    primary = tmp_path / FILE_POSITIONS_FILE
    primary.write_bytes(b"\x00\x00garbage")
    fresh, report = reopen(store, clock)
    assert report.files.source == "backup"
    assert any("not valid JSON" in p for p in report.problems)
    assert offsets(fresh) == {(1, 10): 100}
    [aside] = corrupt_files(tmp_path)
    assert aside.startswith(FILE_POSITIONS_FILE + ".corrupt-20231114T")
    assert (tmp_path / aside).read_bytes() == b"\x00\x00garbage"
    assert fresh.dirty and fresh.flush() == 1  # the primary is rewritten at the next flush
    assert reopen(fresh, clock)[1].files.source == "primary"


def test_a_truncated_primary_is_detected(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    primary = tmp_path / FILE_POSITIONS_FILE
    primary.write_bytes(primary.read_bytes()[:-20])
    fresh, report = reopen(store, clock)
    assert report.files.source == "backup" and offsets(fresh) == {(1, 10): 100}


def test_a_damaged_entry_fails_the_checksum(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    primary = tmp_path / FILE_POSITIONS_FILE
    data = primary.read_bytes()
    assert b'"offset":200' in data  # entries are written in their canonical (compact) form
    primary.write_bytes(data.replace(b'"offset":200', b'"offset":900'))
    _, report = reopen(store, clock)
    assert report.files.source == "backup"
    assert any("checksum mismatch" in p for p in report.problems)


def test_another_version_is_set_aside_not_misread(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    primary = tmp_path / FILE_POSITIONS_FILE
    doc = json.loads(primary.read_bytes())
    doc["version"] = 2
    primary.write_text(json.dumps(doc))
    _, report = reopen(store, clock)
    assert report.files.source == "backup"
    assert any("unsupported version 2" in p for p in report.problems)
    assert len(corrupt_files(tmp_path)) == 1


def test_both_corrupt_start_empty_report_everything_and_keep_both_copies(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    (tmp_path / FILE_POSITIONS_FILE).write_bytes(b"{")
    (tmp_path / (FILE_POSITIONS_FILE + ".bak")).write_bytes(b"[]")
    fresh, report = reopen(store, clock)
    assert report.files.source == "empty" and fresh.files() == []
    assert len(report.files.problems) == 4  # two diagnoses, two moves
    assert len(report.files.moved_aside) == 2
    assert len(corrupt_files(tmp_path)) == 2
    assert report.containers.source == "empty" and report.containers.problems == []


def test_a_missing_primary_with_a_backup_uses_the_backup_and_says_so(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    two_generations(store)
    (tmp_path / FILE_POSITIONS_FILE).unlink()
    fresh, report = reopen(store, clock)
    assert report.files.source == "backup" and offsets(fresh) == {(1, 10): 100}
    assert any("missing" in p for p in report.problems)


def test_a_malformed_entry_in_a_sound_file_is_skipped_and_reported(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    store.commit_file(file_pos(5))
    store.flush()
    good = json.loads((tmp_path / FILE_POSITIONS_FILE).read_bytes())["entries"][0]
    bad = dict(good, ino="eleven")
    entries = [good, bad]
    from logcap.state.positions import _checksum

    doc = {"version": 1, "kind": "file_positions", "written_at": 0.0, "entries": entries}
    doc["checksum"] = _checksum(entries)
    (tmp_path / FILE_POSITIONS_FILE).write_text(json.dumps(doc))
    fresh, report = reopen(store, clock)
    assert report.files.source == "primary" and report.files.entries == 1
    assert any("entry 1 skipped" in p for p in report.problems)
    assert offsets(fresh) == {(1, 10): 5}


def test_temporary_files_left_by_a_crash_are_removed_on_load(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    (tmp_path / (FILE_POSITIONS_FILE + ".tmp-123.abcd")).write_bytes(b"half")
    (tmp_path / (FILE_POSITIONS_FILE + ".bak.tmp-123.abcd")).write_bytes(b"half")
    reopen(store, clock)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_FILE]


# --- crash safety -----------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for kill -9 at a system call."""


def crashing(name: str, counter: list[int], crash_at: int) -> Any:
    """``os.<name>``, counting calls in ``counter``; the ``crash_at``-th call of all crashes."""
    real = getattr(os, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        if counter[0] == crash_at:
            raise Crash(name)
        return real(*args, **kwargs)

    return call


def test_a_crash_at_any_system_call_of_a_flush_leaves_old_or_new_positions(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    syscalls = ("open", "write", "fsync", "close", "link", "replace", "unlink")
    crash_at = 0
    while True:
        crash_at += 1
        directory = tmp_path / f"run{crash_at}"
        store = PositionsStore(directory, clock=clock)
        store.load()
        store.commit_file(file_pos(100))
        store.flush()
        store.commit_file(file_pos(200))
        store.commit_file(file_pos(1, ino=99))
        proxy = types.SimpleNamespace(**{n: getattr(os, n) for n in dir(os) if n[0] != "_"})
        counter = [0]
        for name in syscalls:
            setattr(proxy, name, crashing(name, counter, crash_at))
        monkeypatch.setattr(atomic, "os", proxy)
        try:
            store.flush()
            finished = True
        except Crash:
            finished = False
        monkeypatch.setattr(atomic, "os", os)
        fresh = PositionsStore(directory, clock=clock)
        report = fresh.load()
        assert report.files.source in ("primary", "backup")
        assert offsets(fresh) in ({(1, 10): 100}, {(1, 10): 200, (1, 99): 1})
        if finished:
            assert offsets(fresh) == {(1, 10): 200, (1, 99): 1}
            break
    assert crash_at > 8  # every call of the sequence was a crash point once


def test_kill_9_during_flushes_always_leaves_a_readable_recent_position(tmp_path: Path) -> None:
    for attempt in range(10):
        directory = tmp_path / f"kill{attempt}"
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: flush forever, reporting each completed flush
            try:
                os.close(ready_r)
                child = PositionsStore(directory)
                child.load()
                n = 0
                while True:
                    n += 1
                    child.commit_file(file_pos(n))
                    child.flush()
                    os.write(ready_w, n.to_bytes(8, "big"))
            finally:
                os._exit(1)
        os.close(ready_w)
        acked = 0
        target = 5 + attempt * 7
        with os.fdopen(ready_r, "rb") as acks:
            while acked < target:
                acked = int.from_bytes(acks.read(8), "big")
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            for chunk in iter(lambda: acks.read(8), b""):
                acked = int.from_bytes(chunk, "big")
        fresh = PositionsStore(directory)
        report = fresh.load()
        assert report.files.source == "primary", report.problems
        assert offsets(fresh)[(1, 10)] in (acked, acked + 1)


def test_files_set_aside_in_the_same_second_never_overwrite_each_other(tmp_path: Path) -> None:
    names = []
    for content in (b"first", b"second", b"third"):
        victim = tmp_path / "state.json"
        victim.write_bytes(content)
        names.append(move_aside(victim, ".corrupt-", 1_700_000_000.0))
    assert [Path(n).read_bytes() for n in names] == [b"first", b"second", b"third"]
    assert [Path(n).name for n in names] == [
        "state.json.corrupt-20231114T221320Z",
        "state.json.corrupt-20231114T221320Z-1",
        "state.json.corrupt-20231114T221320Z-2",
    ]


def test_atomic_write_keeps_no_backup_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and not (tmp_path / "state.json.bak").exists()
    atomic_write_bytes(target, b"three", keep_backup=True)
    assert (tmp_path / "state.json.bak").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.bak"]


# --- validation -------------------------------------------------------------------------------


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(b"line %05d\n" % n for n in range(1000)))
    return path


def committed(path: Path, offset: int, size: int | None = None) -> FilePosition:
    identity = identity_of(str(path))
    return FilePosition.of(
        str(path),
        identity,
        offset,
        hash_prefix(str(path), offset),
        os.path.getsize(path) if size is None else size,
    )


def test_an_unchanged_file_resumes(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    with open(logfile, "ab") as out:
        out.write(b"more\n")
    assert validate_file(pos) is Validity.RESUME


def test_a_missing_file_is_missing(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    logfile.unlink()
    assert validate_file(pos) is Validity.MISSING


def test_another_file_at_the_path_restarts_from_zero(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    os.rename(logfile, logfile.with_name("app.log.1"))
    logfile.write_bytes(b"fresh\n")
    assert validate_file(pos) is Validity.RESTART_FROM_ZERO


def test_a_reused_inode_with_other_first_bytes_restarts_from_zero(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    with open(logfile, "r+b") as out:
        out.write(b"NEW FILE " * 200)
    assert validate_file(pos) is Validity.RESTART_FROM_ZERO


def test_a_fifo_at_the_path_is_missing_and_opening_it_does_not_block(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    logfile.unlink()
    os.mkfifo(logfile)
    assert validate_file(pos) is Validity.MISSING


def test_a_file_shorter_than_the_offset_is_truncated(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    os.truncate(logfile, 3000)
    assert validate_file(pos) is Validity.TRUNCATED


def test_a_file_rewritten_past_the_offset_with_the_same_head_is_truncated(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    with open(logfile, "r+b") as out:
        out.seek(4000)
        out.write(b"rewritten after truncation\n" * 100)
    assert validate_file(pos) is Validity.TRUNCATED


def test_a_file_that_shrank_below_its_size_at_commit_is_truncated(logfile: Path) -> None:
    pos = committed(logfile, 5000, size=10_000)
    os.truncate(logfile, 6000)
    assert validate_file(pos) is Validity.TRUNCATED


def test_a_changed_device_number_with_identical_content_resumes(logfile: Path) -> None:
    pos = committed(logfile, 5000)
    moved = FilePosition.of(
        pos.path,
        FileIdentity(pos.dev + 1, pos.ino, pos.fingerprint),
        pos.offset,
        pos.prefix_hash,
        pos.size_at_commit,
    )
    assert validate_file(moved) is Validity.RESUME
    with open(logfile, "r+b") as out:
        out.write(b"X")
    assert validate_file(moved) is Validity.RESTART_FROM_ZERO


def test_the_store_validates_through_the_same_rules(store: PositionsStore, logfile: Path) -> None:
    assert store.validate_file(committed(logfile, 10)) is Validity.RESUME


# --- cleanup and snapshot ---------------------------------------------------------------------


def test_cleanup_drops_old_entries_but_keeps_recent_and_followed_ones(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = PositionsStore(tmp_path, max_position_age_s=100.0, clock=clock)
    store.load()
    store.commit_file(file_pos(1, ino=1))
    store.commit_file(file_pos(1, ino=2))
    store.commit_container(container_pos(1, cid="old"))
    clock.now += 60
    store.commit_file(file_pos(1, ino=3))
    assert store.cleanup(clock.now + 50, keep_files={(1, 2)}) == 2
    assert sorted(offsets(store)) == [(1, 2), (1, 3)] and store.containers() == []
    assert store.dirty


def test_the_snapshot_is_json_ready_and_lists_every_identity(store: PositionsStore) -> None:
    store.commit_file(file_pos(3))
    store.commit_container(container_pos(4))
    snap = json.loads(json.dumps(store.snapshot()))
    assert snap["files"][0]["offset"] == 3 and snap["files"][0]["ino"] == 10
    assert snap["containers"][0]["cursor_ns"] == 4
    assert snap["pending_updates"] == 2 and snap["dirty"] is True


# --- stateful model ---------------------------------------------------------------------------

CORRUPT = "corrupt"
KINDS = (FILE_POSITIONS_FILE, CONTAINER_POSITIONS_FILE)
Table = dict[Any, tuple[str, int]]


class PositionsMachine(RuleBasedStateMachine):
    """The store against a model of memory, primary, backup and the positions log, through
    crashes and damage."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="logcap-positions-"))
        self.clock = FakeClock()
        self.store = PositionsStore(self.directory, clock=self.clock)
        self.store.load()
        self.memory: dict[str, Table] = {k: {} for k in KINDS}
        self.dirty = {k: False for k in KINDS}
        self.primary: dict[str, Table | str | None] = {k: None for k in KINDS}
        self.backup: dict[str, Table | str | None] = {k: None for k in KINDS}
        self.logged: list[tuple[str, Any, tuple[str, int]]] = []
        """Commits appended to the log since the last flush (which empties it)."""
        self.corrupt_copies = 0

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _tick(self) -> None:
        self.clock.now += 1.5

    @initialize(generations=st.integers(min_value=0, max_value=2))
    def start_with_history(self, generations: int) -> None:
        """Start with 0, 1 or 2 flushed generations, so damage often has a backup to fall to."""
        for n in range(generations):
            self.commit_file(ino=1, fp=FP_A, offset=10 * (n + 1), force=False)
            self.commit_container(cid="a", cursor=10 * (n + 1), force=False)
            self.flush()

    @rule(
        ino=st.integers(min_value=1, max_value=3),
        fp=st.sampled_from([FP_A, FP_B]),
        offset=st.integers(min_value=0, max_value=1000),
        force=st.booleans(),
    )
    def commit_file(self, ino: int, fp: str, offset: int, force: bool) -> None:
        self._tick()
        table = self.memory[FILE_POSITIONS_FILE]
        stored = table.get((1, ino))
        expect = force or stored is None or stored[0] != fp or offset >= stored[1]
        assert self.store.commit_file(file_pos(offset, ino=ino, fp=fp), force=force) is expect
        if expect:
            table[(1, ino)] = (fp, offset)
            self.dirty[FILE_POSITIONS_FILE] = True
            self.logged.append((FILE_POSITIONS_FILE, (1, ino), (fp, offset)))

    @rule(
        cid=st.sampled_from(["a", "b"]),
        cursor=st.integers(min_value=0, max_value=10**12),
        force=st.booleans(),
    )
    def commit_container(self, cid: str, cursor: int, force: bool) -> None:
        self._tick()
        table = self.memory[CONTAINER_POSITIONS_FILE]
        stored = table.get(cid)
        expect = force or stored is None or cursor >= stored[1]
        assert self.store.commit_container(container_pos(cursor, cid=cid), force=force) is expect
        if expect:
            table[cid] = ("h", cursor)
            self.dirty[CONTAINER_POSITIONS_FILE] = True
            self.logged.append((CONTAINER_POSITIONS_FILE, cid, ("h", cursor)))

    @rule()
    def flush(self) -> None:
        self._tick()
        self.store.flush()
        for kind in KINDS:
            if self.dirty[kind]:
                if self.primary[kind] is not None:
                    self.backup[kind] = self.primary[kind]
                self.primary[kind] = dict(self.memory[kind])
                self.dirty[kind] = False
        self.logged = []

    @precondition(lambda self: any(self.primary[k] is not None for k in KINDS))
    @rule(kind=st.sampled_from(KINDS), garbage=st.binary(max_size=40))
    def damage_primary(self, kind: str, garbage: bytes) -> None:
        if self.primary[kind] is not None:
            (self.directory / kind).write_bytes(garbage)
            self.primary[kind] = CORRUPT

    @precondition(lambda self: any(self.backup[k] is not None for k in KINDS))
    @rule(kind=st.sampled_from(KINDS))
    def damage_backup(self, kind: str) -> None:
        if self.backup[kind] is not None:
            path = self.directory / (kind + ".bak")
            path.write_bytes(path.read_bytes()[:-3])
            self.backup[kind] = CORRUPT

    @rule()
    def crash_and_restart(self) -> None:
        """The store comes back from disk: the files, then the log's commits over them."""
        self._tick()
        self.store.close()  # what the end of the process does
        self.store = PositionsStore(self.directory, clock=self.clock)
        report = self.store.load()
        for kind, part in zip(KINDS, (report.files, report.containers), strict=True):
            primary, backup = self.primary[kind], self.backup[kind]
            problems = False
            if isinstance(primary, dict):
                source, table = "primary", primary
            else:
                if primary == CORRUPT:
                    self.corrupt_copies += 1
                    self.primary[kind] = None
                    problems = True
                if isinstance(backup, dict):
                    source, table = "backup", backup
                    problems = True
                else:
                    if backup == CORRUPT:
                        self.corrupt_copies += 1
                        self.backup[kind] = None
                        problems = True
                    source, table = "empty", {}
            event(f"{kind} loaded from {source}")
            assert part.source == source
            assert bool(part.problems) is problems
            self.memory[kind] = dict(table)
            replayed = [(key, value) for logged_kind, key, value in self.logged
                        if logged_kind == kind]
            self.memory[kind].update(replayed)
            self.dirty[kind] = source == "backup" or problems or bool(replayed)

    @invariant()
    def memory_matches_the_model(self) -> None:
        files = {p.key: (p.fingerprint, p.offset) for p in self.store.files()}
        containers = {p.id: ("h", p.cursor_ns) for p in self.store.containers()}  # "h": the model
        assert files == self.memory[FILE_POSITIONS_FILE]
        assert containers == self.memory[CONTAINER_POSITIONS_FILE]

    @invariant()
    def corrupt_files_are_never_deleted(self) -> None:
        kept = [p for p in self.directory.iterdir() if ".corrupt-" in p.name]
        assert len(kept) == self.corrupt_copies


TestPositionsMachine = PositionsMachine.TestCase
TestPositionsMachine.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


@pytest.mark.parametrize("path, updated_at", [
    ("/var/log/app.log", 1_700_000_000.123456),
    ("/var/log/caf\u00e9 \"quoted\"\\back\tslash.log", 1_700_000_000),
    ("/var/log/\U0001f600.log", 0.1 + 0.2),
])
def test_a_file_entry_is_encoded_as_its_fields_by_name(path: str, updated_at: float) -> None:
    pos = FilePosition(path, 2049, 123456, "1024:0123456789abcdef", 1024, 77,
                       "77:00000000deadbeef", 4096, updated_at)
    by_name = {f.name: getattr(pos, f.name) for f in dataclasses.fields(FilePosition)}
    assert encode_file_entry(pos) == encode_entry(by_name)
    assert json.loads(encode_file_entry(pos)) == by_name


def test_a_rewrite_re_encodes_only_what_changed_and_reads_back_the_same(
    store: PositionsStore, tmp_path: Path, clock: FakeClock
) -> None:
    for i in range(50):
        store.commit_file(FilePosition(f"/l/f{i}.log", 1, 100 + i, FP_A, 1024, i, "", i, 1.0))
    store.flush()
    moved = FilePosition("/l/f7.log", 1, 107, FP_A, 1024, 900, "900:" + "c" * 16, 900, 2.0)
    store.commit_file(moved)
    store.flush()
    reopened, report = reopen(store, clock)
    assert report.ok
    got = reopened.get_file(1, 107)
    assert got is not None and (got.offset, got.prefix_hash) == (900, moved.prefix_hash)
    assert [p.offset for p in map(lambda i: reopened.get_file(1, 100 + i), range(50)) if p] \
        == [900 if i == 7 else i for i in range(50)]
    assert len(reopened.snapshot()["files"]) == 50


def test_a_file_position_at_a_time_is_replace_of_updated_at() -> None:
    import dataclasses

    from logcap.state.positions import FilePosition

    pos = FilePosition(path="/var/log/a.log", dev=1, ino=2, fingerprint="5:0011223344556677",
                       fingerprint_len=5, offset=9, prefix_hash="9:8899aabbccddeeff",
                       size_at_commit=12, updated_at=1.5)
    assert pos.at(7.25) == dataclasses.replace(pos, updated_at=7.25)
    assert pos.at(7.25).updated_at == 7.25 and pos.updated_at == 1.5
