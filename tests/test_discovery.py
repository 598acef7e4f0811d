"""Discovery: globs, excludes, symlinks, aliases, and unreadable paths reported, not raised.

The suite runs as root, and root reads everything, so "permission denied" cannot be produced by
``chmod`` alone. The permission tests therefore scan in a forked child that has dropped to the
``nobody`` user (real kernel permission checks, no mocking); when the suite runs unprivileged
they scan directly. One further test monkeypatches ``os.access`` to cover that branch cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logcap.sources.files import discovery
from logcap.sources.files.discovery import ScanError, has_magic, scan

NOBODY_ID = 65534


def touch(path: Path, data: bytes = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def found(tree: Path, *includes: str, excludes: tuple[str, ...] = ()) -> list[str]:
    result = scan([str(tree / i) for i in includes], [str(tree / e) for e in excludes])
    return [os.path.relpath(p, tree) for p in result.files]


def test_a_star_glob_matches_regular_files_but_not_directories_or_hidden_files(
    tmp_path: Path,
) -> None:
    touch(tmp_path / "a.log")
    touch(tmp_path / "b.log")
    touch(tmp_path / ".hidden.log")
    (tmp_path / "dir.log").mkdir()
    touch(tmp_path / "c.txt")
    assert found(tmp_path, "*.log") == ["a.log", "b.log"]
    assert found(tmp_path, ".*.log") == [".hidden.log"]


def test_double_star_matches_files_at_any_depth_including_none(tmp_path: Path) -> None:
    for rel in ("top.log", "a/one.log", "a/b/two.log", "a/b/c/three.log", "a/b/skip.txt"):
        touch(tmp_path / rel)
    touch(tmp_path / ".git/hidden.log")
    assert found(tmp_path, "**/*.log") == ["a/b/c/three.log", "a/b/two.log", "a/one.log", "top.log"]


def test_a_trailing_double_star_matches_every_file_below(tmp_path: Path) -> None:
    for rel in ("x/1", "x/y/2", "x/y/z/3"):
        touch(tmp_path / rel)
    assert found(tmp_path, "x/**") == ["x/1", "x/y/2", "x/y/z/3"]


def test_character_classes_and_question_marks_work_in_directories_and_names(
    tmp_path: Path,
) -> None:
    for rel in ("srv1/app.log", "srv2/app.log", "srvX/app.log", "srv1/app.log.1"):
        touch(tmp_path / rel)
    assert found(tmp_path, "srv[0-9]/app.lo?") == ["srv1/app.log", "srv2/app.log"]


def test_excludes_match_the_full_path_and_star_crosses_directories(tmp_path: Path) -> None:
    for rel in ("a.log", "a.log.gz", "old/b.log", "deep/er/c.log.gz"):
        touch(tmp_path / rel)
    assert found(tmp_path, "**/*", excludes=("*.gz", "old/*")) == ["a.log"]


def test_overlapping_includes_list_each_file_once(tmp_path: Path) -> None:
    touch(tmp_path / "a.log")
    assert found(tmp_path, "*.log", "a.*", "**/a.log") == ["a.log"]


def test_a_literal_path_is_found_and_a_missing_one_is_not_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "exact.log")
    result = scan([str(tmp_path / "exact.log"), str(tmp_path / "absent.log")])
    assert list(result.files) == [str(tmp_path / "exact.log")] and result.errors == []


def test_relative_patterns_become_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "logs/r.log")
    monkeypatch.chdir(tmp_path)
    assert list(scan(["logs/*.log"]).files) == [str(tmp_path / "logs/r.log")]


def test_a_symlink_is_listed_under_its_own_path_with_the_target_identity(tmp_path: Path) -> None:
    target = touch(tmp_path / "real/data.txt")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links/current.log"
    link.symlink_to(target)
    result = scan([str(tmp_path / "links/*.log")])
    assert list(result.files) == [str(link)]
    st, target_st = result.files[str(link)], os.stat(target)
    assert (st.st_dev, st.st_ino) == (target_st.st_dev, target_st.st_ino)


def test_a_file_matched_through_a_link_and_directly_is_kept_once_under_its_real_path(
    tmp_path: Path,
) -> None:
    real = touch(tmp_path / "app.log")
    (tmp_path / "alias.log").symlink_to(real)
    (tmp_path / "zz.log").symlink_to(real)
    result = scan([str(tmp_path / "*.log")])
    assert list(result.files) == [str(real)]
    assert result.aliases == {
        str(tmp_path / "alias.log"): str(real),
        str(tmp_path / "zz.log"): str(real),
    }


def test_a_dangling_symlink_is_reported(tmp_path: Path) -> None:
    (tmp_path / "gone.log").symlink_to(tmp_path / "nowhere")
    result = scan([str(tmp_path / "*.log")])
    assert result.files == {}
    assert result.errors == [ScanError(str(tmp_path / "gone.log"), "dangling symlink")]


def test_fifos_are_skipped_silently(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.log")
    touch(tmp_path / "file.log")
    result = scan([str(tmp_path / "*.log")])
    assert list(result.files) == [str(tmp_path / "file.log")] and result.errors == []


def test_a_symlink_loop_under_double_star_terminates(tmp_path: Path) -> None:
    touch(tmp_path / "a/b/x.log")
    (tmp_path / "a/b/back").symlink_to(tmp_path / "a")
    result = scan([str(tmp_path / "**/*.log")])
    assert str(tmp_path / "a/b/x.log") in result.files
    assert len(result.files) == 1  # copies seen through the loop are aliases of the real file


def test_has_magic_spots_wildcards() -> None:
    assert has_magic("/var/log/*.log") and has_magic("a?") and has_magic("[ab]")
    assert not has_magic("/var/log/syslog")


def test_a_file_the_process_may_not_read_is_reported_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = touch(tmp_path / "secret.log")
    touch(tmp_path / "open.log")
    real_access = os.access

    def access(path: str, mode: int) -> bool:
        return False if path == str(secret) else real_access(path, mode)

    monkeypatch.setattr(discovery.os, "access", access)
    result = scan([str(tmp_path / "*.log")])
    assert list(result.files) == [str(tmp_path / "open.log")]
    assert result.errors == [ScanError(str(secret), "permission denied")]


# --- real permission denials, as an unprivileged user -----------------------------------------

Scan = Callable[[list[str], list[str]], dict[str, list[list[str]]]]


def _scan_summary(includes: list[str], excludes: list[str]) -> dict[str, list[list[str]]]:
    result = scan(includes, excludes)
    return {"files": [[p] for p in result.files], "errors": [list(e) for e in result.errors]}


def _scan_as_nobody(includes: list[str], excludes: list[str]) -> dict[str, list[list[str]]]:
    """Run :func:`scan` in a forked child that dropped root; return its summary."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY_ID)
            os.setuid(NOBODY_ID)
            payload = json.dumps(_scan_summary(includes, excludes)).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        payload = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged scan failed"
    summary: dict[str, list[list[str]]] = json.loads(payload)
    return summary


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, Scan]]:
    """A world-traversable directory and a scan that runs without root's privileges."""
    directory = Path(tempfile.mkdtemp(prefix="logcap-discovery-", dir="/tmp"))
    os.chmod(directory, 0o755)
    try:
        yield directory, (_scan_as_nobody if os.geteuid() == 0 else _scan_summary)
    finally:
        for root, dirs, _ in os.walk(directory):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(directory)


def test_an_unreadable_directory_is_reported_and_the_rest_is_still_found(
    unprivileged: tuple[Path, Scan],
) -> None:
    directory, scan_as_user = unprivileged
    touch(directory / "ok/a.log")
    touch(directory / "locked/b.log")
    for path in (directory / "ok", directory / "ok/a.log", directory / "locked/b.log"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(directory / "locked", 0o000)
    summary = scan_as_user([str(directory / "*/*.log")], [])
    assert summary["files"] == [[str(directory / "ok/a.log")]]
    assert summary["errors"] == [[str(directory / "locked"), "permission denied"]]


def test_an_unreadable_file_and_an_untraversable_directory_are_reported(
    unprivileged: tuple[Path, Scan],
) -> None:
    directory, scan_as_user = unprivileged
    touch(directory / "private.log")
    touch(directory / "public.log")
    touch(directory / "sealed/inner.log")
    os.chmod(directory / "private.log", 0o600 if os.geteuid() == 0 else 0o000)
    os.chmod(directory / "public.log", 0o644)
    os.chmod(directory / "sealed", 0o600)  # listable by its owner only, never traversable
    summary = scan_as_user([str(directory / "*.log"), str(directory / "sealed/inner.log")], [])
    assert summary["files"] == [[str(directory / "public.log")]]
    assert sorted(map(tuple, summary["errors"])) == [
        (str(directory / "private.log"), "permission denied"),
        (str(directory / "sealed/inner.log"), "permission denied"),
    ]
