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
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any

import attrs

from logcap.config.section import Problem, Section
from logcap.config.values import flag, optional_text, regex, str_list, str_map
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.literals import match_prefixes
from logcap.pipeline.textindex import DENSE, Needles, TextIndex

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
    """Named groups of a searched expression become fields (module docstring).

    How it stays cheap (the result is the same as searching every text): when every match of
    the expression starts with one of a few literal strings
    (:func:`~logcap.pipeline.literals.match_prefixes`), and for ``contains``, the texts that
    hold them are found with one scan of the batch per string
    (:class:`~logcap.pipeline.textindex.TextIndex`); only those are searched, from the first
    place a prefix occurs. Strings in most texts are tested text by text instead (a find per
    prefix and text costs more than the regex engine's own scan). A match's fields are read
    by group number.
    """

    __slots__ = ("contains", "group", "label", "names", "optional", "prefixes", "search",
                 "source", "wanted")

    def __init__(self, config: RegexConfig, label: str) -> None:
        self.label = label
        pattern = re.compile(config.expression)
        self.search = pattern.search
        self.source = config.source
        self.optional = config.optional
        self.contains = config.contains
        prefixes = match_prefixes(config.expression) or ()
        if prefixes and all(any(c in p for c in config.contains) for p in prefixes):
            self.contains = ()  # a text with a prefix holds one of them: implied
        self.prefixes = Needles(prefixes) if prefixes else None
        self.wanted = Needles(self.contains) if self.contains else None
        self.names = tuple(pattern.groupindex)
        # one named group: read by its number (no dict per match)
        self.group = next(iter(pattern.groupindex.values())) if len(self.names) == 1 else 0

    def __call__(self, batch: LineBatch) -> None:
        source = self.source
        if source is None:
            texts: list[str | None] = batch.lines  # type: ignore[assignment]
            missing = 0
        else:
            texts = [batch.value(i, source) for i in range(len(batch))]
            missing = texts.count(None)
        candidates, check = self._candidates(batch, texts)
        matched = self._apply(batch, texts, candidates, self.contains if check else ())
        if not self.optional and len(texts) - missing - matched:
            batch.fail(self.label, "no_match", len(texts) - missing - matched)
        if missing:
            batch.fail(self.label, "missing_field", missing)

    def _candidates(self, batch: LineBatch, texts: list[str | None]
                    ) -> tuple[Iterable[tuple[int, int]], bool]:
        """``(text index, where to start searching)`` of the texts that may match, in order
        (the others cannot: no prefix, or no ``contains`` string), and whether ``contains``
        is still to be tested text by text (its strings are in too many texts)."""
        prefixes, wanted = self.prefixes, self.wanted
        if prefixes is None and wanted is None:
            return zip(range(len(texts)), repeat(0), strict=False), False
        index = batch.line_index() if self.source is None \
            else TextIndex([t or "" for t in texts])
        limit = len(texts) // DENSE
        starts = prefixes.positions(index, limit) if prefixes is not None else None
        having = wanted.positions(index, limit) if wanted is not None else None
        if starts is not None:
            if having is not None:
                return sorted((i, pos) for i, pos in starts.items() if i in having), False
            return sorted(starts.items()), wanted is not None
        every = zip(range(len(texts)), repeat(0), strict=False)
        if having is None:
            return every, wanted is not None
        return [(i, pos) for i, pos in every if i in having], False

    def _apply(self, batch: LineBatch, texts: list[str | None],
               candidates: Iterable[tuple[int, int]], contains: tuple[str, ...]) -> int:
        """Search the candidates (that hold one of ``contains``, if given) and set their
        fields; returns how many matched."""
        search, group, fields = self.search, self.group, batch.fields
        name = self.names[0]
        matched = 0
        for i, pos in candidates:
            text = texts[i]
            if text is None:
                continue
            if contains:
                for c in contains:  # a plain loop: cheaper than any() per line
                    if c in text:
                        break
                else:
                    continue
            m = search(text, pos)
            if m is None:
                continue
            matched += 1
            current = fields[i]
            if group:
                value = m.group(group)
                if current is None:
                    fields[i] = {name: value}  # a None value reads as absent
                elif value is not None:
                    current[name] = value
                continue
            found = m.groupdict()
            if current is None:  # a group that did not take part stays None: read as absent
                fields[i] = found
            else:  # it must not replace an earlier value
                if None in found.values():
                    found = {k: v for k, v in found.items() if v is not None}
                current.update(found)
        return matched


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
