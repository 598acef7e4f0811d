"""A pipeline ready to run: :class:`PipelineSpec` (validated, from config or built-in) and
:class:`CompiledPipeline` (its stages built, with their state), and the runner.

:meth:`CompiledPipeline.run` applies the stages to one :class:`~logcap.messages.Entries` and
returns a :class:`Processed`: an ``Entries`` with the same token, source, stream, labels and
``ack_to`` (fewer lines only through counted drops), its per-line fields filled
(``timestamps`` when a stage set one or a line was dropped, so every line keeps its own;
``line_labels`` and ``metadata`` when a stage set any), and the counts of failures and drops
by ``(stage, reason)``. Per-line fields the source already set are kept (stages add to them).

A stage that raises (a bug, never a bad line: stages count their failures) is counted as
reason ``error`` for every line of the batch, logged, and the run goes on with the next stage.
Stages with state (``rate_limit``'s buckets, time caches) keep it in the compiled pipeline, so
each shard compiles its own (a stream always goes to the same shard).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logcap.config.sources import MultilineConfig
from logcap.messages import Entries
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.kinds import STAGE_KINDS
from logcap.pipeline.stages import opensips
from logcap.pipeline.stages.base import Stage, stage_label
from logcap.pipeline.stages.filter import Demand
from logcap.pipeline.stages.fused import OpensipsAttachStage, reads_only_opensips_fields

__all__ = ["CompiledPipeline", "PipelineSpec", "Processed", "StageSpec"]

log = logging.getLogger(__name__)

Counts = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One validated stage: its kind, its options, its index in the pipeline."""

    kind: str
    options: Any
    index: int

    @property
    def label(self) -> str:
        return stage_label(self.index, self.kind)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A validated pipeline: its stages (``multiline`` apart: it runs at the source) and
    where it was defined (a file, or ``built-in``)."""

    name: str
    stages: tuple[StageSpec, ...]
    multiline: MultilineConfig | None
    origin: str

    def compile(self, *, fuse: bool = True) -> CompiledPipeline:
        """A fresh runnable pipeline (new stage state); ``fuse``: stages fused where they can
        be (module docstring)."""
        fused = _fused(self.stages) if fuse else None
        built = [fused] if fused is not None else \
            [STAGE_KINDS[s.kind].build(s.options, s.label) for s in self.stages]
        return CompiledPipeline(self.name, built, self.multiline)


def _fused(stages: tuple[StageSpec, ...]) -> Stage | None:
    """The one step that does all of ``stages`` (module docstring: when), or None."""
    if opensips.COMPILED is None or not stages or stages[0].kind != "opensips":
        return None
    attach = {s.kind: s for s in stages[1:]}
    if len(attach) != len(stages) - 1 or not set(attach) <= {"labels", "structured_metadata"} \
            or not all(reads_only_opensips_fields(s.options) for s in attach.values()):
        return None
    labels, metadata = attach.get("labels"), attach.get("structured_metadata")
    return OpensipsAttachStage(
        opensips.OpensipsStage(stages[0].options, stages[0].label),
        labels.options if labels is not None else None,
        metadata.options if metadata is not None else None,
        tuple(s.label for s in stages), opensips.COMPILED)


@dataclass(frozen=True, slots=True)
class Processed:
    """What a run gives: the processed entries and the counts by ``(stage, reason)``; and
    ``demand`` when a ``rate_limit`` stage in block mode asks the caller to hold the entries
    until its bucket allows them."""

    entries: Entries
    failures: Counts
    drops: Counts
    demand: Demand | None = None

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


class CompiledPipeline:
    """The stages of one pipeline, built (module docstring). ``multiline`` is the joining
    spec for the source (None: lines are not joined)."""

    __slots__ = ("_warned", "multiline", "name", "stages")

    def __init__(self, name: str, stages: Sequence[Stage],
                 multiline: MultilineConfig | None = None) -> None:
        self.name = name
        self.stages = tuple(stages)
        self.multiline = multiline
        self._warned: set[str] = set()

    def run(self, entries: Entries, now_s: float = 0.0) -> Processed:
        """Apply every stage to ``entries`` (module docstring); ``now_s`` is the caller's
        monotonic clock."""
        n = len(entries.lines)
        stamps = list(entries.timestamps) if entries.timestamps is not None \
            else list(range(entries.ts_ns, entries.ts_ns + n))
        batch = LineBatch(list(entries.lines), stamps, entries.ts_ns, entries.stream, now_s)
        if entries.line_labels is not None:
            batch.labels = [pairs or None for pairs in entries.line_labels]
        if entries.metadata is not None:
            batch.metadata = [pairs or None for pairs in entries.metadata]
        for stage in self.stages:
            try:
                stage(batch)
            except Exception:  # a bug in a stage must not lose the batch
                if stage.label not in self._warned:
                    self._warned.add(stage.label)
                    log.exception("pipeline %s: stage %s failed on a batch; its lines go on",
                                  self.name, stage.label)
                batch.fail(stage.label, "error", len(batch))
        demand = None
        if batch.demand is not None:
            bucket, label = batch.demand
            demand = Demand(bucket, self.name, label)
        return Processed(self._entries(entries, batch), batch.failures, batch.drops, demand)

    @staticmethod
    def _entries(entries: Entries, batch: LineBatch) -> Entries:
        changes: dict[str, Any] = {"lines": batch.lines}
        if batch.timestamped or batch.drops or entries.timestamps is not None:
            changes["timestamps"] = batch.timestamps
        if entries.line_labels is not None or any(batch.labels):
            changes["line_labels"] = [pairs or () for pairs in batch.labels]
        if entries.metadata is not None or any(batch.metadata):
            changes["metadata"] = [pairs or () for pairs in batch.metadata]
        return dataclasses.replace(entries, **changes)
