"""From plain data to config sections: decoding and validating every value.

Steps 5 and 6 of loading (see :mod:`logcap.config`). :class:`ConfigDecoder` walks the data
against the ``attrs`` section classes of :mod:`logcap.config.schema`, using the :class:`Spec`
each field declares (:mod:`logcap.config.values`), and reports every problem to an
:class:`~logcap.config.errors.IssueCollector`; it never raises for a bad value.

Per section
    A section that is not a mapping is an issue (and decoded as empty, so its required keys are
    reported too). Keys that are not strings or not fields are issues: an unknown key gets a
    "did you mean", an unknown top-level section also the section that has such a key
    (``batch_wait`` → ``sinks.loki.batch_wait``), else the list of valid keys; a removed key
    (:data:`~logcap.config.schema.REMOVED_KEYS`) gets the reason it was removed. Missing keys keep
    their defaults unless ``required``. A key whose path already had an issue (an unset
    variable, a duplicate) is skipped. The section is then built from the valid values and its
    :meth:`~logcap.config.schema.Section.problems` reported, except those that use a key that
    already failed.

Per value
    A value that came from ``${...}`` is text and the field types it: an integer field takes
    ``8401``, a boolean field ``true``/``false``/``yes``/``no``/``on``/``off``, a nullable field
    treats empty text as null; anything else stays a string. Null is accepted by nullable
    fields, means an empty section, list or map for collections, and is an issue elsewhere.
    YAML ``true`` is not an integer, a string is not a list (the message shows how to write
    one), numbers and booleans are not strings (a hint to quote them). Integers are checked
    against their range, choices are case-insensitive (and lower-cased), regexes must compile,
    durations and sizes accept their text grammar or a non-negative number (seconds; whole
    bytes), ``positive`` ones refuse 0. In label maps, names must match Loki's grammar and not
    start with ``__``. A field's own ``check`` runs last. The value of a secret key (password,
    token, ...) is never shown in a message.

Environment (:func:`check_environment`)
    An enabled disk-buffer encryption whose ``key_env`` names an unset variable is an issue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from logcap.config.errors import (
    IssueCollector,
    describe,
    did_you_mean,
    join_path,
    quote_hint,
)
from logcap.config.schema import REMOVED_KEYS, Config
from logcap.config.values import (
    Kind,
    Spec,
    field_specs,
    is_secret_key,
    parse_duration,
    parse_size,
)

__all__ = ["ConfigDecoder", "check_environment"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_YAML_TRUE = frozenset({"true", "yes", "on"})
_YAML_FALSE = frozenset({"false", "no", "off"})
_INVALID: Any = object()


class ConfigDecoder:
    """Turns plain data into section objects, reporting every problem to ``issues``."""

    def __init__(self, issues: IssueCollector) -> None:
        self._issues = issues

    def section(self, cls: type, raw: Any, path: str) -> Any:
        """An instance of section class ``cls`` from ``raw`` (data at ``path``, "" = the root)."""
        specs = dict(field_specs(cls))
        if raw is None:
            raw = {}
        elif not isinstance(raw, dict):
            self._issues.add(path, f"expected a mapping, got {describe(raw)}")
            raw = {}
        for key in raw:
            if not isinstance(key, str):
                self._issues.add(join_path(path, str(key)), f"key is not a string: {describe(key)}")
            elif key not in specs:
                sub = join_path(path, key)
                self._issues.add(sub, REMOVED_KEYS.get(sub) or _unknown_key(key, list(specs), path))
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            sub = join_path(path, name)
            if self._issues.reported(sub):  # e.g. an unset variable or a duplicate key
                continue
            if name not in raw:
                if spec.required:
                    self._issues.add(sub, "required but missing")
                continue
            value = self._value(spec, raw[name], sub)
            if value is not _INVALID:
                values[name] = value
        obj = cls(**values)
        for problem in obj.problems():
            uses = [join_path(path, key) for key in problem.uses]
            if not any(self._issues.failed(used) for used in uses):
                self._issues.add(join_path(path, problem.key), problem.reason)
        return obj

    def _fail(self, path: str, reason: str) -> Any:
        self._issues.add(path, reason)
        return _INVALID

    def _value(self, spec: Spec, raw: Any, path: str) -> Any:
        kind = spec.kind
        if isinstance(raw, str) and path in self._issues.expanded:
            raw = _type_expanded(spec, raw)
        if raw is None:
            if spec.nullable:
                return None
            if kind in (Kind.SECTION, Kind.SECTION_LIST, Kind.STR_LIST, Kind.STR_MAP):
                raw = {} if kind in (Kind.SECTION, Kind.STR_MAP) else []
            elif spec.required:
                return self._fail(path, "required but empty")
            else:
                return self._fail(path, f"expected {_expected(spec)}, got null")
        if kind is Kind.SECTION:
            assert spec.section is not None
            return self.section(spec.section, raw, path)
        if kind is Kind.SECTION_LIST:
            if not isinstance(raw, list):
                return self._fail(path, f"expected a list of mappings, got {describe(raw)}")
            assert spec.section is not None
            return tuple(self.section(spec.section, item, f"{path}[{index}]")
                         for index, item in enumerate(raw))
        if kind is Kind.STR_LIST:
            return self._str_list(spec, raw, path)
        if kind is Kind.STR_MAP:
            return self._str_map(spec, raw, path)
        reason = _convert_scalar(spec, raw, secret=is_secret_key(path.rsplit(".", 1)[-1]))
        if isinstance(reason, str):
            return self._fail(path, reason)
        value = reason[0]
        problem = spec.check(value) if spec.check is not None else None
        return self._fail(path, problem) if problem else value

    def _str_list(self, spec: Spec, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            return self._fail(path, f"expected a list of strings, got {describe(raw)} "
                                    f"(write [{raw!r}] or a YAML list)")
        if not isinstance(raw, list):
            return self._fail(path, f"expected a list of strings, got {describe(raw)}")
        items: list[str] = []
        for index, item in enumerate(raw):
            if self._issues.reported(f"{path}[{index}]"):
                continue
            if not isinstance(item, str):
                self._issues.add(f"{path}[{index}]", f"expected a string, got {describe(item)}")
            elif not item or not (item.strip() or spec.blank_items):
                self._issues.add(f"{path}[{index}]", "must not be empty")
            else:
                items.append(item)
        if spec.required and not raw:
            return self._fail(path, "must list at least one entry")
        return tuple(items)

    def _str_map(self, spec: Spec, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            return self._fail(path, f"expected a mapping of strings, got {describe(raw)}")
        items: dict[str, str] = {}
        for key, item in raw.items():
            sub = join_path(path, str(key))
            if self._issues.reported(sub):
                continue
            if not isinstance(key, str):
                self._issues.add(sub, f"key is not a string: {describe(key)}")
            elif spec.label_names and not _LABEL_NAME.fullmatch(key):
                self._issues.add(sub, "invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)")
            elif spec.label_names and key.startswith("__"):
                self._issues.add(sub, "label names starting with '__' are reserved by Loki")
            elif not isinstance(item, str):
                reason = f"expected a string, got {describe(item)}{quote_hint(item)}"
                self._issues.add(sub, reason)
            else:
                items[key] = item
        return MappingProxyType(items)


def _type_expanded(spec: Spec, raw: str) -> Any:
    """A value that came from ``${...}`` is text; the field decides its type."""
    stripped = raw.strip()
    if spec.nullable and not stripped:
        return None
    if spec.kind is Kind.BOOL and stripped.lower() in _YAML_TRUE | _YAML_FALSE:
        return stripped.lower() in _YAML_TRUE
    if spec.kind is Kind.INT and _INTEGER.fullmatch(stripped):
        return int(stripped)
    return raw


def _convert_scalar(spec: Spec, raw: Any, *, secret: bool = False) -> tuple[Any] | str:
    """``(value,)`` converted from ``raw``, or the reason it cannot be (scalar kinds only).
    For a ``secret`` the reason names the value's type but never shows the value."""
    kind = spec.kind
    if kind is Kind.BOOL:
        return (raw,) if isinstance(raw, bool) else f"expected true or false, got {describe(raw)}"
    if kind is Kind.INT:
        if isinstance(raw, bool) or not isinstance(raw, int):
            return f"expected an integer, got {describe(raw)}"
        if spec.minimum is not None and raw < spec.minimum:
            upper = f"..{spec.maximum}" if spec.maximum is not None else " or more"
            return f"{raw} is out of range (expected {spec.minimum}{upper})"
        if spec.maximum is not None and raw > spec.maximum:
            return f"{raw} is out of range (expected {spec.minimum}..{spec.maximum})"
        return (raw,)
    if kind in (Kind.DURATION, Kind.SIZE):
        return _measure(spec, raw)
    if not isinstance(raw, str):
        expected = _expected(spec)
        hint = quote_hint(raw) if kind is Kind.STR else ""
        shown = describe(raw).split(" (")[0] if secret else describe(raw)
        return f"expected {expected}, got {shown}{hint}"
    if spec.required and not raw.strip():
        return "required but empty"
    if kind is Kind.CHOICE:
        if raw.lower() in spec.choices:
            return (raw.lower(),)
        hint = did_you_mean(raw.lower(), spec.choices)
        return f"invalid value {raw!r} (expected one of {', '.join(spec.choices)}){hint}"
    if kind is Kind.REGEX:
        try:
            re.compile(raw)
        except re.error as exc:
            return f"invalid regex {raw!r}: {exc}"
    return (raw,)


def _measure(spec: Spec, raw: Any) -> tuple[Any] | str:
    is_size = spec.kind is Kind.SIZE
    noun, example = ("size", "64MiB") if is_size else ("duration", "500ms")
    value: float
    if isinstance(raw, str):
        try:
            value = parse_size(raw) if is_size else parse_duration(raw)
        except ValueError as exc:
            return str(exc)
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        return f"expected a {noun} like {example}, got {describe(raw)}"
    elif is_size and not isinstance(raw, int):
        return f"expected a size like {example} or a whole number of bytes, got {raw!r}"
    elif not math.isfinite(raw):
        return f"expected a finite {noun}, got {raw!r}"
    elif raw < 0:
        return f"invalid {noun} {raw!r}: must not be negative"
    else:
        value = raw if is_size else float(raw)
    if spec.positive and value == 0:
        return f"must be greater than 0 (got {raw!r})"
    return (value,)


def _expected(spec: Spec) -> str:
    return f"one of {', '.join(spec.choices)}" if spec.kind is Kind.CHOICE else spec.kind.value


def _unknown_key(key: str, known: list[str], path: str) -> str:
    what = "unknown key" if path else "unknown section"
    hint = did_you_mean(key, known)
    if not hint and not path:
        elsewhere = sorted(
            f"{section}.{key}"
            for section, spec in field_specs(Config)
            if spec.section is not None and key in dict(field_specs(spec.section))
        )
        if elsewhere:
            hint = f" (did you mean {elsewhere[0]!r}?)"
    return f"{what}{hint or ' (valid: ' + ', '.join(known) + ')'}"


def check_environment(config: Config, env: Mapping[str, str], issues: IssueCollector) -> None:
    """Report what a valid config needs from the environment but does not find there."""
    encryption = config.disk_buffer.encryption
    path = "disk_buffer.encryption.key_env"
    key_env = encryption.key_env
    if encryption.enabled and key_env and not env.get(key_env) and not issues.failed(path):
        issues.add(path, f"environment variable {encryption.key_env!r} is not set")
