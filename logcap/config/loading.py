"""Loading logcap's configuration: YAML text in, a validated, frozen :class:`Config` out.

The steps, in order:

1. **Read** the file. A missing or unreadable file is an issue at ``<file>``.
2. **Parse** the YAML. Syntax errors, several documents and unknown tags are issues at
   ``<yaml>`` with the line and column. An empty document means *all defaults* (valid).
3. **Expand** ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value (not in keys),
   with the grammar of :func:`logcap.config.values.expand_vars`. This happens on the parsed
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
   ``logging.level``, ``logging.format`` and ``server.admin_token``;
   ``LOGCAP_PIPELINES_FILE`` and ``LOGCAP_ROUTING_FILE`` set ``processing.pipelines_file`` and
   ``processing.routing_file``. ``LOGCAP_CONFIG`` names the
   file when the command line does not (:func:`resolve_config_path`).
5. **Decode** each section into its ``attrs`` class (:mod:`logcap.config.schema`): unknown keys
   (with a "did you mean"), wrong types (YAML ``true`` is not an integer, a string is not a
   list), bad durations, sizes, enums and regexes, out-of-range numbers, missing required values.
6. **Check invariants** between fields (:meth:`~logcap.config.schema.Section.problems`) and
   against the environment (an encryption ``key_env`` that is not set).

Every problem is collected; if there is any, :class:`ConfigError` carries them all, one
:class:`ConfigIssue` (key path + reason) each, e.g.
``config error: sinks.loki.batch_wait: invalid duration 'abc' (expected e.g. 500ms, 10s, 5m)``.
Paths look like ``sinks.loki.batch_wait`` or ``sources.files[1].include``.

:meth:`Config.to_dict` gives the effective config as plain data, durations and sizes as strings
that load back (``500ms``, ``64MiB``), secrets shown as ``***``; the start-up line is
:func:`logcap.components.registry.summary`.

This module runs the steps; they live in :mod:`logcap.config.reading` (2 to 4),
:mod:`logcap.config.decoder` (5 and 6) and :mod:`logcap.config.errors` (issues and their
messages). The sections are defined in :mod:`logcap.config.schema` and the modules it imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from logcap.config.decoder import ConfigDecoder, check_environment
from logcap.config.errors import ConfigError, ConfigIssue, IssueCollector, describe
from logcap.config.reading import UNREADABLE, apply_overrides, read_yaml
from logcap.config.schema import Config

__all__ = ["CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "load_config", "parse_config",
           "resolve_config_path"]

DEFAULT_CONFIG_PATH = "configs/config.yaml"
CONFIG_PATH_ENV = "LOGCAP_CONFIG"


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
    issues = IssueCollector()
    data = read_yaml(text, env, source, issues)
    if data is UNREADABLE:
        raise ConfigError(issues.items)
    if data is not None and not isinstance(data, dict):
        reason = f"expected a mapping of sections at the top level, got {describe(data)}"
        raise ConfigError([ConfigIssue("<root>", reason)])
    data = apply_overrides(data or {}, env, issues)
    config = ConfigDecoder(issues).section(Config, data, "")
    check_environment(config, env, issues)
    if issues.items:
        raise ConfigError(issues.items)
    assert isinstance(config, Config)
    return config
