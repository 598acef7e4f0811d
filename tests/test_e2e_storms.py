"""Rotation storms through the real process into the Loki test receiver (issue 9, short forms;
the 30 s forms: ``chaos/rotation_storm.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storms import recreate_storm, rename_storm

pytestmark = pytest.mark.integration

FD_BOUND = 400
"""5 files renamed every 100 ms hold at most ~5 x rotate_wait / 100 ms rotated files open."""


@pytest.mark.parametrize("include", ["*.log", "*.log*"])
def test_rename_rotation_every_100ms_across_5_files_loses_and_repeats_nothing(
        tmp_path: Path, include: str) -> None:
    result = rename_storm(tmp_path, include, seconds=6, rate=5000)
    assert not result.missing, result.summary()
    assert result.duplicates_kept == 0, result.summary()
    assert result.max_fds < FD_BOUND, result.summary()
    assert result.rotations and result.rotations.get("rename", 0) > 0, result.summary()


@pytest.mark.parametrize("pause", [0.2, 0.0])
def test_delete_and_recreate_20_times_with_inode_reuse_loses_nothing(
        tmp_path: Path, pause: float) -> None:
    result = recreate_storm(tmp_path, pause)
    assert not result.missing, result.summary()
    assert result.duplicates_kept == 0, result.summary()
    assert result.rotations, result.summary()  # each deletion seen, shown in /health
