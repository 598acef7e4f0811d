"""Rotation decisions on real files: rename, copytruncate, truncate, delete, inode reuse."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.sources.files.reader import LineReader
from logcap.sources.files.rotation import (
    FileEvent,
    Observation,
    TrackedFile,
    check,
    classify,
    find_renamed,
    find_rotated_copy,
    is_rotated_name,
)
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    identity_of,
    needs_refresh,
    same_file,
)

LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None
)


class Tailer:
    """A minimal tailer over the pure parts, as the actor will drive them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.reader = LineReader(self.fd)
        self.identity = identity_of(self.fd)
        self.size = os.fstat(self.fd).st_size
        self.lines: list[str] = []

    def tracked(self) -> TrackedFile:
        return TrackedFile(str(self.path), self.identity, self.reader.offset, self.size)

    def read(self) -> None:
        while True:
            result = self.reader.read_batch()
            self.lines.extend(result.lines)
            if result.eof:
                break
        self.size = os.fstat(self.fd).st_size
        if needs_refresh(self.identity.fingerprint, self.size):
            self.identity = identity_of(self.fd)

    def drain(self) -> None:
        for result in self.reader.drain_to_eof():
            self.lines.extend(result.lines)

    def reopen(self) -> None:
        """Follow the new file at the path from offset 0."""
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_RDONLY)
        self.reader = LineReader(self.fd)
        self.identity = identity_of(self.fd)
        self.size = 0

    def recover_tail_from_copy(self) -> bool:
        copy = find_rotated_copy(
            str(self.path.parent), self.path.name, self.identity, self.reader.offset
        )
        if copy is None:
            return False
        fd = os.open(copy, os.O_RDONLY)
        try:
            assert fingerprint_matches(self.identity.fingerprint, fd)
            for result in LineReader(fd, self.reader.offset).drain_to_eof():
                self.lines.extend(result.lines)
        finally:
            os.close(fd)
        return True

    def restart_at_zero(self) -> None:
        self.reader.reset(0)
        self.identity = identity_of(self.fd)
        self.size = 0

    def close(self) -> None:
        os.close(self.fd)


def write(path: Path, data: bytes, mode: str = "ab") -> None:
    with open(path, mode) as out:
        out.write(data)


def numbered(start: int, stop: int) -> bytes:
    return b"".join(b"line %04d\n" % n for n in range(start, stop))


def expected(start: int, stop: int) -> list[str]:
    return [f"line {n:04d}" for n in range(start, stop)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    return path


@pytest.fixture
def tailer(log: Path) -> Iterator[Tailer]:
    write(log, numbered(0, 10))
    t = Tailer(log)
    t.read()
    yield t
    t.close()


def test_a_file_that_did_not_change_is_unchanged_and_an_appended_one_grew(
    tailer: Tailer, log: Path
) -> None:
    assert check(tailer.tracked())[0] is FileEvent.UNCHANGED
    write(log, numbered(10, 12))
    event, observation = check(tailer.tracked())
    assert event is FileEvent.GREW
    assert observation.stat is not None and observation.stat.st_size == 120


def test_rename_and_create_is_rotated_and_the_old_file_is_drained_before_the_new_one(
    tailer: Tailer, log: Path
) -> None:
    write(log, numbered(10, 15) + b"unfinished")
    os.rename(log, log.with_name("app.log.1"))
    write(log, numbered(100, 103), "wb")
    assert check(tailer.tracked())[0] is FileEvent.ROTATED
    tailer.drain()
    tailer.reopen()
    tailer.read()
    assert tailer.lines == [*expected(0, 15), "unfinished", *expected(100, 103)]


def test_a_renamed_file_with_nothing_created_yet_is_deleted_and_still_drained(
    tailer: Tailer, log: Path
) -> None:
    write(log, numbered(10, 12))
    os.rename(log, log.with_name("app.log.1"))
    assert check(tailer.tracked())[0] is FileEvent.DELETED
    tailer.drain()
    assert tailer.lines == expected(0, 12)


def test_copytruncate_is_truncated_and_the_unread_tail_comes_from_the_copy(
    tailer: Tailer, log: Path
) -> None:
    write(log, numbered(10, 20))  # written, not yet read
    shutil.copyfile(log, log.with_name("app.log.1"))
    os.truncate(log, 0)
    write(log, numbered(200, 202))
    assert check(tailer.tracked())[0] is FileEvent.TRUNCATED
    assert tailer.recover_tail_from_copy()
    tailer.restart_at_zero()
    tailer.read()
    assert tailer.lines == [*expected(0, 20), *expected(200, 202)]


def test_truncation_in_place_is_truncated_and_no_copy_is_found(tailer: Tailer, log: Path) -> None:
    os.truncate(log, 0)
    assert check(tailer.tracked())[0] is FileEvent.TRUNCATED
    assert not tailer.recover_tail_from_copy()


def test_a_file_that_shrank_but_not_below_the_offset_is_truncated(
    tailer: Tailer, log: Path
) -> None:
    tracked = TrackedFile(str(log), tailer.identity, offset=50, size=100)
    os.truncate(log, 60)
    assert check(tracked)[0] is FileEvent.TRUNCATED


def test_deleting_the_file_is_deleted(tailer: Tailer, log: Path) -> None:
    log.unlink()
    event, observation = check(tailer.tracked())
    assert event is FileEvent.DELETED and observation == Observation(None, None)


def test_delete_and_recreate_while_the_old_file_is_open_is_rotated(
    tailer: Tailer, log: Path
) -> None:
    log.unlink()
    write(log, numbered(300, 301), "wb")
    assert check(tailer.tracked())[0] is FileEvent.ROTATED


def test_a_path_replaced_by_a_directory_is_deleted(tailer: Tailer, log: Path) -> None:
    log.unlink()
    log.mkdir()
    assert check(tailer.tracked())[0] is FileEvent.DELETED


def test_a_path_replaced_by_a_fifo_is_deleted_without_blocking_on_open(
    tailer: Tailer, log: Path
) -> None:
    log.unlink()
    os.mkfifo(log)
    assert check(tailer.tracked())[0] is FileEvent.DELETED


def test_same_inode_with_other_first_bytes_is_replaced_same_inode(
    tailer: Tailer, log: Path
) -> None:
    write(log, b"another file entirely, longer than the first\n" * 10, "r+b")
    assert check(tailer.tracked())[0] is FileEvent.REPLACED_SAME_INODE


def test_a_reused_inode_is_told_apart_by_its_fingerprint(log: Path) -> None:
    write(log, numbered(0, 10))
    identity = identity_of(str(log))
    tracked = TrackedFile(str(log), identity, offset=100, size=100)
    log.unlink()  # no descriptor open: the inode is free to be reused
    write(log, b"a new file with other content, as long as the old one or longer\n" * 3, "wb")
    if os.stat(log).st_ino != identity.ino:
        pytest.skip("this file system did not reuse the inode; covered by the in-place test")
    assert check(tracked)[0] is FileEvent.REPLACED_SAME_INODE
    assert not same_file(identity, str(log))


def test_a_symlink_retargeted_to_another_file_is_rotated(tmp_path: Path) -> None:
    first, second, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    write(first, numbered(0, 3))
    write(second, numbered(3, 5))
    link.symlink_to(first)
    tracked = TrackedFile(str(link), identity_of(str(link)), offset=30, size=30)
    assert check(tracked)[0] is FileEvent.UNCHANGED
    tmp_link = tmp_path / "tmp-link"
    tmp_link.symlink_to(second)
    os.replace(tmp_link, link)
    assert check(tracked)[0] is FileEvent.ROTATED


def test_classify_skips_the_fingerprint_when_the_file_could_not_be_read() -> None:
    st = os.stat(__file__)
    identity = FileIdentity(st.st_dev, st.st_ino, "4:0000000000000000")
    tracked = TrackedFile(__file__, identity, offset=0, size=st.st_size)
    assert classify(tracked, Observation(st, None)) is FileEvent.UNCHANGED
    assert classify(tracked, Observation(st, "4:1111111111111111")) is (
        FileEvent.REPLACED_SAME_INODE
    )


def test_a_fingerprint_taken_when_the_file_was_small_still_matches_after_it_grew(
    log: Path,
) -> None:
    write(log, b"tiny\n")
    small = identity_of(str(log))
    assert small.fingerprint_len == 5
    write(log, b"x" * 5000)
    assert same_file(small, str(log))
    assert identity_of(str(log)).fingerprint_len == 1024


@pytest.mark.parametrize(
    ("name", "rotated"),
    [
        ("app.log.1", True),
        ("app.log-20261123", True),
        ("app.log.2026-11-23", True),
        ("app-20261123.log", True),
        ("app.1.log", True),
        ("app.log.1.gz", False),
        ("app.log-20261123.zst", False),
        ("app.log", False),
        ("app-error.log", False),
        ("app.log.old", False),
        ("other.log.1", False),
    ],
)
def test_rotated_names_are_recognised(name: str, rotated: bool) -> None:
    assert is_rotated_name(name, "app.log") is rotated


def test_the_rotated_copy_must_start_alike_be_long_enough_and_not_be_compressed(
    tmp_path: Path,
) -> None:
    live = tmp_path / "app.log"
    content = numbered(0, 50)
    write(live, content)
    identity = identity_of(str(live))
    write(tmp_path / "app.log.1.gz", content)  # compressed: skipped even if it matched
    write(tmp_path / "app.log.3", b"something else\n" * 100)  # other content
    write(tmp_path / "app.log.2", content[:100])  # same start, too short
    assert find_rotated_copy(str(tmp_path), "app.log", identity, offset=200) is None
    write(tmp_path / "app.log.1", content)
    found = find_rotated_copy(str(tmp_path), "app.log", identity, offset=200)
    assert found == str(tmp_path / "app.log.1")
    empty = FileIdentity(identity.dev, identity.ino, "0:" + "0" * 16)
    assert find_rotated_copy(str(tmp_path), "app.log", empty, offset=0) is None


def test_a_file_renamed_while_logcap_was_down_is_found_by_its_inode(tmp_path: Path) -> None:
    live = tmp_path / "app.log"
    write(live, numbered(0, 5))
    identity = identity_of(str(live))
    os.rename(live, tmp_path / "app.log-20261123")
    write(live, numbered(5, 6))
    assert find_renamed(str(tmp_path), "app.log", identity) == str(tmp_path / "app.log-20261123")
    assert find_rotated_copy(str(tmp_path), "app.log", identity, offset=0) is None


# --- real logrotate ---------------------------------------------------------------------------

needs_logrotate = pytest.mark.skipif(
    LOGROTATE is None, reason="logrotate is not installed (apt-get install -y logrotate)"
)


def run_logrotate(directory: Path, log: Path, mode: str) -> None:
    conf = directory / "logrotate.conf"
    conf.write_text(f"{log} {{\n    {mode}\n    rotate 3\n    missingok\n    nocompress\n}}\n")
    os.chmod(conf, 0o644)
    assert LOGROTATE is not None
    subprocess.run(
        [LOGROTATE, "-f", "-s", str(directory / "logrotate.state"), str(conf)],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def rotdir(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o755)
    return directory


@needs_logrotate
@pytest.mark.integration
def test_logrotate_create_mode_loses_and_repeats_nothing(rotdir: Path) -> None:
    log = rotdir / "app.log"
    write(log, numbered(0, 10))
    tailer = Tailer(log)
    try:
        tailer.read()
        write(log, numbered(10, 20) + b"partial at rotation")
        run_logrotate(rotdir, log, "create")
        assert (rotdir / "app.log.1").exists()
        assert check(tailer.tracked())[0] is FileEvent.ROTATED
        tailer.drain()
        tailer.reopen()
        write(log, numbered(20, 25))
        tailer.read()
        assert tailer.lines == [*expected(0, 20), "partial at rotation", *expected(20, 25)]
    finally:
        tailer.close()


@needs_logrotate
@pytest.mark.integration
def test_logrotate_copytruncate_mode_loses_and_repeats_nothing(rotdir: Path) -> None:
    log = rotdir / "app.log"
    write(log, numbered(0, 10))
    tailer = Tailer(log)
    try:
        tailer.read()
        write(log, numbered(10, 20))
        run_logrotate(rotdir, log, "copytruncate")
        assert os.path.getsize(log) == 0
        write(log, numbered(20, 22))
        assert check(tailer.tracked())[0] is FileEvent.TRUNCATED
        assert tailer.recover_tail_from_copy()
        tailer.restart_at_zero()
        tailer.read()
        assert tailer.lines == [*expected(0, 20), *expected(20, 22)]
    finally:
        tailer.close()


@needs_logrotate
@pytest.mark.integration
def test_logrotate_copytruncate_with_dateext_is_found_by_its_dated_name(rotdir: Path) -> None:
    log = rotdir / "app.log"
    write(log, numbered(0, 10))
    tailer = Tailer(log)
    try:
        tailer.read()
        write(log, numbered(10, 13))
        run_logrotate(rotdir, log, "copytruncate\n    dateext")
        rotated = [p.name for p in rotdir.iterdir() if p.name.startswith("app.log-")]
        assert len(rotated) == 1 and is_rotated_name(rotated[0], "app.log")
        assert check(tailer.tracked())[0] is FileEvent.TRUNCATED
        assert tailer.recover_tail_from_copy()
        assert tailer.lines == expected(0, 13)
    finally:
        tailer.close()
