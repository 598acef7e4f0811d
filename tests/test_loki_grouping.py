"""The Loki sink's grouping of a part's lines by their line labels (``service._by_stream``):
the same streams, in the same order, with the same lines in the same order, as putting each
line in its stream one by one, whatever the runs of shared label tuples look like."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.sinks.loki.service import RUNS_PER_LINE_MAX, _by_stream

# distinct tuple objects; two of them render alike (equal values, different objects), one is
# empty (the part's own labels)
TUPLES = [(("level", "ERROR"),), (("level", "INFO"),), tuple([("level", "INFO")]), (),
          (("level", "DBG"), ("module", "tm"))]
TUPLES[2] = tuple(list(TUPLES[1]))  # equal to TUPLES[1], not the same object


def _render(extra: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in (("job", "x"), *extra)) + "}"


def _one_by_one(made: list[object], line_labels: list[tuple[tuple[str, str], ...]]
                ) -> dict[str, list[object]]:
    own: dict[str, list[object]] = {}
    for entry, extra in zip(made, line_labels, strict=True):
        own.setdefault(_render(extra), []).append(entry)
    return own


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(TUPLES) - 1), st.integers(1, 30)), max_size=12))
def test_grouping_equals_one_line_at_a_time(runs: list[tuple[int, int]]) -> None:
    line_labels = [TUPLES[k] for k, length in runs for _ in range(length)]
    made: list[object] = [(i, f"line {i}", ()) for i in range(len(line_labels))]
    rendered: list[tuple[tuple[str, str], ...]] = []

    def render(extra: tuple[tuple[str, str], ...]) -> str:
        rendered.append(extra)
        return _render(extra)

    got = _by_stream(made, line_labels, render)
    want = _one_by_one(made, line_labels)
    assert list(got.items()) == list(want.items())
    assert len(rendered) == len({id(t) for t in rendered})  # each tuple rendered once


def test_short_runs_take_the_line_by_line_path_with_the_same_result() -> None:
    line_labels = [TUPLES[i % 3] for i in range(40)]  # a run per line
    assert RUNS_PER_LINE_MAX * 40 < 39
    made: list[object] = list(range(40))
    assert _by_stream(made, line_labels, _render) == _one_by_one(made, line_labels)


def test_one_run_is_the_list_itself_and_no_lines_no_stream() -> None:
    made: list[object] = [1, 2, 3]
    got = _by_stream(made, [TUPLES[0]] * 3, _render)
    assert next(iter(got.values())) is made
    assert _by_stream([], [], _render) == {}
