"""Stages that rewrite text: ``truncate`` and ``replace``.

* ``truncate``: a line (or field ``source``) longer than ``max_bytes`` bytes of UTF-8 is cut
  at a character boundary so that, with ``suffix`` appended, it fits in ``max_bytes``.
* ``replace``: every match of ``expression`` in the line (or field ``source``) is replaced
  by ``replace``, a template that may use ``\\1`` and ``\\g<name>`` (e.g. mask passwords:
  ``expression: "(IDENTIFIED BY|PASSWORD\\() *'[^']*'"``, ``replace: "\\1 '***'"``). A template
  naming a group the expression does not have is a config error. A line without the source
  field is counted (``missing_field``). ``contains``: a fast prefilter, the expression runs
  only on texts that contain one of these strings (list strings every match contains).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs

from logcap.config.section import Problem, Section
from logcap.config.sources import DEFAULT_MAX_LINE_BYTES
from logcap.config.values import optional_text, regex, size, str_list, text
from logcap.pipeline.batch import LineBatch

__all__ = ["ReplaceConfig", "ReplaceStage", "TruncateConfig", "TruncateStage",
           "template_problem", "truncate_utf8"]


def truncate_utf8(value: str, max_bytes: int, suffix: str = "") -> str:
    """``value`` cut so that it plus ``suffix`` is at most ``max_bytes`` bytes of UTF-8 (at a
    character boundary); unchanged when it fits."""
    if len(value) * 4 <= max_bytes:
        return value
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return value
    room = max(0, max_bytes - len(suffix.encode("utf-8", "surrogatepass")))
    return raw[:room].decode("utf-8", "ignore") + suffix


@attrs.frozen
class TruncateConfig(Section):
    """Options of ``truncate``."""

    max_bytes: int = size(DEFAULT_MAX_LINE_BYTES, required=True)
    source: str | None = optional_text()
    suffix: str = text("")

    def problems(self) -> Iterator[Problem]:
        if len(self.suffix.encode()) >= self.max_bytes:
            yield Problem("suffix", f"must be shorter than max_bytes ({self.max_bytes})",
                          ("suffix", "max_bytes"))


class TruncateStage:
    """Cuts long lines or fields (module docstring)."""

    __slots__ = ("label", "max_bytes", "source", "suffix")

    def __init__(self, config: TruncateConfig, label: str) -> None:
        self.label = label
        self.max_bytes = config.max_bytes
        self.source = config.source
        self.suffix = config.suffix

    def __call__(self, batch: LineBatch) -> None:
        limit, suffix = self.max_bytes, self.suffix
        if self.source is None:
            lines = batch.lines
            for i, line in enumerate(lines):
                if len(line) * 4 > limit:
                    lines[i] = truncate_utf8(line, limit, suffix)
            return
        for i in range(len(batch)):
            value = batch.value(i, self.source)
            if value is not None and len(value) * 4 > limit:
                batch.set_value(i, self.source, truncate_utf8(value, limit, suffix))


_REGEX_SYNTAX = frozenset(".^$*+?{}[]\\|()")
_GROUP_REF = re.compile(r"\\(?:g<([^>]*)>|(\d{1,2}))")


def template_problem(expression: str, template: str) -> str | None:
    """Why ``template`` cannot be a replacement for ``expression`` (None if it can)."""
    try:
        pattern = re.compile(expression)
    except re.error:
        return None  # reported at the expression
    for name, number in _GROUP_REF.findall(template):
        ref = name or number
        if ref.isdigit():
            if int(ref) > pattern.groups:
                return f"refers to group {ref}; the expression has {pattern.groups}"
        elif ref not in pattern.groupindex:
            return f"refers to group {ref!r}, which the expression does not have"
    try:
        pattern.sub(template, "")
    except (re.error, IndexError) as exc:
        return f"invalid replacement template: {exc}"
    return None


@attrs.frozen
class ReplaceConfig(Section):
    """Options of ``replace``."""

    expression: str = regex(required=True)
    replace: str = text("")
    source: str | None = optional_text()
    contains: tuple[str, ...] = str_list(blank_items=True)

    def problems(self) -> Iterator[Problem]:
        reason = template_problem(self.expression, self.replace)
        if reason:
            yield Problem("replace", reason, ("expression", "replace"))


class ReplaceStage:
    """Rewrites matches of an expression (module docstring)."""

    __slots__ = ("contains", "label", "literal", "pattern", "source", "template")

    def __init__(self, config: ReplaceConfig, label: str) -> None:
        self.label = label
        self.pattern = re.compile(config.expression)
        self.template = config.replace
        self.source = config.source
        self.contains = config.contains
        # a plain text for a plain text: str.replace, the same result at a fraction of the cost
        plain = not _REGEX_SYNTAX.intersection(config.expression) and "\\" not in self.template
        self.literal = config.expression if plain and config.expression else None

    def __call__(self, batch: LineBatch) -> None:
        sub, template = self.pattern.sub, self.template
        if self.source is None:
            lines = batch.lines
            literal, contains = self.literal, self.contains
            for i, line in enumerate(lines):
                if contains:
                    for c in contains:  # a plain loop: cheaper than any() per line
                        if c in line:
                            break
                    else:
                        continue
                if literal is None:
                    lines[i] = sub(template, line)
                elif literal in line:
                    lines[i] = line.replace(literal, template)
            return
        missing = 0
        for i in range(len(batch)):
            value = batch.value(i, self.source)
            if value is None:
                missing += 1
            elif not self.contains or any(c in value for c in self.contains):
                batch.set_value(i, self.source, sub(template, value))
        if missing:
            batch.fail(self.label, "missing_field", missing)
