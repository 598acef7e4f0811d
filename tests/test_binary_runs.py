"""NUL and control-character runs dropped from lines (issue 9, item 4)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from logcap.sources.files.binary_runs import MIN_CONTROL_RUN, drop_binary_runs
from logcap.sources.files.generation import TailerSettings
from logcap.sources.files.tailer import SourceTailer


def test_a_clean_batch_is_returned_as_it_is() -> None:
    lines = ["a\tb", "\x1b[31mred\x1b[0m", "x\x07y"]
    cleaned = drop_binary_runs(lines)
    assert cleaned.lines is lines and cleaned.removed_chars == 0


def test_nul_runs_are_removed_and_a_line_of_nothing_else_is_dropped() -> None:
    cleaned = drop_binary_runs(["\x00" * 65536 + "seq=1 real", "\x00\x00", "ok", "a\x00b"])
    assert cleaned.lines == ["seq=1 real", "ok", "ab"]
    assert cleaned.removed_chars == 65536 + 2 + 1
    assert cleaned.dropped_lines == 1


def test_control_runs_go_only_from_lines_with_a_nul_and_only_when_long() -> None:
    junk = "\x01\x02\x03\x04\x05"
    short = "\x01" * (MIN_CONTROL_RUN - 1)
    cleaned = drop_binary_runs([f"a{junk}\x00b{short}c", f"d{junk}e"])
    assert cleaned.lines == [f"ab{short}c", f"d{junk}e"]


@given(st.lists(st.text(alphabet=st.sampled_from("ab\x00\x01\x1b\t "), max_size=30), max_size=8))
def test_no_nul_survives_and_text_characters_are_kept_in_order(lines: list[str]) -> None:
    cleaned = drop_binary_runs(lines)
    assert not any("\x00" in line for line in cleaned.lines)
    text = [c for line in lines for c in line if c in "ab\x1b\t "]
    assert [c for line in cleaned.lines for c in line if c in "ab\x1b\t "] == text
    assert len(cleaned.lines) + cleaned.dropped_lines == len(lines)


def test_a_read_of_nothing_but_nuls_is_committed_without_sending_a_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"first\n" + b"\x00" * 70000 + b"\n")
    tailer = SourceTailer(TailerSettings(source="t", include=(str(tmp_path / "*.log"),),
                                         start_at="beginning", read_bytes=65536))
    try:
        tailer.rescan()
        tailer.check_rotation()
        sent: list[str] = []
        commits = []
        for _ in range(4):
            result = tailer.poll()
            commits += result.commits
            for entries in result.entries:
                sent += entries.lines
                commits += tailer.ack([entries.token])
        assert sent == ["first"]
        assert commits[-1].offset == os.path.getsize(log)
        assert tailer.describe()[0]["binary_bytes_dropped"] == 70000
    finally:
        tailer.close()
