"""The compiled loops of ``labels`` and ``structured_metadata`` (``_attach.c``) against their
Python specification (``attach.py``): on generated fields, names and earlier labels/metadata,
the same pairs in the same order, the same cache of label sets; and no leaked references."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.pipeline.batch import LineBatch
from logcap.pipeline.stages import attach
from logcap.pipeline.stages.attach import COMPILED, FieldMapConfig, LabelsStage, MetadataStage
from tests.pipeline_kit import READ_NS, leaked

pytestmark = pytest.mark.skipif(COMPILED is None, reason="_attach not built")

KEYS = st.sampled_from(["level", "module", "pid", "call_id", "x", "é"])
VALUES = st.sampled_from(["", "a", "b", "ERROR", "tm", "x y", "é", "0"])
FIELDS = st.one_of(st.none(), st.dictionaries(KEYS, VALUES, max_size=5))
PAIRS = st.lists(st.tuples(KEYS, KEYS), max_size=5).map(tuple)
EARLIER = st.one_of(st.none(), st.lists(st.tuples(KEYS, VALUES), max_size=3).map(tuple))


def batch_of(fields: list[dict[str, str] | None], earlier: list[tuple[tuple[str, str], ...] | None]
             ) -> LineBatch:
    n = len(fields)
    batch = LineBatch(["line"] * n, list(range(READ_NS, READ_NS + n)), READ_NS)
    batch.fields = [None if f is None else dict(f) for f in fields]
    batch.labels = (earlier + [None] * n)[:n]
    batch.metadata = (earlier + [None] * n)[:n]
    return batch


def test_the_compiled_loops_are_built_and_chosen() -> None:
    assert COMPILED is not None
    config = FieldMapConfig((("level", "level"),))
    assert LabelsStage(config, "0:labels")._compiled is COMPILED
    assert MetadataStage(config, "0:structured_metadata", compiled=False)._compiled is None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(FIELDS, max_size=12), min_size=1, max_size=4), PAIRS,
       st.lists(EARLIER, max_size=12), st.integers(1, 4))
def test_the_compiled_loops_give_what_the_python_ones_give(
        batches: list[list[dict[str, str] | None]], pairs: tuple[tuple[str, str], ...],
        earlier: list[tuple[tuple[str, str], ...] | None], cached: int) -> None:
    config = FieldMapConfig(pairs)
    with mock.patch.object(attach, "LABEL_SETS_CACHED", cached):  # the cache fills, is cleared
        got = [LabelsStage(config, "0:labels"), MetadataStage(config, "1:structured_metadata")]
        want = [LabelsStage(config, "0:labels", compiled=False),
                MetadataStage(config, "1:structured_metadata", compiled=False)]
        for fields in batches:  # one stage over several batches: the label cache carries over
            a, b = batch_of(fields, earlier), batch_of(fields, earlier)
            for stage in got:
                stage(a)
            for stage in want:
                stage(b)
            assert a.labels == b.labels
            assert a.metadata == b.metadata
            assert a.fields == b.fields
        assert got[0].cache == want[0].cache  # type: ignore[union-attr]


def test_the_compiled_loops_check_their_arguments() -> None:
    assert COMPILED is not None
    with pytest.raises(ValueError):
        COMPILED.attach([None], (("a", "a"),), [], attach.merge_pairs)
    with pytest.raises(TypeError):
        COMPILED.attach([{}], ("a",), [None], attach.merge_pairs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        COMPILED.attach_shared([None], ("a",), (), [None], {}, 1, attach.merge_pairs)


def test_the_compiled_loops_leak_nothing() -> None:
    config = FieldMapConfig((("level", "level"), ("module", "module"), ("pid", "pid")))
    labels, metadata = LabelsStage(config, "0:labels"), MetadataStage(config, "1:sm")
    values = ["ERROR", "tm", "2311"]
    fields = [{"level": values[0], "module": values[1], "pid": values[2]}, None, {"pid": ""},
              {"level": values[0]}]

    def run(n: int) -> None:
        for _ in range(n):
            batch = batch_of(fields, [(("job", "x"),), None, None, None])
            labels(batch)
            metadata(batch)

    grown, references = leaked(run, values)
    assert references == [0] * len(values)
    assert grown < 10_000, f"{grown} bytes more after 5000 batches"


