"""The stage kinds a pipeline may name, each with its options class and its builder.

:data:`STAGE_KINDS` maps a kind (the one key of a stage entry in ``pipelines.yaml``) to a
:class:`StageKind`. Options of most kinds are a section decoded like the main config; the
options of ``labels`` and ``structured_metadata`` are a mapping of names to fields
(:data:`FIELD_MAP_KINDS`); ``multiline`` is not run by the pipeline but at the source
(:data:`MULTILINE`, its options are :class:`~logcap.config.sources.MultilineConfig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcap.pipeline.stages.attach import (
    FieldMapConfig,
    LabelsStage,
    MetadataStage,
    OutputConfig,
    OutputStage,
)
from logcap.pipeline.stages.base import Stage
from logcap.pipeline.stages.edit import ReplaceConfig, ReplaceStage, TruncateConfig, TruncateStage
from logcap.pipeline.stages.filter import DropConfig, DropStage, RateLimitConfig, RateLimitStage
from logcap.pipeline.stages.opensips import OpensipsConfig, OpensipsStage
from logcap.pipeline.stages.parse import (
    JsonConfig,
    JsonStage,
    LogfmtConfig,
    LogfmtStage,
    RegexConfig,
    RegexStage,
)
from logcap.pipeline.stages.timestamp import TimestampConfig, TimestampStage

__all__ = ["FIELD_MAP_KINDS", "MULTILINE", "STAGE_KINDS", "StageKind"]

MULTILINE = "multiline"
FIELD_MAP_KINDS = ("labels", "structured_metadata")


@dataclass(frozen=True, slots=True)
class StageKind:
    """A kind of stage: its options class and how a stage is built from options + label."""

    options: type
    build: Callable[[Any, str], Stage]


STAGE_KINDS: dict[str, StageKind] = {
    "regex": StageKind(RegexConfig, RegexStage),
    "json": StageKind(JsonConfig, JsonStage),
    "logfmt": StageKind(LogfmtConfig, LogfmtStage),
    "timestamp": StageKind(TimestampConfig, TimestampStage),
    "labels": StageKind(FieldMapConfig, LabelsStage),
    "structured_metadata": StageKind(FieldMapConfig, MetadataStage),
    "output": StageKind(OutputConfig, OutputStage),
    "truncate": StageKind(TruncateConfig, TruncateStage),
    "replace": StageKind(ReplaceConfig, ReplaceStage),
    "drop": StageKind(DropConfig, DropStage),
    "rate_limit": StageKind(RateLimitConfig, RateLimitStage),
    "opensips": StageKind(OpensipsConfig, OpensipsStage),
}
"""Every kind run by the pipeline (``multiline`` runs at the source)."""
