"""MoveTracker (following files through renames by inotify events) and discovery.matches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logcap.sources.files.discovery import matches, scan
from logcap.sources.files.moves import (
    CREATE,
    DELETE,
    MOVED_FROM,
    MOVED_TO,
    DirEvent,
    MoveTracker,
    Sighting,
)

D = "/var/log/app"


def wanted(path: str) -> bool:
    return path.endswith(".log")


def ev(kind: str, name: str, cookie: int = 0) -> DirEvent:
    return DirEvent(kind, D, name, cookie)


def test_a_file_created_at_a_wanted_path_is_sighted_there() -> None:
    tracker = MoveTracker(wanted)
    assert tracker.feed([ev(CREATE, "a.log"), ev(CREATE, "a.txt")]) == [
        Sighting(f"{D}/a.log", f"{D}/a.log")]


def test_a_file_created_and_rotated_twice_in_one_batch_is_sighted_at_its_last_name() -> None:
    tracker = MoveTracker(wanted)
    sightings = tracker.feed([
        ev(CREATE, "a.log"),
        ev(MOVED_FROM, "a.log", 1), ev(MOVED_TO, "a.log.1", 1),
        ev(CREATE, "a.log"),
        ev(MOVED_FROM, "a.log.1", 2), ev(MOVED_TO, "a.log.2", 2),
        ev(MOVED_FROM, "a.log", 3), ev(MOVED_TO, "a.log.1", 3),
    ])
    assert sorted(sightings, key=lambda s: s.path) == [
        Sighting(f"{D}/a.log", f"{D}/a.log.1"), Sighting(f"{D}/a.log", f"{D}/a.log.2")]


def test_a_wanted_file_renamed_away_is_followed_even_if_its_creation_was_not_seen() -> None:
    tracker = MoveTracker(wanted)
    assert tracker.feed([ev(MOVED_FROM, "a.log", 7), ev(MOVED_TO, "old", 7)]) == [
        Sighting(f"{D}/a.log", f"{D}/old")]


def test_a_move_split_across_two_batches_is_still_paired() -> None:
    tracker = MoveTracker(wanted)
    assert tracker.feed([ev(MOVED_FROM, "a.log", 9)]) == []
    assert tracker.feed([ev(MOVED_TO, "a.log.1", 9)]) == [
        Sighting(f"{D}/a.log", f"{D}/a.log.1")]
    assert tracker.feed([ev(MOVED_TO, "b.1", 9)]) == []  # remembered for one batch only


def test_a_deleted_file_and_an_unwanted_file_are_not_sighted() -> None:
    tracker = MoveTracker(wanted)
    assert tracker.feed([ev(CREATE, "a.log"), ev(DELETE, "a.log"),
                         ev(MOVED_FROM, "x.txt", 4), ev(MOVED_TO, "y.txt", 4)]) == []


def test_a_file_moved_in_from_elsewhere_onto_a_wanted_name_is_sighted() -> None:
    tracker = MoveTracker(wanted)
    assert tracker.feed([ev(MOVED_TO, "a.log", 5)]) == [Sighting(f"{D}/a.log", f"{D}/a.log")]


@pytest.mark.parametrize("pattern,path,expected", [
    ("/l/*.log", "/l/a.log", True),
    ("/l/*.log", "/l/a.log.1", False),
    ("/l/*.log*", "/l/a.log.1", True),
    ("/l/*.log", "/l/.hidden.log", False),
    ("/l/.*.log", "/l/.hidden.log", True),
    ("/l/**/*.log", "/l/a.log", True),
    ("/l/**/*.log", "/l/x/y/a.log", True),
    ("/l/**/*.log", "/l/.x/a.log", False),
    ("/l/**", "/l/x/a.txt", True),
    ("/l/a.log", "/l/a.log", True),
    ("/l/*/a.log", "/l/a.log", False),
])
def test_matches_selects_names_as_the_glob_expansion_does(pattern: str, path: str,
                                                          expected: bool) -> None:
    assert matches(path, [pattern]) is expected


def test_matches_agrees_with_scan_on_a_tree(tmp_path: Path) -> None:
    for rel in ["a.log", "a.log.1", "x/b.log", "x/y/c.log", ".h/d.log", "x/e.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    for pattern in ["*.log", "*.log*", "**/*.log", "x/**", "*/*.log"]:
        include = [str(tmp_path / pattern)]
        exclude = [str(tmp_path / "x/y/*")]
        found = set(scan(include, exclude).files)
        for dirpath, _, names in os.walk(tmp_path):
            for name in names:
                path = os.path.join(dirpath, name)
                assert matches(path, include, exclude) is (path in found), (pattern, path)
