"""Decoding a parsed ``pipelines.yaml`` document into :class:`PipelineSpec` s.

The format is in :mod:`logcap.pipeline.loading`. Stage options are decoded by the main
config's :class:`~logcap.config.decoder.ConfigDecoder` (unknown keys with did-you-mean, types,
regexes that compile, ...); the options of ``labels`` and ``structured_metadata`` are a
mapping of names to fields. Problems go to an :class:`~logcap.config.errors.IssueCollector`
with key paths relative to the document; a pipeline with any problem is left out.
"""

from __future__ import annotations

import re
from typing import Any

from logcap.config.decoder import ConfigDecoder
from logcap.config.errors import IssueCollector, describe, did_you_mean
from logcap.config.section import check_name
from logcap.config.sources import MultilineConfig
from logcap.pipeline.compiled import PipelineSpec, StageSpec
from logcap.pipeline.kinds import FIELD_MAP_KINDS, MULTILINE, STAGE_KINDS
from logcap.pipeline.stages.attach import FieldMapConfig

__all__ = ["STAGE_KIND_NAMES", "decode_pipelines"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
STAGE_KIND_NAMES = (MULTILINE, *STAGE_KINDS)
"""Every kind a stage entry may name."""


def decode_pipelines(data: Any, origin: str, issues: IssueCollector) -> dict[str, PipelineSpec]:
    """The pipelines of a parsed ``pipelines.yaml`` document; problems go to ``issues``
    (key paths relative to the document)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        issues.add("", f"expected a mapping with the key 'pipelines', got {describe(data)}")
        return {}
    for key in data:
        if key != "pipelines":
            issues.add(str(key), f"unknown key{did_you_mean(str(key), ['pipelines'])} "
                       "(valid: pipelines)")
    raw = data.get("pipelines")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        issues.add("pipelines", f"expected a mapping of pipeline names, got {describe(raw)}")
        return {}
    out: dict[str, PipelineSpec] = {}
    for name, body in raw.items():
        path = f"pipelines.{name}"
        bad_name = check_name(name) if isinstance(name, str) else "a name must be a string"
        if bad_name:
            issues.add(path, bad_name)
            continue
        spec = _pipeline(name, body, path, origin, issues)
        if spec is not None:
            out[name] = spec
    return out


def _pipeline(name: str, body: Any, path: str, origin: str,
              issues: IssueCollector) -> PipelineSpec | None:
    if not isinstance(body, dict):
        issues.add(path, f"expected a mapping with the key 'stages', got {describe(body)}")
        return None
    for key in body:
        if key != "stages":
            issues.add(f"{path}.{key}", f"unknown key{did_you_mean(str(key), ['stages'])} "
                       "(valid: stages)")
    raw = body.get("stages")
    if not isinstance(raw, list) or not raw:
        issues.add(f"{path}.stages", "expected a non-empty list of stages, got "
                   f"{describe(raw)}")
        return None
    before = len(issues.items)
    stages: list[StageSpec] = []
    multiline: MultilineConfig | None = None
    for index, item in enumerate(raw):
        where = f"{path}.stages[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            issues.add(where, "expected a mapping with one key, the stage kind "
                       f"(one of {', '.join(STAGE_KIND_NAMES)}), got {describe(item)}")
            continue
        ((kind, options),) = item.items()
        kind_path = f"{where}.{kind}"
        if kind == MULTILINE:
            if index != 0:
                issues.add(kind_path, "multiline runs at the source, before every other "
                           "stage: make it the first stage")
                continue
            multiline = ConfigDecoder(issues).section(MultilineConfig, options, kind_path)
            continue
        stage_kind = STAGE_KINDS.get(kind) if isinstance(kind, str) else None
        if stage_kind is None:
            hint = did_you_mean(str(kind), STAGE_KIND_NAMES)
            valid = " (valid: " + ", ".join(STAGE_KIND_NAMES) + ")"
            issues.add(kind_path, f"unknown stage kind{hint or valid}")
            continue
        if kind in FIELD_MAP_KINDS:
            decoded: Any = _field_map(options, kind_path, issues)
        else:
            decoded = ConfigDecoder(issues).section(stage_kind.options, options, kind_path)
        stages.append(StageSpec(kind, decoded, index))
    blocking = [s for s in stages
                if s.kind == "rate_limit" and getattr(s.options, "mode", None) == "block"]
    for extra in blocking[1:]:
        issues.add(f"{path}.stages[{extra.index}].rate_limit.mode",
                   "a pipeline has at most one rate_limit in block mode (stages["
                   f"{blocking[0].index}] is one)")
    if len(issues.items) > before:
        return None
    return PipelineSpec(name, tuple(stages), multiline, origin)


def _field_map(raw: Any, path: str, issues: IssueCollector) -> FieldMapConfig | None:
    if not isinstance(raw, dict) or not raw:
        issues.add(path, "expected a mapping of names to fields (a null field: the same name), "
                   f"got {describe(raw)}")
        return None
    pairs: list[tuple[str, str]] = []
    for name, field in raw.items():
        sub = f"{path}.{name}"
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
            issues.add(sub, "invalid name (must match [a-zA-Z_][a-zA-Z0-9_]*)")
        elif name.startswith("__"):
            issues.add(sub, "names starting with '__' are reserved by Loki")
        elif field is not None and not isinstance(field, str):
            issues.add(sub, f"expected a field name or null, got {describe(field)}")
        else:
            pairs.append((name, field or name))
    return FieldMapConfig(tuple(pairs))
