"""The line automaton of a multiline rule (``line_automaton.py``, run by ``_line_automaton.c``)
against its specification, ``regex.search`` on each line: on generated patterns (what it
decides and what it must leave to ``re``) and lines (ASCII, past ASCII, newlines), the same
lines stop; the joiner's fast path gives what feeding line by line gives; no leaks."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logcap.sources import line_automaton
from logcap.sources.line_automaton import COMPILED, compile_lines_automaton, stops
from logcap.sources.multiline import MultilineRule
from tests.pipeline_kit import leaked
from tests.test_multiline import by_line_and_by_run

pytestmark = pytest.mark.skipif(COMPILED is None, reason="_line_automaton not built")

ATOMS = st.sampled_from(["a", "b", " ", ":", "-", "1", r"\d", r"\D", r"\s", r"\S", r"\w", r"\W",
                         ".", "[a-c]", "[^a]", r"[ \d]", r'[^"\\]', r"\\.", r"\.", "é", r"\n",
                         "[A-Z]", "[^\\n]", r"\t", "\\x1c", "[٣-٩]"])
UNDECIDED = st.sampled_from([r"\b", "(?=a)", "(?!b)", "(?<=a)", "(?>a)", "a*+", "^", "$",
                             r"(a)\1", "(?i:a)", "(?s:.)"])


def _patterns(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(atoms, lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map(lambda alts: "(?:" + "|".join(alts) + ")"),
        inner.map(lambda x: f"({x})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "+?",
                                          "{2,}", "??"]))
        .map(lambda t: f"(?:{t[0]}){t[1]}"),
    ), max_leaves=8)


DECIDED = _patterns(ATOMS)
ANY_PATTERN = _patterns(st.one_of(ATOMS, UNDECIDED))
ANCHORS = st.tuples(st.sampled_from(["", "^", r"\A"]), st.sampled_from(["", "$", r"\Z"]))
FLAGS = st.sampled_from([0, re.ASCII, re.DOTALL, re.IGNORECASE, re.MULTILINE])
LINES = st.lists(st.text(st.sampled_from("ab :-1é٣\n\t\x1c\"\\.AZ_"), max_size=12), max_size=30)


def spec_stops(regex: re.Pattern[str], lines: list[str], on_match: bool, first: int
               ) -> list[int]:
    return [first + i for i, line in enumerate(lines)
            if (regex.search(line) is not None) == on_match]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(DECIDED, ANY_PATTERN), ANCHORS, FLAGS, LINES, st.booleans(), st.integers(0, 2))
def test_the_automaton_stops_the_lines_the_search_stops(
        body: str, anchors: tuple[str, str], flags: int, lines: list[str], on_match: bool,
        first: int) -> None:
    try:
        regex = re.compile(anchors[0] + body + anchors[1], flags)
    except re.error:
        return
    automaton = compile_lines_automaton(regex)
    assert stops(regex, automaton, lines, on_match, first) == \
        spec_stops(regex, lines, on_match, first)


@settings(max_examples=300, deadline=None)
@given(DECIDED, ANCHORS, st.sampled_from([0, re.ASCII, re.DOTALL]))
def test_patterns_of_literals_classes_groups_alternatives_and_repeats_are_decided(
        body: str, anchors: tuple[str, str], flags: int) -> None:
    regex = re.compile(anchors[0] + body + anchors[1], flags)
    automaton = compile_lines_automaton(regex)
    assert automaton is not None or "{" in body  # only counted repeats may need too many states


def test_what_the_automaton_cannot_decide_is_left_to_re() -> None:
    for pattern, flags in [(r"^a\b", 0), ("^(?=a)", 0), ("a^", 0), ("(a)\\1", 0), ("^a", re.I),
                           ("^a", re.M), ("(?s:.)", 0), ("a*+", 0), ("(?>a)", 0),
                           ("a{65}", 0), ("x$|y", 0)]:
        assert compile_lines_automaton(re.compile(pattern, flags)) is None, pattern
    opensips = re.compile(r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|"
                          r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
    assert compile_lines_automaton(opensips) is not None


def test_a_line_past_ascii_or_ending_in_a_newline_is_asked_of_the_regex() -> None:
    regex = re.compile(r"^\d+ x$")
    automaton = compile_lines_automaton(regex)
    assert automaton is not None
    asked: list[str] = []

    def search(line: str) -> re.Match[str] | None:
        asked.append(line)
        return regex.search(line)

    assert COMPILED is not None
    lines = ["12 x", "٣ x", "1٣ x", "12 x\n", "a٣", "12 y"]
    assert COMPILED.stops(automaton.packed, lines, True, 0, search) == [0, 1, 2, 3]
    assert asked == ["٣ x", "1٣ x", "12 x\n"]  # "a٣": the automaton died before the "٣"


def test_bad_arguments_are_refused() -> None:
    assert COMPILED is not None
    automaton = compile_lines_automaton(re.compile("a"))
    assert automaton is not None
    with pytest.raises(ValueError):
        COMPILED.stops(automaton.packed[:-8], ["a"], True, 0, re.compile("a").search)
    with pytest.raises(TypeError):
        COMPILED.stops(automaton.packed, ["a", 1], True, 0, re.compile("a").search)
    with pytest.raises(ZeroDivisionError):
        COMPILED.stops(automaton.packed, ["é"], True, 0, lambda line: 1 / 0)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(DECIDED, ANY_PATTERN), ANCHORS, st.booleans(), st.booleans(), st.integers(1, 6),
       st.integers(1, 40), st.lists(LINES, max_size=4), st.booleans())
def test_joining_runs_with_any_pattern_gives_what_feeding_line_by_line_gives(
        body: str, anchors: tuple[str, str], negate: bool, after: bool, max_lines: int,
        max_bytes: int, runs: list[list[str]], compiled: bool) -> None:
    try:
        regex = re.compile(anchors[0] + body + anchors[1])
    except re.error:
        return
    rule = MultilineRule(regex, negate, after, max_lines, max_bytes)
    with mock.patch.object(line_automaton, "COMPILED", COMPILED if compiled else None):
        by_line, by_run = by_line_and_by_run(rule, runs)
    assert by_run == by_line


def test_the_compiled_runner_leaks_nothing() -> None:
    regex = re.compile(r"^(?:[A-Z][a-z]{2} \d|\d{4}-)")
    automaton = compile_lines_automaton(regex)
    assert automaton is not None and COMPILED is not None
    lines = ["Dec 1 x", "2024-01", "é", "INVITE sip", "Dé", ""] * 20
    packed, search = automaton.packed, regex.search

    def run(times: int) -> None:
        for _ in range(times):
            COMPILED.stops(packed, lines, True, 0, search)
            COMPILED.stops(packed, lines, False, 5, search)

    grown, counts = leaked(run, [packed, search, *lines[:6]], 2000)
    assert grown < 10_000, f"{grown} bytes more after 2000 runs"
    assert counts == [0] * len(counts)
