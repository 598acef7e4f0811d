"""Config sections for where lines go: the Loki sink and the file sink.

- ``sinks.loki`` (:class:`LokiConfig`): the Grafana Loki push API at ``url`` (``http://`` or
  ``https://`` and a host; required when enabled), as ``protobuf`` (snappy) or ``json``
  (optionally gzipped), batched by lines, bytes and wait, with static labels (at most
  ``max_labels_per_stream`` of them), credentials (:class:`LokiAuthConfig`: ``none``,
  ``basic`` with a password or a password file, ``bearer`` with a token or a token file, each
  exactly one and nothing the type does not use) and TLS (:class:`LokiTlsConfig`: a client
  certificate needs both ``cert_file`` and ``key_file``).
- ``sinks.loki_endpoints[]`` (:class:`LokiEndpointConfig`): more Loki endpoints (another
  tenant, another cluster), each a ``sinks.loki`` section with a unique ``name`` and
  ``enabled: true`` by default. Every sink is a named instance: ``loki``, ``file`` and these
  names (which must differ from ``loki``, ``file`` and ``buffer``) label its metrics, key its
  disk-buffer cursor and its DLQ entries.
- ``sinks.file`` (:class:`FileSinkConfig`): lines written per source into ``directory``, as
  ``raw`` text or ``json``, rotated at ``max_file_size`` with ``max_files`` kept.

At least one sink must be enabled (:class:`SinksConfig`). Secrets are read when the sink starts,
not when the config loads. Sections and their invariants follow
:mod:`logcap.config.section`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import attrs

from logcap.config.section import MiB, Problem, Section, check_name, check_not_empty
from logcap.config.values import (
    choice,
    duration,
    flag,
    integer,
    section_list,
    size,
    str_map,
    text,
)
from logcap.sinks.loki.labels import DEFAULT_MAX_LABELS as DEFAULT_MAX_LABELS_PER_STREAM
from logcap.sinks.loki.labels import DEFAULT_MAX_STREAMS

__all__ = [
    "AUTH_TYPES",
    "DEFAULT_BATCH_WAIT_S",
    "DEFAULT_FILE_SINK_MAX_FILES",
    "DEFAULT_FILE_SINK_MAX_FILE_BYTES",
    "DEFAULT_LOKI_BATCH_BYTES",
    "DEFAULT_LOKI_BATCH_LINES",
    "DEFAULT_LOKI_TIMEOUT_S",
    "DEFAULT_MAX_LABELS_PER_STREAM",
    "DEFAULT_MAX_STREAMS",
    "FILE_SINK_FORMATS",
    "LOKI_ENCODINGS",
    "RESERVED_SINK_NAMES",
    "FileSinkConfig",
    "LokiAuthConfig",
    "LokiConfig",
    "LokiEndpointConfig",
    "LokiTlsConfig",
    "SinksConfig",
]

LOKI_ENCODINGS = ("protobuf", "json")
AUTH_TYPES = ("none", "basic", "bearer")
DEFAULT_LOKI_BATCH_LINES = 5000
DEFAULT_LOKI_BATCH_BYTES = 1 * MiB
DEFAULT_BATCH_WAIT_S = 1.0
DEFAULT_LOKI_TIMEOUT_S = 10.0
FILE_SINK_FORMATS = ("raw", "json")
DEFAULT_FILE_SINK_MAX_FILE_BYTES = 64 * MiB
DEFAULT_FILE_SINK_MAX_FILES = 5
RESERVED_SINK_NAMES = ("loki", "file", "buffer")
"""Names a ``sinks.loki_endpoints[]`` entry cannot take: the two fixed sinks' and the disk
buffer's (which is the shards' sink when enabled)."""


def _check_http_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"invalid URL {value!r} (expected http:// or https:// and a host)"
    return None


@attrs.frozen
class LokiAuthConfig(Section):
    """Credentials for Loki: ``basic`` (username + password or password_file) or ``bearer``
    (token or token_file). Files are read when the sink starts, not when the config loads."""

    type: str = choice("none", AUTH_TYPES)
    username: str = text()
    password: str = text()
    password_file: str = text()
    token: str = text()
    token_file: str = text()

    def problems(self) -> Iterator[Problem]:
        basic_keys = ("username", "password", "password_file")
        bearer_keys = ("token", "token_file")
        set_keys = [key for key in basic_keys + bearer_keys if getattr(self, key)]
        if self.type == "none":
            if set_keys:
                verb = "is" if len(set_keys) == 1 else "are"
                reason = (
                    f"is 'none' but {', '.join(set_keys)} {verb} set "
                    "(set type to 'basic' or 'bearer')"
                )
                yield Problem("type", reason, ("type", *set_keys))
            return
        own: tuple[str, str] = ("password", "password_file")
        other: tuple[str, ...] = bearer_keys
        if self.type == "bearer":
            own, other = bearer_keys, basic_keys
        elif not self.username:
            yield Problem("username", "required when auth type is 'basic'", ("type", "username"))
        first, second = own
        if not getattr(self, first) and not getattr(self, second):
            reason = f"{self.type} auth needs {first} or {second}"
            yield Problem(first, reason, ("type", first, second))
        elif getattr(self, first) and getattr(self, second):
            yield Problem(second, f"set only one of {first} and {second}", (first, second))
        for key in other:
            if getattr(self, key):
                yield Problem(key, f"is not used by {self.type} auth", ("type", key))


@attrs.frozen
class LokiTlsConfig(Section):
    """TLS for Loki: server verification (optionally against ``ca_file``) and a client cert."""

    verify: bool = flag(True)
    ca_file: str = text()
    cert_file: str = text()
    key_file: str = text()

    def problems(self) -> Iterator[Problem]:
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key_file" if self.cert_file else "cert_file"
            reason = "cert_file and key_file must be set together"
            yield Problem(missing, reason, ("cert_file", "key_file"))


@attrs.frozen
class LokiConfig(Section):
    """Grafana Loki push API. ``gzip`` applies to the JSON encoding (protobuf is snappy)."""

    enabled: bool = flag(False)
    url: str = text(check=_check_http_url)
    tenant_id: str = text()
    encoding: str = choice("protobuf", LOKI_ENCODINGS)
    batch_size: int = integer(DEFAULT_LOKI_BATCH_LINES, minimum=1)
    batch_bytes: int = size(DEFAULT_LOKI_BATCH_BYTES)
    batch_wait: float = duration(DEFAULT_BATCH_WAIT_S)
    timeout: float = duration(DEFAULT_LOKI_TIMEOUT_S)
    labels: Mapping[str, str] = str_map(label_names=True)
    max_labels_per_stream: int = integer(DEFAULT_MAX_LABELS_PER_STREAM, minimum=1)
    max_streams: int = integer(DEFAULT_MAX_STREAMS, minimum=1)
    gzip: bool = flag(True)
    auth: LokiAuthConfig = attrs.field(factory=LokiAuthConfig)
    tls: LokiTlsConfig = attrs.field(factory=LokiTlsConfig)

    def problems(self) -> Iterator[Problem]:
        if self.enabled and not self.url:
            yield Problem("url", "required when loki is enabled", ("enabled", "url"))
        if len(self.labels) > self.max_labels_per_stream:
            reason = (
                f"{len(self.labels)} static labels exceed "
                f"max_labels_per_stream ({self.max_labels_per_stream})"
            )
            yield Problem("labels", reason, ("labels", "max_labels_per_stream"))


@attrs.frozen
class LokiEndpointConfig(LokiConfig):
    """One more Loki endpoint: a :class:`LokiConfig` with a unique ``name``, enabled unless
    ``enabled: false``."""

    enabled: bool = flag(True)
    name: str = text(required=True, check=check_name)

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        if self.name in RESERVED_SINK_NAMES:
            yield Problem("name", f"{self.name!r} is reserved (the names "
                                  f"{', '.join(RESERVED_SINK_NAMES)} are taken)", ("name",))


@attrs.frozen
class FileSinkConfig(Section):
    """Lines written per source into ``directory``, rotated at ``max_file_size``."""

    enabled: bool = flag(True)
    directory: str = text("var/out", check=check_not_empty)
    format: str = choice("raw", FILE_SINK_FORMATS)
    max_file_size: int = size(DEFAULT_FILE_SINK_MAX_FILE_BYTES)
    max_files: int = integer(DEFAULT_FILE_SINK_MAX_FILES, minimum=1)


@attrs.frozen
class SinksConfig(Section):
    """Where lines go; at least one sink must be enabled."""

    loki: LokiConfig = attrs.field(factory=LokiConfig)
    file: FileSinkConfig = attrs.field(factory=FileSinkConfig)
    loki_endpoints: tuple[LokiEndpointConfig, ...] = section_list(LokiEndpointConfig)

    def problems(self) -> Iterator[Problem]:
        endpoints = [e for e in self.loki_endpoints if e.enabled]
        if not self.loki.enabled and not self.file.enabled and not endpoints:
            reason = "no sink is enabled (set sinks.file.enabled or sinks.loki.enabled to true)"
            yield Problem("", reason, ("loki.enabled", "file.enabled"))
        seen: set[str] = set()
        for index, endpoint in enumerate(self.loki_endpoints):
            if endpoint.name in seen:
                yield Problem(f"loki_endpoints[{index}].name",
                              f"duplicate sink name {endpoint.name!r}",
                              (f"loki_endpoints[{index}].name",))
            seen.add(endpoint.name)
