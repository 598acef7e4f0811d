"""Hot reload through the real process: ~10 reloads under a few thousand lines/s (sources
added, removed, relabelled; a pipeline changed; the Loki URL swapped between two receivers; a
second Loki sink added and removed;
by POST and by SIGHUP) with invalid configs between them: every line at a receiver, none kept
twice, the invalid ones refused with their error, the generation counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reload_scenario import run_reload_scenario

pytestmark = pytest.mark.integration


def test_reloads_under_load_lose_nothing_keep_no_duplicate_and_refuse_invalid_configs(
        tmp_path: Path) -> None:
    result = run_reload_scenario(tmp_path, reloads=10, invalid=2, rate=3_000)
    assert not result.problems, result.problems
    assert result.reloads == 10 and result.invalid_refused == 2
    assert result.missing == 0 and result.duplicates_kept == 0
    # a second Loki sink added and removed live got what was written meanwhile, once
    assert result.audit_lines > 1_000
    assert result.audit_missing == 0 and result.audit_duplicates_kept == 0
    assert result.generation == 11 and result.lines > 10_000
