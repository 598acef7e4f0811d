"""Config sections for what logcap keeps on disk: positions, buffer, batches, DLQ, dedup.

- ``positions`` (:class:`PositionsConfig`): committed source positions, kept in memory and
  flushed to ``directory`` every ``flush_interval`` or after ``max_memory_buffer`` updates;
  entries not updated for ``max_position_age`` are dropped every ``cleanup_interval``.
- ``disk_buffer`` (:class:`DiskBufferConfig`): the zstd segment-file buffer between the
  dispatcher and the sinks (``max_file_size <= max_total_size``; ``max_files`` 0 means no
  count limit; ``fsync_interval`` 0 means fsync after every append, and a burst commits
  sooner, every 4 MiB of lines; ``when_full`` blocks or
  drops the oldest segments), optionally
  encrypted at rest (:class:`EncryptionConfig`: a key from exactly one of ``key_env`` and
  ``key_file``; the loader also checks that ``key_env`` is set).
- ``batch_persistence`` (:class:`BatchPersistenceConfig`): the disk buffer's batches in flight
  to each sink recorded (attempts, last error, next retry) in ``directory``; after
  ``max_recovery_retries`` failed resends, or ``batch_ttl`` after the first failure, a batch moves
  to the DLQ (``batch_ttl >= batch_timeout``; needs ``disk_buffer.enabled``, checked by
  :class:`~logcap.config.schema.Config`).
- ``dlq`` (:class:`DlqConfig`): the dead-letter queue, bounded by size and age.
- ``deduplication`` (:class:`DeduplicationConfig`): each sink skips a batch part whose bytes
  it delivered within ``window`` (see :mod:`logcap.dispatch.dedup`).

Relative directories stay relative; the caller resolves them against the working directory.
Sections and their invariants follow :mod:`logcap.config.section`.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from logcap.config.section import HOUR_S, MiB, Problem, Section, check_not_empty
from logcap.config.values import (
    choice,
    duration,
    flag,
    format_duration,
    format_size,
    integer,
    size,
    text,
)
from logcap.state.buffer.codec import DEFAULT_COMPRESSION_LEVEL
from logcap.state.buffer.segments import (
    DEFAULT_MAX_FILE_BYTES as DEFAULT_DISK_BUFFER_MAX_FILE_BYTES,
)
from logcap.state.buffer.segments import (
    DEFAULT_MAX_TOTAL_BYTES as DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES,
)

__all__ = [
    "DEFAULT_BATCH_TTL_S",
    "DEFAULT_COMPRESSION_LEVEL",
    "DEFAULT_DEDUP_MAX_ENTRIES",
    "DEFAULT_DEDUP_WINDOW_S",
    "DEFAULT_DISK_BUFFER_MAX_FILE_BYTES",
    "DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES",
    "DEFAULT_DLQ_MAX_TOTAL_BYTES",
    "DEFAULT_FSYNC_INTERVAL_S",
    "DEFAULT_MAX_POSITION_AGE_S",
    "DEFAULT_MAX_RECOVERY_RETRIES",
    "DEFAULT_PERSISTED_BATCH_TIMEOUT_S",
    "DEFAULT_POSITIONS_CLEANUP_INTERVAL_S",
    "DEFAULT_POSITIONS_FLUSH_INTERVAL_S",
    "DEFAULT_POSITIONS_MAX_MEMORY_BUFFER",
    "DEFAULT_RETENTION_PERIOD_S",
    "WHEN_FULL_CHOICES",
    "BatchPersistenceConfig",
    "DeduplicationConfig",
    "DiskBufferConfig",
    "DlqConfig",
    "EncryptionConfig",
    "PositionsConfig",
]

DEFAULT_POSITIONS_FLUSH_INTERVAL_S = 1.0
DEFAULT_POSITIONS_MAX_MEMORY_BUFFER = 1000
"""Pending position updates that force a flush before ``flush_interval`` elapses."""
DEFAULT_POSITIONS_CLEANUP_INTERVAL_S = HOUR_S
DEFAULT_MAX_POSITION_AGE_S = 168 * HOUR_S
DEFAULT_RETENTION_PERIOD_S = 168 * HOUR_S

DEFAULT_FSYNC_INTERVAL_S = 0.2
"""Group-commit interval; 0 means fsync after every append."""
WHEN_FULL_CHOICES = ("block", "drop_oldest")

DEFAULT_PERSISTED_BATCH_TIMEOUT_S = 30.0
DEFAULT_MAX_RECOVERY_RETRIES = 5
DEFAULT_BATCH_TTL_S = 24 * HOUR_S
DEFAULT_DLQ_MAX_TOTAL_BYTES = 256 * MiB
DEFAULT_DEDUP_WINDOW_S = 300.0
DEFAULT_DEDUP_MAX_ENTRIES = 100_000


@attrs.frozen
class PositionsConfig(Section):
    """Committed source positions, kept in memory and flushed to ``directory``."""

    enabled: bool = flag(True)
    directory: str = text("var/positions", check=check_not_empty)
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
    directory: str = text("var/buffer", check=check_not_empty)
    max_file_size: int = size(DEFAULT_DISK_BUFFER_MAX_FILE_BYTES)
    max_total_size: int = size(DEFAULT_DISK_BUFFER_MAX_TOTAL_BYTES)
    max_files: int = integer(0, minimum=0)
    """Most segment files kept (0: bounded by ``max_total_size`` alone); counts like size."""
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
    """The disk buffer's in-flight batches, recorded per sink; exhausted ones go to the DLQ."""

    enabled: bool = flag(False)
    directory: str = text("var/batches", check=check_not_empty)
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

    directory: str = text("var/dlq", check=check_not_empty)
    max_total_size: int = size(DEFAULT_DLQ_MAX_TOTAL_BYTES)
    retention_period: float = duration(DEFAULT_RETENTION_PERIOD_S)


@attrs.frozen
class DeduplicationConfig(Section):
    """Each sink remembers, for ``window``, the byte ranges of the reads it delivered, per
    stream (``(source, kind, stream identity)``, for files ``(dev, ino, fingerprint)``; at most
    ``max_entries`` streams, the least recently used forgotten first), and does not send again
    a part wholly inside them (a restarted shard's or buffer's resend within one run). Line
    text is never compared; parts without a stream identity (DLQ resends) are always sent;
    after a restart of the process the memory is empty."""

    enabled: bool = flag(True)
    window: float = duration(DEFAULT_DEDUP_WINDOW_S)
    max_entries: int = integer(DEFAULT_DEDUP_MAX_ENTRIES, minimum=1)
