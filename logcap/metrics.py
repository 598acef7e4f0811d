"""Every Prometheus metric logcap exports, declared in one place.

Names follow ``logcap_<subsystem>_<noun>_<unit|total>``. Metrics live in :data:`REGISTRY`
(not prometheus_client's global one), so the exposition holds logcap's metrics plus the
process and platform collectors. Label values of ``reason`` come from closed sets declared
next to the metric. Callers update metrics once per batch, never per line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ACTOR_RESTARTS",
    "REGISTRY",
    "InboxCollector",
    "exposition",
]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# -- runtime ---------------------------------------------------------------------------------
ACTOR_RESTARTS = Counter(
    "logcap_supervisor_restarts_total",
    "Restarts of a supervised actor, by its qualified name.",
    ["actor"],
    registry=REGISTRY,
)
ACTOR_CRASHES = Counter(
    "logcap_supervisor_crashes_total",
    "Crashes (exceptions, failed starts, hangs) of a supervised actor.",
    ["actor", "kind"],
    registry=REGISTRY,
)
CRASH_KINDS = ("exception", "start", "hang")

# -- config reload -----------------------------------------------------------------------------
CONFIG_RELOADS = Counter(
    "logcap_config_reloads_total",
    "Config reloads (SIGHUP, POST /config/reload), by result.",
    ["result"],
    registry=REGISTRY,
)
RELOAD_RESULTS = ("applied", "invalid", "failed")
CONFIG_GENERATION = Gauge(
    "logcap_config_generation",
    "The generation of the config in force: 1 at start, +1 per applied reload.",
    registry=REGISTRY,
)

# -- sources, dispatcher, sinks (file path) ----------------------------------------------------
SOURCE_LINES = Counter(
    "logcap_source_lines_total", "Lines read, by source.", ["source"], registry=REGISTRY
)
SOURCE_BYTES = Counter(
    "logcap_source_bytes_total", "Bytes read, by source.", ["source"], registry=REGISTRY
)
SOURCE_TRUNCATED = Counter(
    "logcap_source_truncated_lines_total",
    "Lines cut to max_line_bytes, by source.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_ROTATIONS = Counter(
    "logcap_source_rotations_total",
    "File rotations seen, by kind.",
    ["source", "kind"],
    registry=REGISTRY,
)
ROTATION_KINDS = ("rename", "copytruncate", "truncate", "recreate", "inode_reuse", "deleted")
SOURCE_ERRORS = Counter(
    "logcap_source_errors_total",
    "Source errors, by reason.",
    ["source", "reason"],
    registry=REGISTRY,
)
SOURCE_ERROR_REASONS = ("permission_denied", "not_found", "io_error", "compressed",
                        "compressed_corrupt", "compressed_truncated", "max_open_files")
SOURCE_MULTILINE_ENTRIES = Counter(
    "logcap_source_multiline_entries_total",
    "Multi-line entries closed, by why: complete, max_lines, max_bytes (cut at a cap), timeout "
    "(no new line for multiline.timeout), end_of_stream (a rotated-away file's end).",
    ["source", "reason"],
    registry=REGISTRY,
)
SOURCE_BINARY_RUNS = Counter(
    "logcap_source_binary_run_bytes_total",
    "Bytes of NUL and control-character runs dropped from lines (crash regions, sparse files).",
    ["source"],
    registry=REGISTRY,
)
SOURCE_TIMESTAMPS_REPLAYED = Counter(
    "logcap_source_timestamps_replayed_lines_total",
    "Lines read again from a file (after a crash, a restart or a rewind) that got the "
    "timestamps of their first read from the timestamp journal, so Loki keeps them once.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_OPEN_FILES = Gauge(
    "logcap_source_open_files",
    "File descriptors a source holds open (followed files and rotated files being drained).",
    ["source"],
    registry=REGISTRY,
)
SOURCE_FILES_CLOSED = Counter(
    "logcap_source_files_closed_total",
    "Files a source closed, by reason (drained, inactive, max_open_files).",
    ["source", "reason"],
    registry=REGISTRY,
)
SOURCE_CLOSE_REASONS = ("drained", "inactive", "max_open_files")
SOURCE_PAUSES = Counter(
    "logcap_source_backpressure_pauses_total",
    "Times a source paused because the next stage was full.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_FILES = Gauge(
    "logcap_source_files", "Files being tailed, by source.", ["source"], registry=REGISTRY
)
CONTAINERS_FOLLOWED = Gauge(
    "logcap_source_containers", "Containers being followed, by source.", ["source"],
    registry=REGISTRY,
)
CONTAINER_RECONNECTS = Counter(
    "logcap_source_container_reconnects_total",
    "Container log streams opened again after an end or a failure, by source.",
    ["source"],
    registry=REGISTRY,
)
CONTAINER_REASSEMBLED = Counter(
    "logcap_source_reassembled_lines_total",
    "Container lines rejoined from pieces the engine split, by source.",
    ["source"],
    registry=REGISTRY,
)
CONTAINER_ENGINE_UP = Gauge(
    "logcap_source_engine_up", "1 while the container engine answers, by source.", ["source"],
    registry=REGISTRY,
)
POSITIONS_LAG = Gauge(
    "logcap_positions_lag_bytes",
    "Bytes written to a source's files and not yet committed.",
    ["source"],
    registry=REGISTRY,
)
POSITIONS_FLUSHES = Counter(
    "logcap_positions_flushes_total", "Positions files written.", registry=REGISTRY
)
SINK_LINES = Counter(
    "logcap_sink_lines_total",
    "Lines a sink handled, by the outcome of each request (sent, failed, rejected, dropped).",
    ["sink", "outcome"],
    registry=REGISTRY,
)
SINK_OUTCOMES = ("sent", "rejected", "failed", "dropped")
RESENT_LINES = Counter(
    "logcap_resent_lines_total",
    "Lines a sender (shard, disk buffer, DLQ) sent again to a sink: after a failure, a hold, "
    "or a restart of the sink.",
    ["sender", "sink"],
    registry=REGISTRY,
)
SINK_REQUESTS = Counter(
    "logcap_sink_requests_total",
    "Requests made by a sink, by reason of their outcome.",
    ["sink", "reason"],
    registry=REGISTRY,
)
SINK_LATENCY = Histogram(
    "logcap_sink_request_duration_seconds",
    "Duration of one sink request.",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
SINK_BATCH_LINES = Histogram(
    "logcap_sink_batch_lines",
    "Lines per batch sent to a sink.",
    ["sink"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
    registry=REGISTRY,
)
SINK_CARDINALITY_DROPS = Counter(
    "logcap_sink_cardinality_overflow_total",
    "Entries folded into the overflow stream or labels dropped by the cardinality guard.",
    ["sink", "reason"],
    registry=REGISTRY,
)


class InboxCollector(Collector):
    """Reports mailbox depth and full events of every actor bound in a directory, at scrape."""

    def __init__(
        self, snapshot: Callable[[], Iterable[tuple[str, int, int, int, int]]]
    ) -> None:
        """``snapshot`` yields ``(actor, depth, full_events, handled, capacity)``."""
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "logcap_actor_mailbox_depth_messages", "Data messages waiting.", labels=["actor"]
        )
        full = CounterMetricFamily(
            "logcap_actor_mailbox_full_events",
            "Data messages refused because the mailbox was full (since the actor started).",
            labels=["actor"],
        )
        taken = CounterMetricFamily(
            "logcap_actor_messages_handled",
            "Messages taken from the mailbox (since the actor started).",
            labels=["actor"],
        )
        capacity = GaugeMetricFamily(
            "logcap_actor_mailbox_capacity_messages",
            "Data messages the mailbox holds at most (depth / capacity is its saturation).",
            labels=["actor"],
        )
        for name, d, f, t, c in self._snapshot():
            depth.add_metric([name], d)
            full.add_metric([name], f)
            taken.add_metric([name], t)
            capacity.add_metric([name], c)
        yield depth
        yield capacity
        yield full
        yield taken


def exposition() -> bytes:
    """The Prometheus text exposition of :data:`REGISTRY`."""
    return generate_latest(REGISTRY)

# -- processing (pipelines run by the shards) ---------------------------------------------------
PIPELINE_FAILURES = Counter(
    "logcap_pipeline_stage_failures_total",
    "Lines on which a pipeline stage failed (the line went on unchanged), by pipeline, stage "
    "('<index>:<kind>') and reason (no_match, missing_field, invalid_json, invalid_logfmt, "
    "unparsable, error).",
    ["pipeline", "stage", "reason"],
    registry=REGISTRY,
)
PIPELINE_DROPS = Counter(
    "logcap_pipeline_dropped_lines_total",
    "Lines a pipeline dropped on purpose, by pipeline, stage and reason (rate_limit, or a drop "
    "stage's conditions: regex, value, age, size joined by '+').",
    ["pipeline", "stage", "reason"],
    registry=REGISTRY,
)
PIPELINE_LINES = Counter(
    "logcap_pipeline_lines_total",
    "Lines that went into a pipeline, by pipeline.",
    ["pipeline"],
    registry=REGISTRY,
)
PIPELINE_DELAYED = Counter(
    "logcap_pipeline_delayed_lines_total",
    "Lines a shard held for a rate_limit stage in block mode before they went on, by pipeline "
    "and stage (counted when they go on).",
    ["pipeline", "stage"],
    registry=REGISTRY,
)
PIPELINE_BLOCKED = Counter(
    "logcap_pipeline_blocked_seconds_total",
    "Seconds entries were held for a rate_limit stage in block mode, summed over the pieces "
    "let out after a wait, by pipeline and stage.",
    ["pipeline", "stage"],
    registry=REGISTRY,
)
PIPELINE_HELD = Gauge(
    "logcap_pipeline_held_lines",
    "Lines a shard holds now for rate_limit stages in block mode, by shard.",
    ["shard"],
    registry=REGISTRY,
)

# -- disk buffer -------------------------------------------------------------------------------
BUFFER_BYTES = Gauge(
    "logcap_buffer_size_bytes", "Bytes of segment files in the disk buffer.", registry=REGISTRY
)
BUFFER_CAPACITY = Gauge(
    "logcap_buffer_capacity_bytes", "The disk buffer's max_total_size.", registry=REGISTRY
)
BUFFER_OLDEST_AGE = Gauge(
    "logcap_buffer_oldest_age_seconds",
    "Age of the oldest segment file still held in the disk buffer (0 when empty).",
    registry=REGISTRY,
)
BUFFER_SINK_BACKLOG = Gauge(
    "logcap_buffer_sink_backlog_records",
    "Buffer records a sink has not been sent yet (behind its cursor, not in flight), by sink.",
    ["sink"],
    registry=REGISTRY,
)
BUFFER_DROPPED = Counter(
    "logcap_buffer_dropped_lines_total",
    "Lines the disk buffer dropped, by reason (full, retention, corrupt).",
    ["reason"],
    registry=REGISTRY,
)
BUFFER_RECOVERED = Counter(
    "logcap_buffer_recovery_problems_total",
    "Problems repaired when the disk buffer opened (torn tails, rebuilt ledgers, corrupt records).",
    registry=REGISTRY,
)

# -- dead-letter queue -------------------------------------------------------------------------
INFLIGHT_GIVEN_UP = Counter(
    "logcap_inflight_batches_given_up_total",
    "Buffer batches moved to the DLQ by batch_persistence, by sink and reason "
    "(retries_exhausted, expired).",
    ["sink", "reason"], registry=REGISTRY)
INFLIGHT_OVERDUE = Counter(
    "logcap_inflight_batches_overdue_total",
    "Buffer batches sent and unanswered for batch_persistence.batch_timeout, by sink.",
    ["sink"], registry=REGISTRY)
INFLIGHT_PENDING = Gauge(
    "logcap_inflight_batches", "Buffer batches sent to a sink and not yet acknowledged, by sink.",
    ["sink"], registry=REGISTRY)
DLQ_ENTRIES = Counter("logcap_dlq_entries_total", "Entries stored in the DLQ, by sink and reason.",
                      ["sink", "reason"], registry=REGISTRY)
DLQ_LINES = Counter("logcap_dlq_lines_total", "Lines stored in the DLQ, by sink and reason.",
                    ["sink", "reason"], registry=REGISTRY)
DLQ_DROPPED_LINES = Counter(
    "logcap_dlq_dropped_lines_total",
    "Lines removed from the DLQ by retention, or never stored, by reason.",
    ["reason"], registry=REGISTRY)
DLQ_DROP_REASONS = ("age", "size", "write_error")
DLQ_REPROCESSED = Counter(
    "logcap_dlq_reprocessed_entries_total",
    "Entries re-sent from the DLQ, by sink and outcome.", ["sink", "outcome"], registry=REGISTRY)
DLQ_REPROCESS_OUTCOMES = ("delivered", "rejected", "abandoned", "gone")
DLQ_SIZE = Gauge("logcap_dlq_size_bytes", "Bytes of DLQ files on disk.", registry=REGISTRY)

# -- deduplication -----------------------------------------------------------------------------
DEDUP_DROPPED = Counter(
    "logcap_dedup_dropped_lines_total",
    "Lines not sent again to a sink because it had already delivered their bytes.",
    ["sink"],
    registry=REGISTRY,
)
