"""The shape of logcap's configuration: typed, frozen sections with their defaults and invariants.

Each section is a frozen, slotted ``attrs`` class whose fields are declared with the helpers of
:mod:`logcap.config_values`, so the loader knows how to convert and check each raw value.
Durations are float seconds (``*_S`` constants), sizes are int bytes (``*_BYTES``), lists are
tuples and string maps are read-only mappings. Configs compare by value; they are not hashable
(the maps are not).

A section's :meth:`Section.problems` yields the invariants between its fields that a single
field cannot express (``backoff_min <= backoff_max``, loki enabled needs a url, ...). Each
:class:`Problem` names the key it is reported at and the keys it ``uses``; the loader skips a
problem when one of those keys already had an error of its own, so one mistake gives one message.

Relative directories stay relative; the caller resolves them against the working directory.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import attrs

from logcap.config_values import (
    choice,
    duration,
    flag,
    format_duration,
    format_size,
    integer,
    optional_text,
    regex,
    render,
    section_list,
    size,
    str_list,
    str_map,
    tcp_port,
    text,
)

__all__ = [
    "AUTH_TYPES", "DEFAULT_ADMIN_PORT", "DEFAULT_BACKOFF_MAX_S", "DEFAULT_BACKOFF_MIN_S",
    "DEFAULT_BACKOFF_RESET_S", "DEFAULT_BATCH_TTL_S", "DEFAULT_BATCH_WAIT_S",
    "DEFAULT_COMPRESSION_LEVEL", "DEFAULT_DEDUP_MAX_ENTRIES", "DEFAULT_DEDUP_WINDOW_S",
    "DEFAULT_DISK_BUFFER_MAX_FILE_BYTES", "DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES",
    "DEFAULT_DISPATCH_BATCH_LINES", "DEFAULT_DISPATCH_BATCH_TIMEOUT_S",
    "DEFAULT_DLQ_MAX_TOTAL_BYTES", "DEFAULT_DOCKER_SOCKET", "DEFAULT_FILE_SINK_MAX_FILES",
    "DEFAULT_FILE_SINK_MAX_FILE_BYTES", "DEFAULT_FSYNC_INTERVAL_S", "DEFAULT_LOKI_BATCH_BYTES",
    "DEFAULT_LOKI_BATCH_LINES", "DEFAULT_LOKI_TIMEOUT_S", "DEFAULT_MAX_LABELS_PER_STREAM",
    "DEFAULT_MAX_LINE_BYTES", "DEFAULT_MAX_POSITION_AGE_S", "DEFAULT_MAX_RECOVERY_RETRIES",
    "DEFAULT_MAX_RETRIES", "DEFAULT_MAX_STREAMS", "DEFAULT_METRICS_PORT",
    "DEFAULT_MULTILINE_MAX_LINES", "DEFAULT_MULTILINE_TIMEOUT_S",
    "DEFAULT_PERSISTED_BATCH_TIMEOUT_S", "DEFAULT_PING_INTERVAL_S", "DEFAULT_PING_TIMEOUT_S",
    "DEFAULT_POSITIONS_CLEANUP_INTERVAL_S", "DEFAULT_POSITIONS_FLUSH_INTERVAL_S",
    "DEFAULT_POSITIONS_MAX_MEMORY_BUFFER", "DEFAULT_QUEUE_SIZE_BATCHES",
    "DEFAULT_RESTART_INTENSITY", "DEFAULT_RESTART_PERIOD_S", "DEFAULT_RETENTION_PERIOD_S",
    "DEFAULT_RETRY_BASE_DELAY_S", "DEFAULT_RETRY_MAX_DELAY_S", "DEFAULT_SERVER_HOST",
    "DEFAULT_SHARDS", "DEFAULT_SHUTDOWN_TIMEOUT_S", "FILE_SINK_FORMATS", "LOG_FORMATS",
    "LOG_LEVELS", "LOKI_ENCODINGS", "MAX_SHARDS", "BatchPersistenceConfig", "Config",
    "ContainersConfig", "DeduplicationConfig", "DiskBufferConfig", "DispatcherConfig", "DlqConfig",
    "EncryptionConfig", "FileSinkConfig", "FileSourceConfig", "LoggingConfig", "LokiAuthConfig",
    "LokiConfig", "LokiTlsConfig", "MultilineConfig", "PositionsConfig", "Problem", "Section",
    "ServerConfig", "SinksConfig", "SourcesConfig", "SupervisionConfig",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
HOUR_S = 3600.0

DEFAULT_SERVER_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 8401
DEFAULT_METRICS_PORT = 8001

START_AT_CHOICES = ("end", "beginning")
MULTILINE_MATCH_CHOICES = ("after", "before")
DEFAULT_MULTILINE_MAX_LINES = 500
DEFAULT_MULTILINE_TIMEOUT_S = 5.0
DEFAULT_MAX_LINE_BYTES = 256 * KiB
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

DEFAULT_SHARDS = 2
MAX_SHARDS = 256
DEFAULT_QUEUE_SIZE_BATCHES = 64
DEFAULT_DISPATCH_BATCH_LINES = 1000
DEFAULT_DISPATCH_BATCH_TIMEOUT_S = 0.2
DEFAULT_MAX_RETRIES = 10
DEFAULT_RETRY_BASE_DELAY_S = 0.5
DEFAULT_RETRY_MAX_DELAY_S = 30.0

LOKI_ENCODINGS = ("protobuf", "json")
AUTH_TYPES = ("none", "basic", "bearer")
DEFAULT_LOKI_BATCH_LINES = 1000
DEFAULT_LOKI_BATCH_BYTES = 1 * MiB
DEFAULT_BATCH_WAIT_S = 1.0
DEFAULT_LOKI_TIMEOUT_S = 10.0
DEFAULT_MAX_LABELS_PER_STREAM = 15
DEFAULT_MAX_STREAMS = 10_000
FILE_SINK_FORMATS = ("raw", "json")
DEFAULT_FILE_SINK_MAX_FILE_BYTES = 64 * MiB
DEFAULT_FILE_SINK_MAX_FILES = 5

DEFAULT_POSITIONS_FLUSH_INTERVAL_S = 1.0
DEFAULT_POSITIONS_MAX_MEMORY_BUFFER = 1000
"""Pending position updates that force a flush before ``flush_interval`` elapses."""
DEFAULT_POSITIONS_CLEANUP_INTERVAL_S = HOUR_S
DEFAULT_MAX_POSITION_AGE_S = 168 * HOUR_S
DEFAULT_RETENTION_PERIOD_S = 168 * HOUR_S

DEFAULT_DISK_BUFFER_MAX_FILE_BYTES = 64 * MiB
DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES = 1 * GiB
DEFAULT_COMPRESSION_LEVEL = 3
DEFAULT_FSYNC_INTERVAL_S = 0.2
"""Group-commit interval; 0 means fsync after every append."""
WHEN_FULL_CHOICES = ("block", "drop_oldest")

DEFAULT_PERSISTED_BATCH_TIMEOUT_S = 30.0
DEFAULT_MAX_RECOVERY_RETRIES = 5
DEFAULT_BATCH_TTL_S = 24 * HOUR_S
DEFAULT_DLQ_MAX_TOTAL_BYTES = 256 * MiB
DEFAULT_DEDUP_WINDOW_S = 300.0
DEFAULT_DEDUP_MAX_ENTRIES = 100_000

DEFAULT_RESTART_INTENSITY = 10
DEFAULT_RESTART_PERIOD_S = 60.0
DEFAULT_BACKOFF_MIN_S = 0.1
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_BACKOFF_RESET_S = 60.0
DEFAULT_PING_INTERVAL_S = 5.0
DEFAULT_PING_TIMEOUT_S = 30.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


# --- field checks -------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_SOCKET_SCHEMES = ("unix", "tcp", "http", "https", "ssh")


def _check_name(value: str) -> str | None:
    if _NAME.fullmatch(value):
        return None
    return f"invalid name {value!r} (use letters, digits, '_', '.' and '-')"


def _check_not_empty(value: str) -> str | None:
    return "must not be empty" if not value.strip() else None


def _check_http_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"invalid URL {value!r} (expected http:// or https:// and a host)"
    return None


def _check_socket(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in _SOCKET_SCHEMES or not (parts.netloc or parts.path):
        return (
            f"invalid Docker address {value!r} "
            "(expected e.g. unix:///var/run/docker.sock or tcp://host:2375)"
        )
    return None


def _check_encoding(value: str) -> str | None:
    try:
        codecs.lookup(value)
    except LookupError:
        return f"unknown text encoding {value!r} (e.g. utf-8, latin-1)"
    return None


# --- sections -----------------------------------------------------------------------------


class Problem(NamedTuple):
    """A broken invariant: reported at ``key`` (relative, "" = the section), using ``uses``."""

    key: str
    reason: str
    uses: tuple[str, ...]


class Section:
    """Base of every config section: rendering and (by default no) invariants."""

    __slots__ = ()

    def problems(self) -> Iterator[Problem]:
        """The invariants between this section's own fields that do not hold."""
        return iter(())

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """This section as plain data; see :func:`logcap.config_values.render`."""
        return render(self, redact=redact)


@attrs.frozen
class ServerConfig(Section):
    """The admin HTTP API and the Prometheus exposition."""

    host: str = text(DEFAULT_SERVER_HOST, check=_check_not_empty)
    port: int = tcp_port(DEFAULT_ADMIN_PORT)
    metrics_port: int = tcp_port(DEFAULT_METRICS_PORT)
    admin_token: str = text()

    def problems(self) -> Iterator[Problem]:
        if self.port == self.metrics_port:
            reason = f"must differ from port (both are {self.port})"
            yield Problem("metrics_port", reason, ("port", "metrics_port"))


@attrs.frozen
class MultilineConfig(Section):
    """Joins continuation lines: a line matching ``pattern`` (or not, with ``negate``) starts
    (``match: after``) or ends (``before``) a record of at most ``max_lines`` lines; a partial
    record is flushed after ``timeout`` seconds."""

    pattern: str = regex(required=True)
    negate: bool = flag(False)
    match: str = choice("after", MULTILINE_MATCH_CHOICES)
    max_lines: int = integer(DEFAULT_MULTILINE_MAX_LINES, minimum=1)
    timeout: float = duration(DEFAULT_MULTILINE_TIMEOUT_S)


@attrs.frozen
class FileSourceConfig(Section):
    """One named group of files (``include`` globs minus ``exclude`` globs) to tail."""

    name: str = text(required=True, check=_check_name)
    include: tuple[str, ...] = str_list(required=True)
    exclude: tuple[str, ...] = str_list()
    labels: Mapping[str, str] = str_map(label_names=True)
    pipeline: str | None = optional_text(check=_check_name)
    start_at: str = choice("end", START_AT_CHOICES)
    multiline: MultilineConfig | None = None
    max_line_bytes: int = size(DEFAULT_MAX_LINE_BYTES)
    encoding: str = text("utf-8", check=_check_encoding)


@attrs.frozen
class ContainersConfig(Section):
    """Container logs read through the Docker Engine API."""

    enabled: bool = flag(False)
    socket: str = text(DEFAULT_DOCKER_SOCKET, check=_check_socket)
    include_labels: Mapping[str, str] = str_map()
    include_names: tuple[str, ...] = str_list()
    exclude_names: tuple[str, ...] = str_list()
    labels: Mapping[str, str] = str_map(label_names=True)
    pipeline: str | None = optional_text(check=_check_name)

    def problems(self) -> Iterator[Problem]:
        if self.enabled and not self.socket:
            yield Problem("socket", "required when containers are enabled", ("enabled", "socket"))


@attrs.frozen
class SourcesConfig(Section):
    """Where lines come from. No source at all is valid (the agent then idles)."""

    files: tuple[FileSourceConfig, ...] = section_list(FileSourceConfig)
    containers: ContainersConfig = attrs.field(factory=ContainersConfig)

    def problems(self) -> Iterator[Problem]:
        first_index: dict[str, int] = {}
        for index, source in enumerate(self.files):
            if not source.name:
                continue
            if source.name in first_index:
                other = first_index[source.name]
                yield Problem(
                    f"files[{index}].name",
                    f"duplicate source name {source.name!r} (also used by files[{other}])",
                    (f"files[{index}].name", f"files[{other}].name"),
                )
            else:
                first_index[source.name] = index


@attrs.frozen
class DispatcherConfig(Section):
    """The shards that batch, process and route lines; retries of failed deliveries."""

    shards: int = integer(DEFAULT_SHARDS, minimum=1, maximum=MAX_SHARDS)
    queue_size: int = integer(DEFAULT_QUEUE_SIZE_BATCHES, minimum=1)
    batch_size: int = integer(DEFAULT_DISPATCH_BATCH_LINES, minimum=1)
    batch_timeout: float = duration(DEFAULT_DISPATCH_BATCH_TIMEOUT_S)
    max_retries: int = integer(DEFAULT_MAX_RETRIES, minimum=0)
    retry_base_delay: float = duration(DEFAULT_RETRY_BASE_DELAY_S)
    retry_max_delay: float = duration(DEFAULT_RETRY_MAX_DELAY_S)
    dlq_enabled: bool = flag(True)

    def problems(self) -> Iterator[Problem]:
        if self.retry_base_delay > self.retry_max_delay:
            yield Problem(
                "retry_base_delay",
                f"{format_duration(self.retry_base_delay)} must not exceed retry_max_delay "
                f"({format_duration(self.retry_max_delay)})",
                ("retry_base_delay", "retry_max_delay"),
            )


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
class FileSinkConfig(Section):
    """Lines written per source into ``directory``, rotated at ``max_file_size``."""

    enabled: bool = flag(True)
    directory: str = text("var/out", check=_check_not_empty)
    format: str = choice("raw", FILE_SINK_FORMATS)
    max_file_size: int = size(DEFAULT_FILE_SINK_MAX_FILE_BYTES)
    max_files: int = integer(DEFAULT_FILE_SINK_MAX_FILES, minimum=1)


@attrs.frozen
class SinksConfig(Section):
    """Where lines go; at least one sink must be enabled."""

    loki: LokiConfig = attrs.field(factory=LokiConfig)
    file: FileSinkConfig = attrs.field(factory=FileSinkConfig)

    def problems(self) -> Iterator[Problem]:
        if not self.loki.enabled and not self.file.enabled:
            reason = "no sink is enabled (set sinks.file.enabled or sinks.loki.enabled to true)"
            yield Problem("", reason, ("loki.enabled", "file.enabled"))


@attrs.frozen
class PositionsConfig(Section):
    """Committed source positions, kept in memory and flushed to ``directory``."""

    enabled: bool = flag(True)
    directory: str = text("var/positions", check=_check_not_empty)
    flush_interval: float = duration(DEFAULT_POSITIONS_FLUSH_INTERVAL_S)
    max_memory_buffer: int = integer(DEFAULT_POSITIONS_MAX_MEMORY_BUFFER, minimum=1)
    force_flush_on_exit: bool = flag(True)
    cleanup_interval: float = duration(DEFAULT_POSITIONS_CLEANUP_INTERVAL_S)
    max_position_age: float = duration(DEFAULT_MAX_POSITION_AGE_S)


@attrs.frozen
class EncryptionConfig(Section):
    """Encryption at rest of the disk buffer; the key comes from ``key_env`` or ``key_file``."""

    enabled: bool = flag(False)
    key_env: str = text()
    key_file: str = text()

    def problems(self) -> Iterator[Problem]:
        if self.enabled and not self.key_env and not self.key_file:
            reason = "enabled without a key (set key_env or key_file)"
            yield Problem("", reason, ("enabled", "key_env", "key_file"))
        if self.key_env and self.key_file:
            reason = "set only one of key_env and key_file"
            yield Problem("key_file", reason, ("key_env", "key_file"))


@attrs.frozen
class DiskBufferConfig(Section):
    """The zstd segment-file buffer between the dispatcher and the sinks."""

    enabled: bool = flag(False)
    directory: str = text("var/buffer", check=_check_not_empty)
    max_file_size: int = size(DEFAULT_DISK_BUFFER_MAX_FILE_BYTES)
    max_total_size: int = size(DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES)
    compression_level: int = integer(DEFAULT_COMPRESSION_LEVEL, minimum=1, maximum=22)
    fsync_interval: float = duration(DEFAULT_FSYNC_INTERVAL_S, allow_zero=True)
    retention_period: float = duration(DEFAULT_RETENTION_PERIOD_S)
    when_full: str = choice("block", WHEN_FULL_CHOICES)
    encryption: EncryptionConfig = attrs.field(factory=EncryptionConfig)

    def problems(self) -> Iterator[Problem]:
        if self.max_file_size > self.max_total_size:
            yield Problem(
                "max_file_size",
                f"{format_size(self.max_file_size)} must not exceed max_total_size "
                f"({format_size(self.max_total_size)})",
                ("max_file_size", "max_total_size"),
            )


@attrs.frozen
class BatchPersistenceConfig(Section):
    """In-flight batches recorded before sending, retried by a recovery loop."""

    enabled: bool = flag(False)
    directory: str = text("var/batches", check=_check_not_empty)
    batch_timeout: float = duration(DEFAULT_PERSISTED_BATCH_TIMEOUT_S)
    max_recovery_retries: int = integer(DEFAULT_MAX_RECOVERY_RETRIES, minimum=0)
    batch_ttl: float = duration(DEFAULT_BATCH_TTL_S)

    def problems(self) -> Iterator[Problem]:
        if self.batch_ttl < self.batch_timeout:
            yield Problem(
                "batch_ttl",
                f"{format_duration(self.batch_ttl)} must not be shorter than batch_timeout "
                f"({format_duration(self.batch_timeout)})",
                ("batch_ttl", "batch_timeout"),
            )


@attrs.frozen
class DlqConfig(Section):
    """The dead-letter queue, bounded by size and age."""

    directory: str = text("var/dlq", check=_check_not_empty)
    max_total_size: int = size(DEFAULT_DLQ_MAX_TOTAL_BYTES)
    retention_period: float = duration(DEFAULT_RETENTION_PERIOD_S)


@attrs.frozen
class DeduplicationConfig(Section):
    """Drops lines seen within ``window`` (at most ``max_entries`` remembered)."""

    enabled: bool = flag(True)
    window: float = duration(DEFAULT_DEDUP_WINDOW_S)
    max_entries: int = integer(DEFAULT_DEDUP_MAX_ENTRIES, minimum=1)


@attrs.frozen
class SupervisionConfig(Section):
    """OTP-style restart intensity, restart backoff, liveness pings and shutdown timeout."""

    intensity: int = integer(DEFAULT_RESTART_INTENSITY, minimum=0)
    period: float = duration(DEFAULT_RESTART_PERIOD_S)
    backoff_min: float = duration(DEFAULT_BACKOFF_MIN_S, allow_zero=True)
    backoff_max: float = duration(DEFAULT_BACKOFF_MAX_S)
    backoff_reset: float = duration(DEFAULT_BACKOFF_RESET_S)
    ping_interval: float = duration(DEFAULT_PING_INTERVAL_S)
    ping_timeout: float = duration(DEFAULT_PING_TIMEOUT_S)
    shutdown_timeout: float = duration(DEFAULT_SHUTDOWN_TIMEOUT_S)

    def problems(self) -> Iterator[Problem]:
        if self.backoff_min > self.backoff_max:
            yield Problem(
                "backoff_min",
                f"{format_duration(self.backoff_min)} must not exceed backoff_max "
                f"({format_duration(self.backoff_max)})",
                ("backoff_min", "backoff_max"),
            )
        if self.ping_interval >= self.ping_timeout:
            yield Problem(
                "ping_interval",
                f"{format_duration(self.ping_interval)} must be shorter than ping_timeout "
                f"({format_duration(self.ping_timeout)})",
                ("ping_interval", "ping_timeout"),
            )


@attrs.frozen
class LoggingConfig(Section):
    """logcap's own log: level and format (``text`` for people, ``json`` for collectors)."""

    level: str = choice("info", LOG_LEVELS)
    format: str = choice("text", LOG_FORMATS)


@attrs.frozen
class Config(Section):
    """The whole configuration, one field per top-level section."""

    server: ServerConfig = attrs.field(factory=ServerConfig)
    sources: SourcesConfig = attrs.field(factory=SourcesConfig)
    dispatcher: DispatcherConfig = attrs.field(factory=DispatcherConfig)
    sinks: SinksConfig = attrs.field(factory=SinksConfig)
    positions: PositionsConfig = attrs.field(factory=PositionsConfig)
    disk_buffer: DiskBufferConfig = attrs.field(factory=DiskBufferConfig)
    batch_persistence: BatchPersistenceConfig = attrs.field(factory=BatchPersistenceConfig)
    dlq: DlqConfig = attrs.field(factory=DlqConfig)
    deduplication: DeduplicationConfig = attrs.field(factory=DeduplicationConfig)
    supervision: SupervisionConfig = attrs.field(factory=SupervisionConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
