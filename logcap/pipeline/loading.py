"""Loading processing: the pipelines file, the routing file and the built-ins, validated as
strictly as the main config, into a :class:`~logcap.pipeline.routing.Routing`.

Files (both optional; their paths are ``processing.pipelines_file`` and
``processing.routing_file`` of the main config, overridden by ``$LOGCAP_PIPELINES_FILE`` and
``$LOGCAP_ROUTING_FILE``; empty = none, a path given that does not exist is an error; a
relative path is relative to the directory of the main config file, so a config and its
processing files move together, e.g. into ``/etc/logcap/``):

``pipelines.yaml``::

    pipelines:
      <name>:                 # letters, digits, _ . - ; not the name of a built-in
        stages:               # run in order; each entry is {<kind>: <options>}
          - regex: {expression: '^(?P<level>\\w+): (?P<msg>.*)'}
          - labels: {level: }

``file_pipeline.yml``::

    routes:                   # first match wins, in file order
      - {path: "/var/log/mysql/*slow*.log", pipeline: mysql_slow}
      - {source: app, labels: {env: prod}, pipeline: json}

Stage kinds are those of :data:`~logcap.pipeline.kinds.STAGE_KINDS` plus ``multiline`` (its
options are :class:`~logcap.config.sources.MultilineConfig`; it must be the first stage, and
there is at most one). The options of ``labels`` and ``structured_metadata`` map a name (a
Loki label name) to a field (null or empty: the same name).

Checks across files: a source's ``pipeline`` and a rule's ``pipeline`` must name a pipeline
(built-in or defined), a rule's ``source`` an existing source. Every problem is reported
at once, each as ``<file>: <key path>: <reason>`` (:class:`~logcap.config.errors.ConfigError`).

A pipeline's ``multiline`` stage is run by the file source for the paths routed to the
pipeline (:func:`logcap.components.sources.multiline_for`), and by the container source for
the container streams routed to it (:func:`logcap.components.sources.container_multiline_for`),
unless the source has its own ``multiline`` key, which wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from logcap.config import Config, load_config
from logcap.config.decoder import ConfigDecoder
from logcap.config.errors import ConfigError, ConfigIssue, IssueCollector, did_you_mean
from logcap.config.reading import UNREADABLE, read_yaml
from logcap.config.section import Section
from logcap.config.values import section_list
from logcap.pipeline.builtins import builtin_pipelines
from logcap.pipeline.compiled import PipelineSpec
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.routing import RouteConfig, Routing

__all__ = ["load_checked", "load_routing"]


@attrs.frozen
class _RoutingFile(Section):
    routes: tuple[RouteConfig, ...] = section_list(RouteConfig)


def _read(path: str, env: Mapping[str, str], issues: IssueCollector) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        issues.add("<file>", f"not found: {path}")
        return UNREADABLE
    except (OSError, UnicodeDecodeError) as exc:
        issues.add("<file>", f"cannot read {path}: {exc}")
        return UNREADABLE
    return read_yaml(text, env, path, issues)


def _prefixed(file: str, issues: IssueCollector) -> Iterator[ConfigIssue]:
    for issue in issues.items:
        yield ConfigIssue(f"{file}: {issue.path}", issue.reason)


def load_checked(path: str, env: Mapping[str, str] | None = None) -> tuple[Config, Routing]:
    """The config at ``path`` and its processing, validated: what ``check-config`` checks,
    ``run`` starts with and a reload applies; raises :class:`ConfigError` with every problem
    (of the config first: its processing files are read only once it is valid)."""
    config = load_config(path, env)
    return config, load_routing(config, env, config_file=path)


def load_routing(config: Config, env: Mapping[str, str] | None = None,
                 config_file: str = "config") -> Routing:
    """The pipelines (built-in and from ``processing.pipelines_file``), the sources' own
    pipelines and the rules of ``processing.routing_file``, all checked (module docstring);
    raises :class:`ConfigError` with every problem. ``config_file`` is the main config's path
    (relative processing paths are beside it; the default ``"config"``: the working
    directory) and names it in messages."""
    environ = os.environ if env is None else env
    problems: list[ConfigIssue] = []
    pipelines = dict(builtin_pipelines())
    base = os.path.dirname(config_file) if config_file != "config" else ""
    pipelines_file = _beside(base, config.processing.pipelines_file)
    routing_file = _beside(base, config.processing.routing_file)
    if pipelines_file:
        issues = IssueCollector()
        data = _read(pipelines_file, environ, issues)
        if data is not UNREADABLE:
            for name, spec in decode_pipelines(data, pipelines_file, issues).items():
                if name in pipelines:
                    issues.add(f"pipelines.{name}", "is the name of a built-in pipeline "
                               "(choose another name)")
                else:
                    pipelines[name] = spec
        problems.extend(_prefixed(pipelines_file, issues))
    rules: tuple[RouteConfig, ...] = ()
    if routing_file:
        issues = IssueCollector()
        data = _read(routing_file, environ, issues)
        if data is not UNREADABLE:
            decoded = ConfigDecoder(issues).section(_RoutingFile, data, "")
            rules = decoded.routes
            _check_rules(rules, pipelines, config, issues)
        problems.extend(_prefixed(routing_file, issues))
    own: dict[str, str] = {}
    for index, source in enumerate(config.sources.files):
        if source.pipeline is not None:
            reason = _usable(source.pipeline, pipelines)
            if reason:
                problems.append(ConfigIssue(
                    f"{config_file}: sources.files[{index}].pipeline", reason))
            own[source.name] = source.pipeline
    containers = config.sources.containers.pipeline
    if containers is not None:
        reason = _usable(containers, pipelines)
        if reason:
            problems.append(ConfigIssue(f"{config_file}: sources.containers.pipeline", reason))
    if problems:
        raise ConfigError(problems)
    return Routing(pipelines, own, rules, containers)


def _beside(base: str, path: str) -> str:
    """``path`` (may be empty) made relative to ``base``, the main config file's directory."""
    return os.path.join(base, path) if path and base and not os.path.isabs(path) else path


def _usable(name: str, pipelines: Mapping[str, PipelineSpec]) -> str | None:
    spec = pipelines.get(name)
    if spec is None:
        hint = did_you_mean(name, pipelines)
        known = " (known: " + ", ".join(sorted(pipelines)) + ")"
        return f"no pipeline named {name!r}{hint or known}"
    return None


def _check_rules(rules: tuple[RouteConfig, ...], pipelines: Mapping[str, PipelineSpec],
                 config: Config, issues: IssueCollector) -> None:
    sources = [s.name for s in config.sources.files]
    for index, rule in enumerate(rules):
        where = f"routes[{index}]"
        if issues.failed(where):
            continue
        reason = _usable(rule.pipeline, pipelines)
        if reason:
            issues.add(f"{where}.pipeline", reason)
        if rule.source is not None and rule.source not in sources:
            hint = did_you_mean(rule.source, sources)
            issues.add(f"{where}.source", f"no source named {rule.source!r}"
                       f"{hint or ' (sources: ' + ', '.join(sources) + ')'}")
