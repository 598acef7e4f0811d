"""Fused steps: the work of several stages done by one compiled call, where the compile step
(:meth:`logcap.pipeline.compiled.PipelineSpec.compile`, which decides) finds them.

:class:`OpensipsAttachStage` is an ``opensips`` stage with the ``labels`` and
``structured_metadata`` stages after it (at most one of each) when they read only fields the
opensips stage makes (:data:`~logcap.pipeline.stages.opensips.FIELDS`) and nothing after them
reads fields. The compiled parser (``_opensips.c``: ``parse_attach``) then writes each entry's
label pairs and metadata pairs itself, from the values it finds, instead of a fields dict per
entry that the two stages read again:

* labels: the pairs of the values present, sorted by name, one tuple shared by the entries
  with the same values (the entry before's when its values are the same, else from a cache of
  :data:`~logcap.pipeline.stages.attach.LABEL_SETS_CACHED` value combinations, as ``labels``
  keeps one);
* metadata: the pairs of the values present, in the configured order, a ``(name, value)``
  pair reused from the entry before when its value is the same;
* the lines, timestamps and failure counts are the opensips stage's (its label, its time
  converter), and pairs already on a line are merged as the stages merge them
  (:func:`~logcap.pipeline.stages.attach.merge_pairs`).

The result (lines, timestamps, labels, metadata, failures) is the stages' own
(``tests/test_pipeline_fused.py`` compares the two, and the pure-Python stages, on generated
and adversarial entries); only the fields are not made, which is why nothing after the step
may read them. There is no Python version: where the compiled module was not built the
compile step keeps the stages, whose Python code is the specification. A failure of the step
(a bug, never a bad line) is counted under the opensips stage's label.
"""

from __future__ import annotations

from types import ModuleType

from logcap.pipeline.batch import LineBatch
from logcap.pipeline.stages.attach import LABEL_SETS_CACHED, FieldMapConfig, merge_pairs
from logcap.pipeline.stages.opensips import FIELDS, OpensipsStage

__all__ = ["OpensipsAttachStage", "Plan", "reads_only_opensips_fields"]

Plan = tuple[tuple[str, int], ...]
"""What the compiled step is told of an attaching stage: ``(name, field number)`` pairs, the
field numbered by its place in :data:`~logcap.pipeline.stages.opensips.FIELDS`."""


def reads_only_opensips_fields(config: FieldMapConfig) -> bool:
    """Whether a ``labels``/``structured_metadata`` stage reads only fields the opensips stage
    makes, under distinct names (as a mapping gives them)."""
    names = [name for name, _ in config.pairs]
    return len(set(names)) == len(names) and all(field in FIELDS for _, field in config.pairs)


def _plan(pairs: tuple[tuple[str, str], ...]) -> Plan:
    return tuple((name, FIELDS.index(field)) for name, field in pairs)


class OpensipsAttachStage:
    """An opensips stage and the attaching stages after it, in one compiled call (module
    docstring). ``labels``/``metadata``: the options of the ``labels`` and
    ``structured_metadata`` stages (None: no such stage); ``fused``: the labels of the stages
    it does (the opensips stage's first: its ``label``); ``compiled``: the opensips stage's
    compiled module."""

    __slots__ = ("_cache", "_compiled", "_labels", "_metadata", "fused", "label", "opensips")

    def __init__(self, opensips: OpensipsStage, labels: FieldMapConfig | None,
                 metadata: FieldMapConfig | None, fused: tuple[str, ...],
                 compiled: ModuleType) -> None:
        self.opensips = opensips
        self.label = opensips.label
        self.fused = fused
        self._compiled = compiled
        self._labels = _plan(tuple(sorted(labels.pairs))) if labels is not None else ()
        self._metadata = _plan(metadata.pairs) if metadata is not None else ()
        self._cache: dict[tuple[str | None, ...], tuple[tuple[str, str], ...]] = {}

    def __call__(self, batch: LineBatch) -> None:
        no_header, unparsable = self._compiled.parse_attach(
            batch.lines, batch.timestamps, self.opensips.convert, self._labels, batch.labels,
            self._cache, LABEL_SETS_CACHED, self._metadata, batch.metadata, merge_pairs)
        self.opensips.count(batch, no_header, unparsable)
