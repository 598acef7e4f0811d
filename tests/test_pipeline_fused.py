"""The fused ``opensips`` step (``stages/fused.py``, ``_opensips.c``: ``parse_attach``) against
the stages it replaces: on generated and adversarial OpenSIPS entries, through several
pipelines of an ``opensips`` stage and attaching stages, the fused run gives what the stages
give one by one, compiled and in pure Python (lines, timestamps, labels, metadata, failures,
drops), also over several batches, with pairs already on the lines, and with a label-set
cache that fills up; where the compile step fuses and where it does not; ``logcap pipeline
test``'s output; and no leaked references or memory."""

from __future__ import annotations

import io

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.cli.pipeline_test import render
from logcap.config.errors import IssueCollector
from logcap.pipeline.builtins import builtin_pipelines
from logcap.pipeline.compiled import CompiledPipeline, PipelineSpec, Processed
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.stages import fused, opensips
from logcap.pipeline.stages.attach import LabelsStage, MetadataStage, merge_pairs
from logcap.pipeline.stages.fused import OpensipsAttachStage
from logcap.pipeline.stages.opensips import OpensipsStage
from tests.pipeline_kit import FIXTURES, READ_NS, entries, leaked, read_lines
from tests.test_pipeline_opensips_stage import adversarial_entries, opensips_entries

PIPELINES = r"""
pipelines:
  labels_only:
    stages:
      - opensips: {}
      - labels: {level: , module: , who: call_id}
  metadata_only:
    stages:
      - opensips: {timezone: Europe/Berlin}
      - structured_metadata: {src_ip: , time: , again: pid, pid: , status: }
  metadata_first:
    stages:
      - opensips: {}
      - structured_metadata: {method: , from_tag: , to_tag: , function: }
      - labels: {z: level, a: method, m: status, time: }
  opensips_alone:
    stages:
      - opensips: {}
  not_fused_unknown_field:
    stages:
      - opensips: {}
      - labels: {level: , other: }
  not_fused_stage_after:
    stages:
      - opensips: {}
      - labels: {level: }
      - output: {source: call_id}
  not_fused_stage_before:
    stages:
      - truncate: {max_bytes: 40}
      - opensips: {}
      - labels: {level: }
  not_fused_two_labels:
    stages:
      - opensips: {}
      - labels: {level: }
      - labels: {module: }
"""


def specs() -> dict[str, PipelineSpec]:
    issues = IssueCollector()
    found = decode_pipelines(yaml.safe_load(PIPELINES), "test", issues)
    assert not issues.items, issues.items
    return {**found, "opensips": builtin_pipelines()["opensips"]}


FUSED = ("opensips", "labels_only", "metadata_only", "metadata_first", "opensips_alone")
SPECS = specs()
PYTHON_STAGES = {"opensips": OpensipsStage, "labels": LabelsStage,
                 "structured_metadata": MetadataStage}


def pure_python(spec: PipelineSpec) -> CompiledPipeline:
    """``spec``'s stages one by one, each running its Python code."""
    return CompiledPipeline(spec.name, [PYTHON_STAGES[s.kind](s.options, s.label, compiled=False)
                                        for s in spec.stages])


needs_compiled = pytest.mark.skipif(opensips.COMPILED is None, reason="_opensips not built")

PAIRS = st.lists(st.tuples(st.sampled_from(["level", "pid", "x", "call_id"]),
                           st.sampled_from(["ERROR", "given", "1"])),
                 max_size=3, unique_by=lambda pair: pair[0]).map(lambda p: tuple(sorted(p)))
ENTRY = st.one_of(adversarial_entries(), opensips_entries())


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(FUSED),
       batches=st.lists(st.lists(st.tuples(ENTRY, PAIRS, PAIRS), min_size=1, max_size=12),
                        min_size=1, max_size=3),
       given_pairs=st.booleans(), cache_size=st.sampled_from([1, 2, 1024]))
def test_the_fused_step_gives_what_the_stages_give(
        name: str, batches: list[list[tuple[str, tuple[tuple[str, str], ...],
                                            tuple[tuple[str, str], ...]]]],
        given_pairs: bool, cache_size: int) -> None:
    spec = SPECS[name]
    runs = {"fused": spec.compile(), "stages": spec.compile(fuse=False),
            "python": pure_python(spec)}
    assert isinstance(runs["fused"].stages[0], OpensipsAttachStage)
    original = fused.LABEL_SETS_CACHED
    fused.LABEL_SETS_CACHED = cache_size
    try:
        for batch in batches:
            lines = [line for line, _, _ in batch]
            extra = {"line_labels": [labels for _, labels, _ in batch],
                     "metadata": [pairs for _, _, pairs in batch]} if given_pairs else {}
            results = {how: pipeline.run(entries(lines, **extra))
                       for how, pipeline in runs.items()}
            assert results["fused"] == results["stages"]
            assert results["fused"] == results["python"]
    finally:
        fused.LABEL_SETS_CACHED = original


@needs_compiled
def test_a_batch_of_many_distinct_times_long_ones_and_wide_lines() -> None:
    """The compiled code's table of time texts (half of its 256 slots, then a dict; texts of
    one byte a character and at most 48 long) gives what the Python stage's dict gives: more
    distinct times than it takes, times seen again, long ones, lines of two bytes a character,
    a time that converts to 0 (converted again each time, as in Python) or not at all."""
    lines = []
    for i in range(600):
        fraction = f"{i % 300:06d}" if i % 7 else "1" * 60  # every 7th: longer than the table's
        time = f"2026-12-01T20:34:47.{fraction}+00:00" if i % 3 else \
            f"Dec  {1 + i % 9} 20:{i % 60:02d}:05"
        wide = " \u0101" if i % 11 == 0 else ""  # a character past U+00FF: a wide line
        lines.append(f"{time} [23{i % 5}] ERROR:tm:t_reply: callid=c{i % 4} code=486{wide}")
    lines += ["1970-01-01T00:00:00Z [1] INFO:a:b: x"] * 3 + ["Feb 30 10:00:00 [7] CRIT:x"] * 2
    for name in FUSED:
        spec = SPECS[name]
        results = [pipeline.run(entries(lines)) for pipeline in
                   (spec.compile(), spec.compile(fuse=False), pure_python(spec))]
        assert results[0] == results[1] == results[2], name
    assert results[0].failures == {("0:opensips", "unparsable"): 2}


@needs_compiled
@pytest.mark.parametrize("name", FUSED)
def test_the_compile_step_fuses_an_opensips_stage_and_its_attaching_stages(name: str) -> None:
    spec = SPECS[name]
    stages = spec.compile().stages
    assert len(stages) == 1 and isinstance(stages[0], OpensipsAttachStage)
    assert stages[0].label == spec.stages[0].label  # failures are counted as the stage's
    assert stages[0].fused == tuple(s.label for s in spec.stages)
    assert [type(s) for s in spec.compile(fuse=False).stages] == \
        [PYTHON_STAGES[s.kind] for s in spec.stages]


@pytest.mark.parametrize("name", [n for n in SPECS if n.startswith("not_fused")])
def test_the_compile_step_keeps_the_stages_where_fields_are_read_or_set_otherwise(
        name: str) -> None:
    spec = SPECS[name]
    assert len(spec.compile().stages) == len(spec.stages)
    assert not any(isinstance(s, OpensipsAttachStage) for s in spec.compile().stages)


def test_without_the_compiled_module_the_stages_run_in_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opensips, "COMPILED", None)
    stages = builtin_pipelines()["opensips"].compile().stages
    assert [type(s) for s in stages] == [OpensipsStage, LabelsStage, MetadataStage]


@needs_compiled
@pytest.mark.parametrize("fixture", ["stderr.log", "syslog.log", "syslog_traditional.log"])
def test_pipeline_test_prints_the_same_fused_or_not(fixture: str) -> None:
    spec = builtin_pipelines()["opensips"]
    assert spec.multiline is not None
    from logcap.cli.pipeline_test import join_all
    lines = join_all(read_lines(FIXTURES / "opensips" / fixture), spec.multiline)
    shown = []
    for pipeline in (spec.compile(), spec.compile(fuse=False)):
        out = io.StringIO()
        render(pipeline.run(entries(lines)), READ_NS, out)
        shown.append(out.getvalue())
    assert shown[0] == shown[1]
    assert "metadata:  pid=" in shown[0]


@needs_compiled
def test_the_fused_step_checks_its_arguments() -> None:
    compiled = opensips.COMPILED
    assert compiled is not None

    def call(lines: list[object], labels_plan: object = (("level", 2),),
             labels: list[object] | None = None) -> Processed:
        n = len(lines)
        return compiled.parse_attach(lines, [0] * n, lambda text, ns: ns, labels_plan,
                                     [None] * n if labels is None else labels, {}, 8,
                                     (("pid", 1),), [None] * n, merge_pairs)

    with pytest.raises(TypeError):
        call([b"bytes"])
    with pytest.raises(ValueError):
        call(["a"], labels=[])
    for plan in ((("level", 11),), (("level", -1),), (("level", "2"),), ((2, 2),), ("level",)):
        with pytest.raises(ValueError):
            call(["Dec  1 20:34:05 [1] ERROR:"], plan)
    with pytest.raises(ZeroDivisionError):  # the converter's error comes through
        compiled.parse_attach(["Dec  1 20:34:05 [1] ERROR:"], [0], lambda text, ns: 1 // 0,
                              (), [None], {}, 8, (), [None], merge_pairs)


@needs_compiled
def test_the_fused_step_leaks_nothing() -> None:
    """References and memory stay the same over many batches (each object the C code makes is
    released, kept by the stage's cache, or owned by the batch)."""
    lines = ["Dec  1 20:34:05 [2311] ERROR:tm:t_reply: callid=a from_tag=f code=486#015#012x",
             "Dec  1 20:34:06 sip01 opensips[1]: INFO:\nCall-ID: c\nFrom: <a>;tag=t\nCSeq: 1 BYE",
             "Dec  1 20:34:06 sip01 opensips[1]: INFO:core:x: from 10.0.0.1 method=ACK",
             "no header from 10.0.0.1", "Feb 30 10:00:00 [7] CRIT:x"]
    given = (("level", "WARN"), ("x", "1"))
    pipeline = SPECS["metadata_first"].compile()
    builtin = builtin_pipelines()["opensips"].compile()

    def batches(n: int) -> None:
        for k in range(n):
            extra = {"line_labels": [given, (), (), given, ()],
                     "metadata": [(), given, (), (), given]} if k % 2 else {}
            pipeline.run(entries(lines, **extra))
            builtin.run(entries(lines))

    grown, references = leaked(batches, [*lines, given, None])
    assert references[:-1] == [0] * (len(lines) + 1)
    assert abs(references[-1]) < 50  # None: other code takes and drops references too
    assert grown < 10_000, f"{grown} bytes more after 5000 batches"
