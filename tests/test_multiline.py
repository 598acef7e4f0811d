"""The multiline joiner as a function (firstline, pattern with negate/match, the caps, the
timeout) and the ``multiline`` config section that compiles into it."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logcap.config import ConfigError, parse_config
from logcap.config.sources import DEFAULT_MULTILINE_MAX_BYTES, MultilineConfig
from logcap.sources.multiline import (
    COMPLETE,
    END_OF_STREAM,
    MAX_BYTES,
    MAX_LINES,
    TIMEOUT,
    JoinedEntry,
    LineJoiner,
    MultilineRule,
)

TRACE = [
    "2024-01-01 12:00:00 ERROR boom",
    "java.lang.IllegalStateException: bad",
    "\tat a.B.c(B.java:1)",
    "\tat a.B.d(B.java:2)",
    "2024-01-01 12:00:01 INFO fine",
    "2024-01-01 12:00:02 WARN two",
    "  continued",
]


def join(rule: MultilineRule, lines: Iterable[str], now: float = 0.0
         ) -> tuple[list[JoinedEntry], LineJoiner]:
    """Feed ``lines`` (each ``len + 1`` bytes, as in a file) and return what closed."""
    joiner = LineJoiner(rule)
    out: list[JoinedEntry] = []
    offset = 0
    for line in lines:
        end = offset + len(line) + 1
        out.extend(joiner.feed(line, offset, end, now))
        offset = end
    return out, joiner


def texts(entries: Iterable[JoinedEntry]) -> list[str]:
    return [e.text for e in entries]


def test_firstline_starts_an_entry_and_the_next_first_line_closes_it() -> None:
    rule = MultilineRule(re.compile(r"^\d{4}-\d\d-\d\d "))
    closed, joiner = join(rule, TRACE)
    assert texts(closed) == ["\n".join(TRACE[:4]), TRACE[4]]
    assert [(e.start, e.end, e.lines, e.reason) for e in closed] == [
        (0, sum(len(x) + 1 for x in TRACE[:4]), 4, COMPLETE),
        (sum(len(x) + 1 for x in TRACE[:4]), sum(len(x) + 1 for x in TRACE[:5]), 1, COMPLETE)]
    assert joiner.open_start == sum(len(x) + 1 for x in TRACE[:5]) and joiner.open_lines == 2
    last = joiner.flush(END_OF_STREAM)
    assert last is not None and last.text == "\n".join(TRACE[5:])
    assert last.reason == END_OF_STREAM and last.end == sum(len(x) + 1 for x in TRACE)
    assert joiner.flush(END_OF_STREAM) is None and joiner.open_start is None


def test_continuation_lines_with_nothing_open_start_their_own_entry() -> None:
    rule = MultilineRule(re.compile(r"^\S"))
    closed, joiner = join(rule, ["  orphan", "  orphan 2", "head", "  tail"])
    assert texts(closed) == ["  orphan\n  orphan 2"]
    assert joiner.open_lines == 2


def test_pattern_after_without_negate_appends_matching_lines_to_the_line_before() -> None:
    rule = MultilineRule(re.compile(r"^\s"), negate=False, after=True)
    closed, _ = join(rule, ["a", " b", " c", "d", "e", " f"])
    assert texts(closed) == ["a\n b\n c", "d"]


def test_pattern_before_joins_a_matching_line_to_the_next_one() -> None:
    rule = MultilineRule(re.compile(r"\\$"), negate=False, after=False)
    closed, joiner = join(rule, ["one \\", "two \\", "three", "solo", "x \\"])
    assert texts(closed) == ["one \\\ntwo \\\nthree", "solo"]
    assert [e.reason for e in closed] == [COMPLETE, COMPLETE]
    assert joiner.open_lines == 1


def test_pattern_before_with_negate_ends_an_entry_at_the_matching_line() -> None:
    rule = MultilineRule(re.compile(r";$"), negate=True, after=False)
    closed, _ = join(rule, ["SELECT *", "FROM t", "WHERE 1;", "SELECT 2;"])
    assert texts(closed) == ["SELECT *\nFROM t\nWHERE 1;", "SELECT 2;"]


def test_an_entry_is_cut_before_it_passes_max_lines_and_nothing_is_dropped() -> None:
    rule = MultilineRule(re.compile(r"^H"), max_lines=3)
    closed, joiner = join(rule, ["H", "1", "2", "3", "4", "5", "6", "7", "H2"])
    assert texts(closed) == ["H\n1\n2", "3\n4\n5", "6\n7"]
    assert [e.reason for e in closed] == [MAX_LINES, MAX_LINES, COMPLETE]
    assert sum(e.lines for e in closed) + joiner.open_lines == 9


def test_an_entry_of_exactly_max_lines_is_complete_not_cut() -> None:
    rule = MultilineRule(re.compile(r"^H"), max_lines=3)
    closed, _ = join(rule, ["H", "1", "2", "H"])
    assert [(e.lines, e.reason) for e in closed] == [(3, COMPLETE)]


def test_an_entry_is_cut_before_it_passes_max_bytes() -> None:
    rule = MultilineRule(re.compile(r"^H"), max_bytes=10)
    closed, joiner = join(rule, ["H", "aaaa", "bbbb", "cccccccccccc", "d", "H"])
    # "H\naaaa\n" is 7 bytes; with "bbbb\n" it would be 12: cut. A 13-byte line stands alone,
    # and "d" would take it to 15.
    assert texts(closed) == ["H\naaaa", "bbbb", "cccccccccccc", "d"]
    assert [e.reason for e in closed] == [MAX_BYTES, MAX_BYTES, MAX_BYTES, COMPLETE]
    assert all(e.end - e.start <= 10 or e.lines == 1 for e in closed)
    assert joiner.open_lines == 1


def test_max_lines_with_match_before_closes_the_cut_entry_and_the_complete_one() -> None:
    rule = MultilineRule(re.compile(r"\\$"), negate=False, after=False, max_lines=2)
    closed, _ = join(rule, ["a \\", "b \\", "end"])
    assert [(e.text, e.reason) for e in closed] == [("a \\\nb \\", MAX_LINES), ("end", COMPLETE)]


def test_an_open_entry_is_due_after_the_timeout_without_a_new_line() -> None:
    rule = MultilineRule(re.compile(r"^H"), timeout_s=5.0)
    joiner = LineJoiner(rule)
    assert not joiner.due(100.0)
    assert joiner.feed("H", 0, 2, 10.0) == []
    assert joiner.feed(" more", 2, 8, 12.0) == []
    assert not joiner.due(16.9)
    assert joiner.due(17.0)
    entry = joiner.flush(TIMEOUT)
    assert entry == JoinedEntry("H\n more", 0, 8, 2, TIMEOUT)
    assert not joiner.due(100.0)


def test_reset_forgets_the_open_entry() -> None:
    closed, joiner = join(MultilineRule(re.compile("^H")), ["H", "x"])
    joiner.reset()
    assert joiner.open_start is None and joiner.flush(TIMEOUT) is None and closed == []


def test_an_unknown_close_reason_and_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError):
        LineJoiner(MultilineRule(re.compile("x"))).flush("because")
    with pytest.raises(ValueError):
        MultilineRule(re.compile("x"), max_lines=0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(["H1", "H2", " c", "x \\", "end;", ""]), max_size=12),
                max_size=4),
       st.sampled_from([("^H", True, True), (r"^\s", False, True), (r"\\$", False, False),
                        (";$", True, False)]),
       st.integers(1, 5), st.integers(1, 30))
def test_feeding_runs_of_lines_gives_what_feeding_them_one_by_one_gives(
        runs: list[list[str]], how: tuple[str, bool, bool], max_lines: int, max_bytes: int
) -> None:
    pattern, negate, after = how
    rule = MultilineRule(re.compile(pattern), negate, after, max_lines, max_bytes)
    by_line, by_run = by_line_and_by_run(rule, runs)
    assert by_run == by_line


def by_line_and_by_run(rule: MultilineRule, runs: list[list[str]]
                       ) -> tuple[list[JoinedEntry], list[JoinedEntry]]:
    """What two joiners close, one fed line by line and one run by run (each line its UTF-8
    size and a newline); their open entries and what flushing them gives must agree."""
    one, many = LineJoiner(rule), LineJoiner(rule)
    by_line: list[JoinedEntry] = []
    by_run: list[JoinedEntry] = []
    offset = 0
    for run in runs:
        starts = []
        for line in run:
            size = len(line.encode("utf-8", "surrogatepass")) + 1
            starts.append(offset)
            by_line.extend(one.feed(line, offset, offset + size, 0.0))
            offset += size
        by_run.extend(many.feed_lines(run, starts, offset, 0.0))
        assert (one.open_start, one.open_lines) == (many.open_start, many.open_lines)
    assert one.flush(END_OF_STREAM) == many.flush(END_OF_STREAM)
    return by_line, by_run


# --- the config section -----------------------------------------------------------------------


def source_with(multiline: str) -> str:
    return ("sources: {files: [{name: a, include: [/x/*.log], multiline: "
            + multiline + "}]}")


def test_firstline_compiles_to_a_rule_that_starts_entries() -> None:
    config = parse_config(source_with("{firstline: '^\\d', max_lines: 9, max_bytes: 1KiB, "
                                      "timeout: 2s}"), {})
    spec = config.sources.files[0].multiline
    assert isinstance(spec, MultilineConfig)
    rule = MultilineRule.of(spec)
    assert (rule.regex.pattern, rule.negate, rule.after) == ("^\\d", True, True)
    assert (rule.max_lines, rule.max_bytes, rule.timeout_s) == (9, 1024, 2.0)


def test_pattern_negate_and_match_compile_as_written() -> None:
    spec = parse_config(source_with("{pattern: '\\\\$', match: before}"), {}) \
        .sources.files[0].multiline
    assert spec is not None
    rule = MultilineRule.of(spec)
    assert (rule.regex.pattern, rule.negate, rule.after) == ("\\\\$", False, False)
    assert rule.max_bytes == DEFAULT_MULTILINE_MAX_BYTES


@pytest.mark.parametrize(("multiline", "where", "why"), [
    ("{firstline: a, pattern: b}", "multiline.firstline", "not both"),
    ("{max_lines: 3}", "multiline.pattern", "required"),
    ("{firstline: a, negate: true}", "multiline.firstline", "apply to pattern only"),
    ("{firstline: a, match: before}", "multiline.firstline", "apply to pattern only"),
    ("{firstline: '('}", "multiline.firstline", "invalid regex"),
    ("{pattern: a, max_bytes: 0}", "multiline.max_bytes", ""),
    ("{pattern: a, timeout: 0s}", "multiline.timeout", ""),
    ("{pattern: a, flush_after: 1s}", "multiline.flush_after", "unknown"),
])
def test_a_bad_multiline_section_is_refused_with_its_key_path(
        multiline: str, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(source_with(multiline), {})
    text = str(err.value)
    assert f"sources.files[0].{where}" in text and why in text
