"""The positions log (logcap/state/positions_log.py): every commit appended, replayed over the
snapshot at load; a torn or corrupt tail ignored; positions of an older logcap load as before;
a real kill -9 right after a commit keeps it."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import pytest

from logcap.state.positions import FILE_POSITIONS_FILE, PositionsStore
from logcap.state.positions_log import HEADER, LOG_FILE, decode_log, encode_commit
from tests.test_positions import FakeClock, container_pos, file_pos


def _store(directory: Path) -> PositionsStore:
    store = PositionsStore(directory, flush_interval_s=3600, clock=FakeClock())
    store.load()
    return store


def test_commits_not_flushed_come_back_from_the_log_in_order(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit_file(file_pos(100))
    store.flush()  # snapshot at 100, log emptied
    assert (tmp_path / LOG_FILE).read_bytes() == HEADER
    store.commit_file(file_pos(200))
    store.commit_file(file_pos(300, ino=11))
    store.forget_file(1, 11)
    store.commit_container(container_pos(42))
    store.commit_file(file_pos(400))
    # No flush, no close: what kill -9 leaves.
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.ok and report.log_records == 5
    assert {p.key: p.offset for p in fresh.files()} == {(1, 10): 400}
    assert [c.cursor_ns for c in fresh.containers()] == [42]
    assert fresh.dirty  # the next flush writes the snapshot and empties the log
    fresh.flush()
    assert (tmp_path / LOG_FILE).read_bytes() == HEADER
    again = PositionsStore(tmp_path, clock=FakeClock())
    assert again.load().log_records == 0
    assert {p.key: p.offset for p in again.files()} == {(1, 10): 400}


def test_a_torn_tail_is_ignored_and_later_appends_are_read(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit_file(file_pos(100))
    store.commit_file(file_pos(200))
    store.close()
    log = tmp_path / LOG_FILE
    log.write_bytes(log.read_bytes() + encode_commit(file_pos(300))[:-20])
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.log_records == 2
    assert any("torn last record ignored" in p for p in report.problems)
    assert fresh.get_file(1, 10).offset == 200
    fresh.commit_file(file_pos(500))  # appended after the cut, so read next time
    third = PositionsStore(tmp_path, clock=FakeClock())
    assert third.load().ok and third.get_file(1, 10).offset == 500


def test_a_corrupt_record_ends_the_valid_prefix() -> None:
    lines = [encode_commit(file_pos(n)) for n in (1, 2, 3)]
    damaged = lines[1].replace(b'"/var/log/a.log"', b'"/var/log/b.log"')
    content = decode_log(HEADER + lines[0] + damaged + lines[2])
    assert [r.offset for r in content.records] == [1]  # type: ignore[union-attr]
    assert "checksum mismatch" in content.problems[0]
    assert decode_log(b"something else\n").problems[0].endswith("bytes are ignored")


def test_positions_written_by_an_older_logcap_load_as_before(tmp_path: Path) -> None:
    old = PositionsStore(tmp_path, clock=FakeClock(), log=False)
    old.load()
    old.commit_file(file_pos(700))
    old.flush()
    assert not (tmp_path / LOG_FILE).exists() and (tmp_path / FILE_POSITIONS_FILE).exists()
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.ok and report.files.source == "primary" and report.log_records == 0
    assert fresh.get_file(1, 10).offset == 700


def test_a_commit_survives_a_real_kill_9_right_after_it(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child commits, says so, and waits to be killed
        os.close(read_end)
        store = PositionsStore(tmp_path, flush_interval_s=3600, clock=FakeClock())
        store.load()
        for offset in range(1, 1001):
            store.commit_file(file_pos(offset))
        os.write(write_end, b"x")
        signal.pause()
        sys.exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.ok and report.log_records == 1000
    assert fresh.get_file(1, 10).offset == 1000


def test_a_damaged_log_is_set_aside_and_its_valid_prefix_kept(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit_file(file_pos(100))
    store.commit_file(file_pos(200))
    store.close()
    log = tmp_path / LOG_FILE
    raw = log.read_bytes()
    log.write_bytes(raw[:-5] + b"XXXX\n")  # the last record's checksum no longer matches
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.log_records == 1 and fresh.get_file(1, 10).offset == 100
    assert any("moved aside to" in p for p in report.problems)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == raw[:-5] + b"XXXX\n"
    fresh.close()
    third = PositionsStore(tmp_path, clock=FakeClock())  # the new log holds the valid prefix
    report = third.load()
    assert report.ok and report.log_records == 1 and third.get_file(1, 10).offset == 100


def test_a_failed_append_is_reported_once_and_the_next_snapshot_reopens_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("logcap.state.positions_log.os.write", disk_full)
        assert store.commit_file(file_pos(100))  # accepted: kept in memory
        error = store.take_log_error()
        assert error is not None and error.errno == errno.ENOSPC
        store.commit_file(file_pos(200))  # the log is closed: no second error
        assert store.take_log_error() is None and store.log_bytes == 0
    store.flush()  # the snapshot holds 200 and the log is open again
    store.commit_file(file_pos(300))
    fresh = PositionsStore(tmp_path, clock=FakeClock())
    report = fresh.load()
    assert report.ok and report.log_records == 1 and fresh.get_file(1, 10).offset == 300


def test_a_commit_line_is_the_checked_json_dumps_of_its_record() -> None:
    import json

    from logcap.state.checked_lines import checked_line

    pos = file_pos(300)
    record = ["f", *(getattr(pos, name) for name in (
        "path", "dev", "ino", "fingerprint", "fingerprint_len", "offset", "prefix_hash",
        "size_at_commit", "updated_at"))]
    text = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    assert encode_commit(pos) == checked_line(text.encode("ascii"))
