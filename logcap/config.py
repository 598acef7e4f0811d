"""Loading logcap's configuration: YAML text in, a validated, frozen :class:`Config` out.

The steps, in order:

1. **Read** the file. A missing or unreadable file is an issue at ``<file>``.
2. **Parse** the YAML. Syntax errors, several documents and unknown tags are issues at
   ``<yaml>`` with the line and column. An empty document means *all defaults* (valid).
3. **Expand** ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value (not in keys),
   with the grammar of :func:`logcap.config_values.expand_vars`. This happens on the parsed
   nodes (so comments are never expanded). A value that came from a variable is text, and the
   *field* decides its type: ``port: ${PORT:-8401}`` and ``port: "${PORT}"`` are integers,
   ``enabled: ${ON}`` is a boolean (``true``/``false``/``yes``/``no``/``on``/``off``), a
   password ``${PW}`` stays the exact string ``0123``, and an empty expansion of an optional key
   (``pipeline: ${P:-}``) is null. Inside flow collections (``{...}``, ``[...]``) quote values
   that use ``${...}``. An unset variable without a default is an issue at the key's path.
   Duplicate keys are issues too.
4. **Override** from the environment (after the file, validated like file values; an empty
   variable counts as unset): ``LOKI_URL`` sets ``sinks.loki.url`` and enables Loki;
   ``LOGCAP_LOG_LEVEL``, ``LOGCAP_LOG_FORMAT`` and ``LOGCAP_ADMIN_TOKEN`` set
   ``logging.level``, ``logging.format`` and ``server.admin_token``. ``LOGCAP_CONFIG`` names the
   file when the command line does not (:func:`resolve_config_path`).
5. **Decode** each section into its ``attrs`` class (:mod:`logcap.config_schema`): unknown keys
   (with a "did you mean"), wrong types (YAML ``true`` is not an integer, a string is not a
   list), bad durations, sizes, enums and regexes, out-of-range numbers, missing required values.
6. **Check invariants** between fields (:meth:`~logcap.config_schema.Section.problems`) and
   against the environment (an encryption ``key_env`` that is not set).

Every problem is collected; if there is any, :class:`ConfigError` carries them all, one
:class:`ConfigIssue` (key path + reason) each, e.g.
``config error: sinks.loki.batch_wait: invalid duration 'abc' (expected e.g. 500ms, 10s, 5m)``.
Paths look like ``sinks.loki.batch_wait`` or ``sources.files[1].include``.

:meth:`Config.to_dict` gives the effective config as plain data, durations and sizes as strings
that load back (``500ms``, ``64MiB``), secrets shown as ``***``; :func:`summary` gives one line
for the start-up log.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import yaml

from logcap.config_schema import (
    BatchPersistenceConfig,
    Config,
    ContainersConfig,
    DeduplicationConfig,
    DiskBufferConfig,
    DispatcherConfig,
    DlqConfig,
    EncryptionConfig,
    FileSinkConfig,
    FileSourceConfig,
    LoggingConfig,
    LokiAuthConfig,
    LokiConfig,
    LokiTlsConfig,
    MultilineConfig,
    PositionsConfig,
    ServerConfig,
    SinksConfig,
    SourcesConfig,
    SupervisionConfig,
)
from logcap.config_values import (
    Kind,
    Spec,
    expand_vars,
    field_specs,
    is_secret_key,
    parse_duration,
    parse_size,
    redact_url,
)

__all__ = [
    "CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "ENV_OVERRIDES", "BatchPersistenceConfig", "Config",
    "ConfigError", "ConfigIssue", "ContainersConfig", "DeduplicationConfig", "DiskBufferConfig",
    "DispatcherConfig", "DlqConfig", "EncryptionConfig", "FileSinkConfig", "FileSourceConfig",
    "LoggingConfig", "LokiAuthConfig", "LokiConfig", "LokiTlsConfig", "MultilineConfig",
    "PositionsConfig", "ServerConfig", "SinksConfig", "SourcesConfig", "SupervisionConfig",
    "load_config", "parse_config", "parse_duration", "parse_size", "resolve_config_path",
    "summary",
]

DEFAULT_CONFIG_PATH = "configs/config.yaml"
CONFIG_PATH_ENV = "LOGCAP_CONFIG"

ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "LOKI_URL": ("sinks", "loki", "url"),
        "LOGCAP_LOG_LEVEL": ("logging", "level"),
        "LOGCAP_LOG_FORMAT": ("logging", "format"),
        "LOGCAP_ADMIN_TOKEN": ("server", "admin_token"),
    }
)
"""Environment variable → the key path it overrides (``LOKI_URL`` also enables Loki)."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_YAML_TRUE = frozenset({"true", "yes", "on"})
_YAML_FALSE = frozenset({"false", "no", "off"})
_UNREADABLE: Any = object()
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@attrs.frozen
class ConfigIssue:
    """One problem: where (a key path, or ``<file>``, ``<yaml>``, ``<root>``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` holds every problem found, in the order found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__(issues)
        self.issues = list(issues)

    def __str__(self) -> str:
        return "\n".join(f"config error: {issue}" for issue in self.issues)


def resolve_config_path(
    cli_value: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None
) -> str:
    """The config file to load: ``-c`` if given, else ``$LOGCAP_CONFIG``, else the default."""
    if cli_value:
        return os.fspath(cli_value)
    environ = os.environ if env is None else env
    return environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the config at ``path``; ``env`` defaults to ``os.environ``."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("<file>", f"not found: {name}")]) from None
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8: {name} (byte {exc.start})"
        raise ConfigError([ConfigIssue("<file>", reason)]) from None
    except OSError as exc:
        reason = f"cannot read {name}: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue("<file>", reason)]) from None
    return parse_config(text, os.environ if env is None else env, source=name)


def parse_config(text: str, env: Mapping[str, str], source: str = "<string>") -> Config:
    """Validate YAML ``text`` (named ``source`` in messages) and return the :class:`Config`."""
    issues = _Issues()
    data = _read_yaml(text, env, source, issues)
    if data is _UNREADABLE:
        raise ConfigError(issues.items)
    if data is not None and not isinstance(data, dict):
        reason = f"expected a mapping of sections at the top level, got {_describe(data)}"
        raise ConfigError([ConfigIssue("<root>", reason)])
    data = _apply_overrides(data or {}, env, issues)
    config = _Decoder(issues).section(Config, data, "")
    _check_environment(config, env, issues)
    if issues.items:
        raise ConfigError(issues.items)
    assert isinstance(config, Config)
    return config


def summary(config: Config) -> str:
    """One line for the start-up log: sources, sinks, shards, buffer, admin address. No secrets."""
    files = config.sources.files
    names = ", ".join(source.name for source in files[:5]) + (", ..." if len(files) > 5 else "")
    sources = f"{len(files)} file source{'' if len(files) == 1 else 's'}"
    if files:
        sources += f" ({names})"
    sources += f", containers {'on' if config.sources.containers.enabled else 'off'}"
    sinks = []
    loki, file_sink = config.sinks.loki, config.sinks.file
    if loki.enabled:
        sinks.append(f"loki ({redact_url(loki.url)}, {loki.encoding})")
    if file_sink.enabled:
        sinks.append(f"file ({file_sink.directory}, {file_sink.format})")
    buffer = config.disk_buffer
    server = config.server
    token = "token set" if server.admin_token else "no token"
    return (
        f"sources: {sources}; sinks: {', '.join(sinks) or 'none'}; "
        f"shards: {config.dispatcher.shards}; "
        f"buffer: {f'disk ({buffer.directory})' if buffer.enabled else 'memory'}; "
        f"positions: {config.positions.directory if config.positions.enabled else 'off'}; "
        f"admin: http://{server.host}:{server.port} ({token}); "
        f"metrics: :{server.metrics_port}; log: {config.logging.level}/{config.logging.format}"
    )


# --- issue collection ---------------------------------------------------------------------


class _Issues:
    """Collects issues in order; remembers failed paths and per-path notes (where a value
    came from: an expanded ``${VAR}`` or an environment override)."""

    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []
        self.notes: dict[str, str] = {}
        self.expanded: set[str] = set()
        self._failed: set[str] = set()

    def add(self, path: str, reason: str) -> None:
        note = self.notes.get(path)
        self.items.append(ConfigIssue(path or "<root>", f"{reason} ({note})" if note else reason))
        self._failed.add(path)

    def reported(self, path: str) -> bool:
        """Whether ``path`` itself already had an issue (so its value is not to be decoded)."""
        return path in self._failed

    def failed(self, path: str) -> bool:
        """Whether ``path``, a key inside it, or a section around it had an issue."""
        return any(_related(path, failed) for failed in self._failed)


def _related(path: str, other: str) -> bool:
    if path == other:
        return True
    shorter, longer = sorted((path, other), key=len)
    return not shorter or (longer.startswith(shorter) and longer[len(shorter)] in ".[")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


# --- YAML and variables -------------------------------------------------------------------


def _read_yaml(text: str, env: Mapping[str, str], source: str, issues: _Issues) -> Any:
    """Parse, check for duplicate keys, expand variables, construct plain data.

    Returns :data:`_UNREADABLE` when the text is not a YAML document at all; duplicate keys and
    variable errors are reported but the data is still returned, so that decoding can report
    the other problems (the decoder skips the paths that already failed)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Expander(env, issues).walk(node, "")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        issues.add("<yaml>", _yaml_reason(exc, text, source))
    except yaml.YAMLError as exc:
        issues.add("<yaml>", f"invalid YAML in {source}: {exc}")
    finally:
        loader.dispose()
    return _UNREADABLE


def _yaml_reason(exc: yaml.MarkedYAMLError, text: str, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"at line {mark.line + 1}, column {mark.column + 1} of" if mark else "in"
    problem, context = exc.problem or "", exc.context or ""
    if problem.startswith("but "):
        message = f"{context}, {problem}"
    else:
        message = f"{problem} ({context})" if problem and context else problem or context
    lines = text.splitlines()
    line = lines[mark.line] if mark and mark.line < len(lines) else ""
    hint = " (inside {...} or [...], quote values that use ${...})" if "${" in line else ""
    unsupported = isinstance(exc, yaml.constructor.ConstructorError)
    what = "unsupported YAML" if unsupported else "syntax error"
    return f"{what} {where} {source}: {message}{hint}"


class _Expander:
    """Walks the YAML node tree once: expands variables in string scalars, flags duplicates."""

    def __init__(self, env: Mapping[str, str], issues: _Issues) -> None:
        self._env = env
        self._issues = issues
        self._seen: set[int] = set()

    def walk(self, node: yaml.Node, path: str) -> None:
        if id(node) in self._seen:  # an alias of an anchor already walked
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG and "$" in node.value:
                self._expand(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, f"{path}[{index}]")
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    self.walk(value_node, path)
                    continue
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                line = key_node.start_mark.line + 1
                if key in first_line:
                    reason = f"duplicate key at line {line} (first at line {first_line[key]})"
                    self._issues.add(_join(path, key), reason)
                first_line.setdefault(key, line)
                self.walk(value_node, _join(path, key))

    def _expand(self, node: yaml.ScalarNode, path: str) -> None:
        try:
            expanded = expand_vars(node.value, self._env)
        except ValueError as exc:
            self._issues.add(path, str(exc))
            return
        if "${" in node.value:
            self._issues.notes[path] = f"from {node.value!r}"
            self._issues.expanded.add(path)
        node.value = expanded


def _apply_overrides(
    data: dict[Any, Any], env: Mapping[str, str], issues: _Issues
) -> dict[Any, Any]:
    """A copy of ``data`` with the environment overrides applied (empty variables ignored)."""
    result = _copy_mappings(data)
    for variable, keys in ENV_OVERRIDES.items():
        value = env.get(variable)
        if not value:
            continue
        target = result
        for key in keys[:-1]:
            child = target.get(key)
            if child is None:
                child = target[key] = {}
            if not isinstance(child, dict):  # reported as a type error by the decoder
                break
            target = child
        else:
            target[keys[-1]] = value
            issues.notes[".".join(keys)] = f"set by ${variable}"
            if variable == "LOKI_URL":
                target["enabled"] = True
    return result


def _copy_mappings(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_mappings(item) for key, item in value.items()}
    return value


# --- decoding -----------------------------------------------------------------------------

_INVALID: Any = object()


class _Decoder:
    """Turns plain data into section objects, reporting every problem to ``issues``."""

    def __init__(self, issues: _Issues) -> None:
        self._issues = issues

    def section(self, cls: type, raw: Any, path: str) -> Any:
        specs = dict(field_specs(cls))
        if raw is None:
            raw = {}
        elif not isinstance(raw, dict):
            self._issues.add(path, f"expected a mapping, got {_describe(raw)}")
            raw = {}
        for key in raw:
            if not isinstance(key, str):
                self._issues.add(_join(path, str(key)), f"key is not a string: {_describe(key)}")
            elif key not in specs:
                self._issues.add(_join(path, key), _unknown_key(key, list(specs), path))
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            sub = _join(path, name)
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
            uses = [_join(path, key) for key in problem.uses]
            if not any(self._issues.failed(used) for used in uses):
                self._issues.add(_join(path, problem.key), problem.reason)
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
                return self._fail(path, f"expected a list of mappings, got {_describe(raw)}")
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
            return self._fail(path, f"expected a list of strings, got {_describe(raw)} "
                                    f"(write [{raw!r}] or a YAML list)")
        if not isinstance(raw, list):
            return self._fail(path, f"expected a list of strings, got {_describe(raw)}")
        items: list[str] = []
        for index, item in enumerate(raw):
            if self._issues.reported(f"{path}[{index}]"):
                continue
            if not isinstance(item, str):
                self._issues.add(f"{path}[{index}]", f"expected a string, got {_describe(item)}")
            elif not item.strip():
                self._issues.add(f"{path}[{index}]", "must not be empty")
            else:
                items.append(item)
        if spec.required and not raw:
            return self._fail(path, "must list at least one entry")
        return tuple(items)

    def _str_map(self, spec: Spec, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            return self._fail(path, f"expected a mapping of strings, got {_describe(raw)}")
        items: dict[str, str] = {}
        for key, item in raw.items():
            sub = _join(path, str(key))
            if self._issues.reported(sub):
                continue
            if not isinstance(key, str):
                self._issues.add(sub, f"key is not a string: {_describe(key)}")
            elif spec.label_names and not _LABEL_NAME.fullmatch(key):
                self._issues.add(sub, "invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)")
            elif spec.label_names and key.startswith("__"):
                self._issues.add(sub, "label names starting with '__' are reserved by Loki")
            elif not isinstance(item, str):
                reason = f"expected a string, got {_describe(item)}{_quote_hint(item)}"
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
        return (raw,) if isinstance(raw, bool) else f"expected true or false, got {_describe(raw)}"
    if kind is Kind.INT:
        if isinstance(raw, bool) or not isinstance(raw, int):
            return f"expected an integer, got {_describe(raw)}"
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
        hint = _quote_hint(raw) if kind is Kind.STR else ""
        shown = _describe(raw).split(" (")[0] if secret else _describe(raw)
        return f"expected {expected}, got {shown}{hint}"
    if spec.required and not raw.strip():
        return "required but empty"
    if kind is Kind.CHOICE:
        if raw.lower() in spec.choices:
            return (raw.lower(),)
        hint = _did_you_mean(raw.lower(), spec.choices)
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
        return f"expected a {noun} like {example}, got {_describe(raw)}"
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


def _check_environment(config: Config, env: Mapping[str, str], issues: _Issues) -> None:
    encryption = config.disk_buffer.encryption
    path = "disk_buffer.encryption.key_env"
    key_env = encryption.key_env
    if encryption.enabled and key_env and not env.get(key_env) and not issues.failed(path):
        issues.add(path, f"environment variable {encryption.key_env!r} is not set")


# --- messages -----------------------------------------------------------------------------


def _expected(spec: Spec) -> str:
    return f"one of {', '.join(spec.choices)}" if spec.kind is Kind.CHOICE else spec.kind.value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value!r})"


def _quote_hint(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return " (quote it to make it a string)"
    return ""


def _did_you_mean(word: str, candidates: Any) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _unknown_key(key: str, known: list[str], path: str) -> str:
    what = "unknown key" if path else "unknown section"
    hint = _did_you_mean(key, known)
    if not hint and not path:
        elsewhere = sorted(
            f"{section}.{key}"
            for section, spec in field_specs(Config)
            if spec.section is not None and key in dict(field_specs(spec.section))
        )
        if elsewhere:
            hint = f" (did you mean {elsewhere[0]!r}?)"
    return f"{what}{hint or ' (valid: ' + ', '.join(known) + ')'}"
