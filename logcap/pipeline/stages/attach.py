"""Stages that turn fields into what Loki receives: ``labels``, ``structured_metadata``,
``output``.

* ``labels``: a mapping of label name to field name (null or empty: the same name). Each line
  that has the field gets the label (its Loki stream is the source's labels plus these); the
  Loki sink's label policy and stream cap (the cardinality guard) apply to them as to any
  label. A line without the field, or with an empty value, gets no such label (not a failure).
* ``structured_metadata``: the same mapping, into the line's Loki structured metadata.
* ``output``: the line becomes the value of field ``source``; a line without it is counted
  (``missing_field``) and keeps its text.

The loops of ``labels`` and ``structured_metadata`` run compiled
(:mod:`logcap.pipeline.stages._attach`, built from ``_attach.c`` by ``setup.py``) when that is
importable; :func:`_attach` and :func:`_attach_shared` here are their specification and the
fallback.
"""

from __future__ import annotations

import attrs

from logcap.config.section import Section
from logcap.config.values import text
from logcap.pipeline.batch import LineBatch, Pairs
from logcap.pipeline.stages.base import compiled_module

__all__ = ["COMPILED", "LABEL_SETS_CACHED", "FieldMapConfig", "LabelsStage", "MetadataStage",
           "OutputConfig", "OutputStage", "merge_pairs"]


COMPILED = compiled_module("logcap.pipeline.stages._attach")
"""The compiled loops (:mod:`logcap.pipeline.stages._attach`), None where it was not built."""


@attrs.frozen
class FieldMapConfig:
    """Options of ``labels`` and ``structured_metadata``: ``(name, field)`` pairs in order."""

    pairs: tuple[tuple[str, str], ...]


LABEL_SETS_CACHED = 1024
"""Distinct label value combinations a ``labels`` stage remembers (then it starts anew)."""


def merge_pairs(current: Pairs | None, found: Pairs, sort: bool) -> Pairs:
    """``found`` added to a line's ``current`` pairs (a value of ``found`` wins)."""
    if current is None:
        return found
    merged = {**dict(current), **dict(found)}
    return tuple(sorted(merged.items())) if sort else tuple(merged.items())


def _attach(batch: LineBatch, pairs: tuple[tuple[str, str], ...],
            target: list[Pairs | None]) -> None:
    """Set ``target[i]`` (metadata) from line ``i``'s fields: ``(name, value)`` for the fields
    present and not empty, in the order of ``pairs``."""
    for i, line_fields in enumerate(batch.fields):
        if line_fields is None:
            continue
        get = line_fields.get
        found: list[tuple[str, str]] = []
        for name, field in pairs:  # a plain loop: a comprehension is a call per line
            value = get(field)
            if value:
                found.append((name, value))
        if found:
            current = target[i]
            target[i] = tuple(found) if current is None else merge_pairs(current, tuple(found),
                                                                      False)


def _attach_shared(batch: LineBatch, names: tuple[str, ...], sources: tuple[str, ...],
                   target: list[Pairs | None], cache: dict[tuple[str | None, ...], Pairs]
                   ) -> None:
    """Set ``target[i]`` (labels) to line ``i``'s ``(name, value)`` pairs sorted by name, where
    lines with the same values share one tuple from ``cache`` (label values repeat)."""
    for i, line_fields in enumerate(batch.fields):
        if line_fields is None:
            continue
        values = tuple(map(line_fields.get, sources))
        found = cache.get(values)
        if found is None:
            found = tuple(sorted((name, value) for name, value in zip(names, values,
                                                                      strict=True) if value))
            if len(cache) >= LABEL_SETS_CACHED:
                cache.clear()
            cache[values] = found
        if found:
            current = target[i]
            target[i] = found if current is None else merge_pairs(current, found, True)


class LabelsStage:
    """Promotes fields into the line's labels (module docstring). ``compiled``: run
    :data:`COMPILED` (if there is one) rather than the Python loop."""

    __slots__ = ("_compiled", "cache", "label", "names", "sources")

    def __init__(self, config: FieldMapConfig, label: str, *,
                 compiled: bool = COMPILED is not None) -> None:
        self.label = label
        self.names = tuple(name for name, _ in config.pairs)
        self.sources = tuple(field for _, field in config.pairs)
        self.cache: dict[tuple[str | None, ...], Pairs] = {}
        self._compiled = COMPILED if compiled else None

    def __call__(self, batch: LineBatch) -> None:
        if self._compiled is None:
            _attach_shared(batch, self.names, self.sources, batch.labels, self.cache)
        else:
            self._compiled.attach_shared(batch.fields, self.names, self.sources, batch.labels,
                                         self.cache, LABEL_SETS_CACHED, merge_pairs)


class MetadataStage:
    """Copies fields into the line's structured metadata (module docstring). ``compiled``: run
    :data:`COMPILED` (if there is one) rather than the Python loop."""

    __slots__ = ("_compiled", "label", "pairs")

    def __init__(self, config: FieldMapConfig, label: str, *,
                 compiled: bool = COMPILED is not None) -> None:
        self.label = label
        self.pairs = config.pairs
        self._compiled = COMPILED if compiled else None

    def __call__(self, batch: LineBatch) -> None:
        if self._compiled is None:
            _attach(batch, self.pairs, batch.metadata)
        else:
            self._compiled.attach(batch.fields, self.pairs, batch.metadata, merge_pairs)


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
