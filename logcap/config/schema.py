"""The shape of logcap's configuration: typed, frozen sections with their defaults and invariants.

Each section is a frozen, slotted ``attrs`` class whose fields are declared with the helpers of
:mod:`logcap.config.values`, so the loader knows how to convert and check each raw value.
Durations are float seconds (``*_S`` constants), sizes are int bytes (``*_BYTES``), lists are
tuples and string maps are read-only mappings. Configs compare by value; they are not hashable
(the maps are not).

A section's :meth:`Section.problems` yields the invariants between its fields that a single
field cannot express (``backoff_min <= backoff_max``, loki enabled needs a url, ...). Each
:class:`Problem` names the key it is reported at and the keys it ``uses``; the loader skips a
problem when one of those keys already had an error of its own, so one mistake gives one message.

Relative directories stay relative; the caller resolves them against the working directory.

This module defines the root :class:`Config` and re-exports every section and default, which
live by area: :mod:`logcap.config.section` (:class:`Section`, :class:`Problem`, units),
:mod:`logcap.config.sources` (sources, dispatcher), :mod:`logcap.config.sinks`
(Loki, file sink), :mod:`logcap.config.state` (positions, disk buffer, batch
persistence, DLQ, deduplication) and :mod:`logcap.config.process` (server, supervision,
logging).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from logcap.config.process import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_MIN_S,
    DEFAULT_BACKOFF_RESET_S,
    DEFAULT_METRICS_PORT,
    DEFAULT_PING_INTERVAL_S,
    DEFAULT_PING_TIMEOUT_S,
    DEFAULT_RESTART_INTENSITY,
    DEFAULT_RESTART_PERIOD_S,
    DEFAULT_SERVER_HOST,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    LOG_FORMATS,
    LOG_LEVELS,
    LoggingConfig,
    ServerConfig,
    SupervisionConfig,
)
from logcap.config.section import (
    HOUR_S,
    GiB,
    KiB,
    MiB,
    Problem,
    Section,
)
from logcap.config.sinks import (
    AUTH_TYPES,
    DEFAULT_BATCH_WAIT_S,
    DEFAULT_FILE_SINK_MAX_FILE_BYTES,
    DEFAULT_FILE_SINK_MAX_FILES,
    DEFAULT_LOKI_BATCH_BYTES,
    DEFAULT_LOKI_BATCH_LINES,
    DEFAULT_LOKI_TIMEOUT_S,
    DEFAULT_MAX_LABELS_PER_STREAM,
    DEFAULT_MAX_STREAMS,
    FILE_SINK_FORMATS,
    LOKI_ENCODINGS,
    FileSinkConfig,
    LokiAuthConfig,
    LokiConfig,
    LokiTlsConfig,
    SinksConfig,
)
from logcap.config.sources import (
    DEFAULT_DISPATCH_BATCH_LINES,
    DEFAULT_DISPATCH_BATCH_TIMEOUT_S,
    DEFAULT_DOCKER_SOCKET,
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MULTILINE_MAX_LINES,
    DEFAULT_MULTILINE_TIMEOUT_S,
    DEFAULT_QUEUE_SIZE_BATCHES,
    DEFAULT_RETRY_BASE_DELAY_S,
    DEFAULT_RETRY_MAX_DELAY_S,
    DEFAULT_SHARDS,
    MAX_SHARDS,
    MULTILINE_MATCH_CHOICES,
    START_AT_CHOICES,
    ContainersConfig,
    DispatcherConfig,
    FileSourceConfig,
    MultilineConfig,
    ProcessingConfig,
    SourcesConfig,
)
from logcap.config.state import (
    DEFAULT_BATCH_TTL_S,
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_DEDUP_MAX_ENTRIES,
    DEFAULT_DEDUP_WINDOW_S,
    DEFAULT_DISK_BUFFER_MAX_FILE_BYTES,
    DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES,
    DEFAULT_DLQ_MAX_TOTAL_BYTES,
    DEFAULT_FSYNC_INTERVAL_S,
    DEFAULT_MAX_POSITION_AGE_S,
    DEFAULT_MAX_RECOVERY_RETRIES,
    DEFAULT_PERSISTED_BATCH_TIMEOUT_S,
    DEFAULT_POSITIONS_CLEANUP_INTERVAL_S,
    DEFAULT_POSITIONS_FLUSH_INTERVAL_S,
    DEFAULT_POSITIONS_MAX_MEMORY_BUFFER,
    DEFAULT_RETENTION_PERIOD_S,
    WHEN_FULL_CHOICES,
    BatchPersistenceConfig,
    DeduplicationConfig,
    DiskBufferConfig,
    DlqConfig,
    EncryptionConfig,
    PositionsConfig,
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
    "DEFAULT_MAX_STREAMS", "DEFAULT_METRICS_PORT",
    "DEFAULT_MULTILINE_MAX_LINES", "DEFAULT_MULTILINE_TIMEOUT_S",
    "DEFAULT_PERSISTED_BATCH_TIMEOUT_S", "DEFAULT_PING_INTERVAL_S", "DEFAULT_PING_TIMEOUT_S",
    "DEFAULT_POSITIONS_CLEANUP_INTERVAL_S", "DEFAULT_POSITIONS_FLUSH_INTERVAL_S",
    "DEFAULT_POSITIONS_MAX_MEMORY_BUFFER", "DEFAULT_QUEUE_SIZE_BATCHES",
    "DEFAULT_RESTART_INTENSITY", "DEFAULT_RESTART_PERIOD_S", "DEFAULT_RETENTION_PERIOD_S",
    "DEFAULT_RETRY_BASE_DELAY_S", "DEFAULT_RETRY_MAX_DELAY_S", "DEFAULT_SERVER_HOST",
    "DEFAULT_SHARDS", "DEFAULT_SHUTDOWN_TIMEOUT_S", "FILE_SINK_FORMATS", "HOUR_S", "LOG_FORMATS",
    "LOG_LEVELS", "LOKI_ENCODINGS", "MAX_SHARDS", "MULTILINE_MATCH_CHOICES", "REMOVED_KEYS",
    "START_AT_CHOICES",
    "WHEN_FULL_CHOICES", "BatchPersistenceConfig", "Config", "ContainersConfig",
    "DeduplicationConfig", "DiskBufferConfig", "DispatcherConfig", "DlqConfig", "EncryptionConfig",
    "FileSinkConfig", "FileSourceConfig", "GiB", "KiB", "LoggingConfig", "LokiAuthConfig",
    "LokiConfig", "LokiTlsConfig", "MiB", "MultilineConfig", "PositionsConfig", "Problem",
    "ProcessingConfig",
    "Section", "ServerConfig", "SinksConfig", "SourcesConfig", "SupervisionConfig",
]

REMOVED_KEYS: dict[str, str] = {
    "dispatcher.max_retries": (
        "removed: a transient failure (5xx, 429, timeout, connection error) is retried until "
        "it is delivered, with backoff capped at dispatcher.retry_max_delay; to dead-letter "
        "after a budget, enable batch_persistence (with the disk buffer) and set its "
        "max_recovery_retries"),
}
"""Keys logcap once accepted, by path, with the reason they are refused (not merely unknown)."""


@attrs.frozen
class Config(Section):
    """The whole configuration, one field per top-level section."""

    server: ServerConfig = attrs.field(factory=ServerConfig)
    sources: SourcesConfig = attrs.field(factory=SourcesConfig)
    processing: ProcessingConfig = attrs.field(factory=ProcessingConfig)
    dispatcher: DispatcherConfig = attrs.field(factory=DispatcherConfig)
    sinks: SinksConfig = attrs.field(factory=SinksConfig)
    positions: PositionsConfig = attrs.field(factory=PositionsConfig)
    disk_buffer: DiskBufferConfig = attrs.field(factory=DiskBufferConfig)
    batch_persistence: BatchPersistenceConfig = attrs.field(factory=BatchPersistenceConfig)
    dlq: DlqConfig = attrs.field(factory=DlqConfig)
    deduplication: DeduplicationConfig = attrs.field(factory=DeduplicationConfig)
    supervision: SupervisionConfig = attrs.field(factory=SupervisionConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)

    def problems(self) -> Iterator[Problem]:
        """Invariants between sections."""
        if self.batch_persistence.enabled and not self.disk_buffer.enabled:
            yield Problem("batch_persistence.enabled",
                          "needs disk_buffer.enabled: the persisted in-flight batches are the "
                          "buffer's records", ("batch_persistence.enabled", "disk_buffer.enabled"))
        if self.batch_persistence.enabled and not self.dispatcher.dlq_enabled:
            yield Problem("batch_persistence.enabled",
                          "needs dispatcher.dlq_enabled: exhausted batches move to the DLQ",
                          ("batch_persistence.enabled", "dispatcher.dlq_enabled"))
