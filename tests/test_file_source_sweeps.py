"""Which paths a file source's sweep between deep ones still ``stat`` s: those whose changes
inotify does not show (symbolic links, files first seen since the last deep sweep)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from logcap.sources.files.source import DEEP_CHECK_EVERY, FileSource
from logcap.sources.files.tailer import TailerSettings
from tests.actor_kit import wait_until


def _started(tmp_path: Path) -> tuple[FileSource, Path, Path, Path]:
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    elsewhere.mkdir()
    plain = logs / "plain.log"
    plain.write_text("a\n")
    target = elsewhere / "target.log"
    target.write_text("b\n")
    link = logs / "link.log"
    link.symlink_to(target)
    source = FileSource(TailerSettings("app", (str(logs / "*.log"),), start_at="beginning"))
    source.start([], {}, lambda: None)
    return source, plain, link, target


def test_a_symbolic_link_is_swept_every_second_and_a_plain_file_only_by_its_events(
        tmp_path: Path) -> None:
    source, plain, link, _ = _started(tmp_path)
    try:
        assert source.watcher is not None and source.watcher.active
        assert source._blind_paths() == {str(link)}
        new = plain.parent / "new.log"  # first seen after the deep sweep: blind until the next
        new.write_text("c\n")
        wait_until(lambda: (source.read(), str(new) in source.tailer.current)[1],
                   what="the new file adopted")
        assert source._blind_paths() == {str(link), str(new)}
        for _ in range(DEEP_CHECK_EVERY):
            source.on_tick()
        assert source._blind_paths() == {str(link)}
    finally:
        source.close()


def test_a_write_through_a_symbolic_link_is_read_after_a_sweep_between_deep_ones(
        tmp_path: Path) -> None:
    source, _, _, target = _started(tmp_path)
    try:
        first = source.read()
        assert sorted(line for e in first.entries for line in e.lines) == ["a", "b"]
        with target.open("a") as f:
            f.write("through the link\n")
        time.sleep(0.1)
        assert source.read().entries == []  # no event in the link's directory
        source.on_tick()  # not a deep sweep: the link is still looked at
        lines = [line for e in source.read().entries for line in e.lines]
        assert lines == ["through the link"]
    finally:
        source.close()


def test_a_deep_sweep_stats_each_path_once_and_learns_the_links_from_its_rescan(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The re-scan's ``lstat``/``stat`` of every matched path serve the rotation check and
    the reopening of closed files that follow it, and say which paths are links."""
    source, plain, link, _ = _started(tmp_path)
    try:
        assert source.tailer.links == {str(link)}
        stats: dict[str, Any] = {}
        source.tailer.rescan(stats)
        assert set(stats) == {str(plain), str(link)}
        calls: list[str] = []
        real_stat = os.stat

        def counted(path: Any, *args: Any, **kw: Any) -> Any:
            calls.append(str(path))
            return real_stat(path, *args, **kw)

        monkeypatch.setattr(os, "stat", counted)
        while (source._sweeps + 1) % DEEP_CHECK_EVERY:
            source.on_tick()
        calls.clear()
        source.on_tick()  # the deep one
        # the plain file: its lstat in the scan; the link: the scan's stat of its target
        assert calls.count(str(plain)) == 0 and calls.count(str(link)) == 1
        assert source._blind_paths() == {str(link)}
    finally:
        source.close()
