"""Stages that extract fields from a line (or from a field): ``regex``, ``json``, ``logfmt``.

* ``regex``: ``expression``'s named groups become fields (groups that did not take part are
  not set). The expression is *searched* (anchor it with ``^`` to match at the start).
  No match is a failure counted as ``no_match``, unless ``optional`` (for patterns that apply
  to some lines only, e.g. a Call-ID). ``contains``: a fast prefilter for optional patterns,
  the expression runs only on texts that contain one of these strings (the others are left
  as if it did not match; listing a string every match must contain keeps the result exact).
* ``json``: the text is a JSON object; ``fields`` maps a field name to a key path in it
  (``a.b`` for nested objects); empty ``fields`` takes every top-level key. Strings are taken
  as they are, other values as compact JSON (``3``, ``true``, ``{"a":1}``). Not an object:
  ``invalid_json``. A key path that is absent is simply not set.
* ``logfmt``: ``key=value``, ``key="quoted \\"value\\""`` and bare ``key`` (empty value) pairs
  separated by spaces; ``fields`` maps a field name to a key (empty: every key). A text
  without any pair: ``invalid_logfmt``.

``source`` names the field to read; unset, the line itself. A source field the line does not
have is a failure counted as ``missing_field``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from logcap.config.section import Problem, Section
from logcap.config.values import flag, optional_text, regex, str_list, str_map
from logcap.pipeline.batch import LineBatch

__all__ = ["JsonConfig", "JsonStage", "LogfmtConfig", "LogfmtStage", "RegexConfig",
           "RegexStage", "parse_logfmt"]


@attrs.frozen
class RegexConfig(Section):
    """Options of ``regex``."""

    expression: str = regex(required=True)
    source: str | None = optional_text()
    optional: bool = flag(False)
    contains: tuple[str, ...] = str_list(blank_items=True)

    def problems(self) -> Iterator[Problem]:
        if self.expression and not re.compile(self.expression).groupindex:
            yield Problem("expression", "has no named group (?P<name>...): nothing would be "
                          "extracted", ("expression",))
        if self.contains and not self.optional:
            yield Problem("contains", "needs optional: true (the lines it skips are not "
                          "counted as no_match)", ("contains", "optional"))


class RegexStage:
    """Named groups of a searched expression become fields (module docstring)."""

    __slots__ = ("contains", "label", "optional", "search", "source")

    def __init__(self, config: RegexConfig, label: str) -> None:
        self.label = label
        self.search = re.compile(config.expression).search
        self.source = config.source
        self.optional = config.optional
        self.contains = config.contains

    def __call__(self, batch: LineBatch) -> None:
        search, source, contains = self.search, self.source, self.contains
        misses = missing = 0
        fields = batch.fields
        texts = batch.lines if source is None else [batch.value(i, source)
                                                     for i in range(len(batch))]
        for i, text in enumerate(texts):
            if text is None:
                missing += 1
                continue
            if contains:
                for c in contains:  # a plain loop: cheaper than any() per line
                    if c in text:
                        break
                else:
                    continue
            m = search(text)
            if m is None:
                misses += 1
                continue
            found = m.groupdict()
            current = fields[i]
            if current is None:  # a group that did not take part stays None: read as absent
                fields[i] = found
            else:  # it must not replace an earlier value
                if None in found.values():
                    found = {k: v for k, v in found.items() if v is not None}
                current.update(found)
        if misses and not self.optional:
            batch.fail(self.label, "no_match", misses)
        if missing:
            batch.fail(self.label, "missing_field", missing)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@attrs.frozen
class JsonConfig(Section):
    """Options of ``json``."""

    source: str | None = optional_text()
    fields: Mapping[str, str] = str_map()


class JsonStage:
    """Fields from a JSON object (module docstring)."""

    __slots__ = ("label", "paths", "source")

    def __init__(self, config: JsonConfig, label: str) -> None:
        self.label = label
        self.source = config.source
        self.paths = [(name, tuple(path.split("."))) for name, path in config.fields.items()]

    def __call__(self, batch: LineBatch) -> None:
        invalid = missing = 0
        loads = json.loads
        for i in range(len(batch)):
            text = batch.value(i, self.source)
            if text is None:
                missing += 1
                continue
            try:
                doc = loads(text)
            except ValueError:
                invalid += 1
                continue
            if not isinstance(doc, dict):
                invalid += 1
                continue
            if not self.paths:
                batch.add_fields(i, {k: _as_text(v) for k, v in doc.items()})
                continue
            found: dict[str, str] = {}
            for name, path in self.paths:
                value: Any = doc
                for key in path:
                    if not isinstance(value, dict) or key not in value:
                        break
                    value = value[key]
                else:
                    found[name] = _as_text(value)
            batch.add_fields(i, found)
        if invalid:
            batch.fail(self.label, "invalid_json", invalid)
        if missing:
            batch.fail(self.label, "missing_field", missing)


_LOGFMT_PAIR = re.compile(r'([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')
_UNESCAPE = re.compile(r"\\(.)")


def parse_logfmt(text: str) -> dict[str, str]:
    """The pairs of a logfmt text (module docstring); a bare word is a key with an empty
    value."""
    out: dict[str, str] = {}
    for key, value in _LOGFMT_PAIR.findall(text):
        if value.startswith('"'):
            value = _UNESCAPE.sub(_unescape_one, value[1:-1])
        out[key] = value
    return out


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape_one(m: re.Match[str]) -> str:
    char = m.group(1)
    return _ESCAPES.get(char, char)


@attrs.frozen
class LogfmtConfig(Section):
    """Options of ``logfmt``."""

    source: str | None = optional_text()
    fields: Mapping[str, str] = str_map()


class LogfmtStage:
    """Fields from logfmt pairs (module docstring)."""

    __slots__ = ("label", "names", "source")

    def __init__(self, config: LogfmtConfig, label: str) -> None:
        self.label = label
        self.source = config.source
        self.names = dict(config.fields)

    def __call__(self, batch: LineBatch) -> None:
        invalid = missing = 0
        for i in range(len(batch)):
            text = batch.value(i, self.source)
            if text is None:
                missing += 1
                continue
            pairs = parse_logfmt(text) if "=" in text else {}
            if not pairs:
                invalid += 1
                continue
            if self.names:
                pairs = {name: pairs[key] for name, key in self.names.items() if key in pairs}
            batch.add_fields(i, pairs)
        if invalid:
            batch.fail(self.label, "invalid_logfmt", invalid)
        if missing:
            batch.fail(self.label, "missing_field", missing)
