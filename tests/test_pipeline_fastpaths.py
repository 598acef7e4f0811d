"""The pipeline's shortcuts give the results of the plain way: literal prefixes of a regex,
the batch text index, the regex stage's skipping, shared label dicts, the per-batch time memo."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.pipeline.batch import LineBatch
from logcap.pipeline.literals import match_prefixes
from logcap.pipeline.stages.attach import FieldMapConfig, LabelsStage
from logcap.pipeline.stages.parse import DENSE, RegexConfig, RegexStage
from logcap.pipeline.stages.timestamp import TimestampConfig, TimestampStage
from logcap.pipeline.textindex import SEPARATOR, TextIndex
from tests.pipeline_kit import READ_NS


def test_prefixes_every_match_starts_with() -> None:
    assert match_prefixes(r"(?:request |method=)(?P<m>\w+)") == ("method=", "request ")
    assert match_prefixes(r"(?:from_?tag=|\nFrom:)") == ("\nFrom:", "from_tag=", "fromtag=")
    assert match_prefixes(r"(a|)b") == ("ab", "b")
    assert match_prefixes(r"(?:ab)+c") == ("ab",)
    assert match_prefixes(r"repl(?:y|ied) |status=") == ("repl", "status=")  # merged
    assert match_prefixes(r"ab|abc") == ("ab",)  # the shortest cover
    for unknown in (r"^\d+", r"(?i)abc", r"a|\d", r"a*b", r"\bword", r"(?i:a)b", r"[a-z]x",
                    r"(?<=x)a", ".a", "", r"(?:a|b){0,3}c"):
        assert match_prefixes(unknown) is None, unknown


def test_text_index_finds_the_first_position_per_text_and_gives_up_past_its_limit() -> None:
    texts = ["xab", "", "ab ab", "b", "a\x00b", "cab"]
    index = TextIndex(texts)
    assert index.first_positions(["ab"], 10) == {0: 1, 2: 0, 5: 1}
    assert index.first_positions(["b", "ab"], 10) == {0: 1, 2: 0, 3: 0, 4: 2, 5: 1}
    assert index.first_positions([f"a{SEPARATOR}b"], 10) == {4: 0}  # inside one text only
    assert index.first_positions(["", "zz"], 10) == dict.fromkeys(range(6), 0)
    assert index.first_positions(["ab"], 2) is None
    assert TextIndex([]).first_positions(["a"], 1) == {}


PATTERNS = [
    (r"(?:ab|ba)(?P<x>c+)", ()),
    (r"(?:a|c)(?P<x>b)(?P<y>a)?", ()),
    (r"b(?<=ab)(?P<x>c*)", ()),  # a lookbehind past the prefix
    (r"ca(?P<x>\b)", ()),
    (r"(?P<x>[ab]c)", ("c",)),
    (r"(?P<x>\d+)", ("1", "2")),
]
TEXTS = st.lists(st.text(alphabet="abc12 \n\x00", max_size=12), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(TEXTS, st.sampled_from(PATTERNS), st.booleans())
def test_regex_stage_matches_a_plain_search_of_every_line(
        texts: list[str], case: tuple[str, tuple[str, ...]], optional: bool) -> None:
    expression, contains = case
    if contains:
        optional = True
    pattern = re.compile(expression)
    batch = LineBatch(list(texts), list(range(len(texts))), 0)
    RegexStage(RegexConfig(expression, None, optional, contains), "0:regex")(batch)
    misses = 0
    for i, text in enumerate(texts):
        m = pattern.search(text) if not contains or any(c in text for c in contains) else None
        misses += m is None
        assert batch.fields[i] == (None if m is None else m.groupdict()), (i, text)
    assert batch.failures == ({("0:regex", "no_match"): misses} if misses and not optional
                              else {})


def test_regex_stage_on_dense_and_sparse_prefixes_and_a_source_field() -> None:
    dense = ["id=1 x" if i % 2 else "nothing" for i in range(10 * DENSE)]
    b = LineBatch(dense, list(range(len(dense))), 0)
    RegexStage(RegexConfig(r"id=(?P<id>\d)", None, True, ("id=",)), "0:regex")(b)
    assert b.fields == [{"id": "1"} if i % 2 else None for i in range(len(dense))]
    b = LineBatch(["a"] * 3, [0, 1, 2], 0)
    b.fields = [{"f": "k=1"}, None, {"f": "k="}]
    RegexStage(RegexConfig(r"k=(?P<k>\d)", "f"), "0:regex")(b)
    assert b.fields == [{"f": "k=1", "k": "1"}, None, {"f": "k="}]
    assert b.failures == {("0:regex", "no_match"): 1, ("0:regex", "missing_field"): 1}


def test_a_shared_label_tuple_is_never_changed_for_the_other_lines() -> None:
    b = LineBatch(["a", "b"], [0, 1], 0)
    b.fields = [{"level": "info", "m": "x"}, {"level": "info"}]
    LabelsStage(FieldMapConfig((("level", "level"),)), "0:labels")(b)
    assert b.labels[0] is b.labels[1]
    LabelsStage(FieldMapConfig((("module", "m"),)), "1:labels")(b)
    assert b.labels == [(("level", "info"), ("module", "x")), (("level", "info"),)]


def test_the_time_memo_answers_as_the_parser_does_line_by_line() -> None:
    values = ["Dec  1 20:34:47", "bad", "Dec  1 20:34:47", "bad", "Dec  1 20:34:47.5", None]
    b = LineBatch([""] * len(values), [READ_NS + i for i in range(len(values))], READ_NS)
    b.fields = [None if v is None else {"t": v} for v in values]
    TimestampStage(TimestampConfig("t", "syslog"), "0:timestamp")(b)
    one = []
    for i, v in enumerate(values):
        single = LineBatch([""], [READ_NS + i], READ_NS)
        single.fields = [None if v is None else {"t": v}]
        TimestampStage(TimestampConfig("t", "syslog"), "0:timestamp")(single)
        one.append(single.timestamps[0])
    assert b.timestamps == one
    assert b.failures == {("0:timestamp", "unparsable"): 2, ("0:timestamp", "missing_field"): 1}
