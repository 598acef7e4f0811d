"""Stages that turn fields into what Loki receives: ``labels``, ``structured_metadata``,
``output``.

* ``labels``: a mapping of label name to field name (null or empty: the same name). Each line
  that has the field gets the label (its Loki stream is the source's labels plus these); the
  Loki sink's label policy and stream cap (the cardinality guard) apply to them as to any
  label. A line without the field, or with an empty value, gets no such label (not a failure).
* ``structured_metadata``: the same mapping, into the line's Loki structured metadata.
* ``output``: the line becomes the value of field ``source``; a line without it is counted
  (``missing_field``) and keeps its text.
"""

from __future__ import annotations

import attrs

from logcap.config.section import Section
from logcap.config.values import text
from logcap.pipeline.batch import Fields, LineBatch

__all__ = ["FieldMapConfig", "LabelsStage", "MetadataStage", "OutputConfig", "OutputStage"]


@attrs.frozen
class FieldMapConfig:
    """Options of ``labels`` and ``structured_metadata``: ``(name, field)`` pairs in order."""

    pairs: tuple[tuple[str, str], ...]


def _attach(batch: LineBatch, pairs: tuple[tuple[str, str], ...],
            target: list[Fields | None]) -> None:
    for i, line_fields in enumerate(batch.fields):
        if line_fields is None:
            continue
        get = line_fields.get
        found: Fields = {}
        for name, field in pairs:  # a plain loop: a comprehension is a call per line
            value = get(field)
            if value:
                found[name] = value
        if not found:
            continue
        current = target[i]
        if current is None:
            target[i] = found
        else:
            current.update(found)


class LabelsStage:
    """Promotes fields into the line's labels (module docstring)."""

    __slots__ = ("label", "pairs")

    def __init__(self, config: FieldMapConfig, label: str) -> None:
        self.label = label
        self.pairs = config.pairs

    def __call__(self, batch: LineBatch) -> None:
        _attach(batch, self.pairs, batch.labels)


class MetadataStage:
    """Copies fields into the line's structured metadata (module docstring)."""

    __slots__ = ("label", "pairs")

    def __init__(self, config: FieldMapConfig, label: str) -> None:
        self.label = label
        self.pairs = config.pairs

    def __call__(self, batch: LineBatch) -> None:
        _attach(batch, self.pairs, batch.metadata)


@attrs.frozen
class OutputConfig(Section):
    """Options of ``output``."""

    source: str = text(required=True)


class OutputStage:
    """The line becomes a field's value (module docstring)."""

    __slots__ = ("label", "source")

    def __init__(self, config: OutputConfig, label: str) -> None:
        self.label = label
        self.source = config.source

    def __call__(self, batch: LineBatch) -> None:
        missing = 0
        fields, lines, source = batch.fields, batch.lines, self.source
        for i in range(len(lines)):
            line_fields = fields[i]
            value = None if line_fields is None else line_fields.get(source)
            if value is None:
                missing += 1
            else:
                lines[i] = value
        if missing:
            batch.fail(self.label, "missing_field", missing)
