"""From config text to plain data: YAML parsing, ``${VAR}`` expansion and environment overrides.

Steps 2 to 4 of loading (see :mod:`logcap.config`); every problem goes to an
:class:`~logcap.config.errors.IssueCollector`.

Parsing (:func:`read_yaml`)
    One YAML document, read with the safe loader. Syntax errors, several documents and unknown
    tags are issues at ``<yaml>`` naming the line and column (and, when the line uses ``${``,
    a hint to quote such values inside ``{...}`` or ``[...]``); the result is then
    :data:`UNREADABLE`. An empty document is ``None`` (all defaults).

Expansion
    Done on the parsed node tree, before the data is constructed, so comments and keys are
    never expanded: every string scalar containing ``$`` goes through
    :func:`logcap.config.values.expand_vars`. An unset variable without a default is an issue at
    the key's path. An expanded path is recorded in ``IssueCollector.expanded`` (the decoder
    then lets the field type the text) with a note ``from '${...}'`` for its messages. Anchors
    aliased several times are expanded once; ``<<`` merge keys are walked in place. Duplicate
    keys in a mapping are issues at the key's path, naming both lines. Duplicates and variable
    errors do not make the document unreadable: the data is still returned so that decoding
    can report the other problems.

Overrides (:func:`apply_overrides`)
    Each variable of :data:`ENV_OVERRIDES` that is set and not empty replaces its key in a copy
    of the data (creating missing sections), with a note ``set by $VAR``; ``LOKI_URL`` also sets
    ``sinks.loki.enabled``. A section that is not a mapping is left as it is, for the decoder to
    report as a type error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

from logcap.config.errors import IssueCollector, join_path
from logcap.config.values import expand_vars

__all__ = ["ENV_OVERRIDES", "UNREADABLE", "apply_overrides", "read_yaml"]

ENV_OVERRIDES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "LOKI_URL": ("sinks", "loki", "url"),
        "LOGCAP_LOG_LEVEL": ("logging", "level"),
        "LOGCAP_LOG_FORMAT": ("logging", "format"),
        "LOGCAP_ADMIN_TOKEN": ("server", "admin_token"),
        "LOGCAP_PIPELINES_FILE": ("processing", "pipelines_file"),
        "LOGCAP_ROUTING_FILE": ("processing", "routing_file"),
    }
)
"""Environment variable → the key path it overrides (``LOKI_URL`` also enables Loki)."""

UNREADABLE: Any = object()
"""What :func:`read_yaml` returns when the text is not a YAML document at all."""

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(text: str, env: Mapping[str, str], source: str, issues: IssueCollector) -> Any:
    """Parse, check for duplicate keys, expand variables, construct plain data.

    Returns :data:`UNREADABLE` when the text is not a YAML document at all; duplicate keys and
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
    return UNREADABLE


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

    def __init__(self, env: Mapping[str, str], issues: IssueCollector) -> None:
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
                    self._issues.add(join_path(path, key), reason)
                first_line.setdefault(key, line)
                self.walk(value_node, join_path(path, key))

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


def apply_overrides(
    data: dict[Any, Any], env: Mapping[str, str], issues: IssueCollector
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
