"""logcap's configuration: YAML in, a validated, frozen :class:`Config` out.

The face of the package is what the rest of logcap uses: :class:`Config` (its sections are
attributes: ``config.sinks.loki``, ``config.sources.files``), :func:`load_config` and
:func:`parse_config`, :func:`resolve_config_path`, and :class:`ConfigError`
with its :class:`ConfigIssue` items. The modules inside:

- :mod:`~logcap.config.loading` runs the steps (read, parse, expand, override, decode, check);
- :mod:`~logcap.config.reading` parses YAML, expands ``${VAR}``, applies environment overrides;
- :mod:`~logcap.config.decoder` turns plain data into sections, reporting every problem;
- :mod:`~logcap.config.errors` words the problems;
- :mod:`~logcap.config.values` declares field kinds (durations, sizes, ...) and renders them;
- :mod:`~logcap.config.section` is the base of every section;
- :mod:`~logcap.config.schema` is the root :class:`Config`, assembled from the sections in
  :mod:`~logcap.config.sources`, :mod:`~logcap.config.sinks`, :mod:`~logcap.config.state` and
  :mod:`~logcap.config.process`.
"""

from logcap.config.errors import ConfigError, ConfigIssue
from logcap.config.loading import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    load_config,
    parse_config,
    resolve_config_path,
)
from logcap.config.schema import Config

__all__ = ["CONFIG_PATH_ENV", "DEFAULT_CONFIG_PATH", "Config", "ConfigError", "ConfigIssue",
           "load_config", "parse_config", "resolve_config_path"]
