"""The disk buffer's store counters mirrored into its Prometheus metrics (at each maintenance)."""

from __future__ import annotations

from typing import Any

from logcap.metrics import BUFFER_BYTES, BUFFER_DROPPED, BUFFER_OLDEST_AGE, BUFFER_SINK_BACKLOG

__all__ = ["publish_store_stats"]


def publish_store_stats(stats: dict[str, Any], dropped_seen: dict[str, int]) -> None:
    """Set the gauges from ``stats`` (:meth:`~logcap.state.buffer.segments.SegmentStore.stats`)
    and add to the dropped-lines counter what the store counted since ``dropped_seen`` (lines
    per reason already added; updated). The store counts drops since it opened."""
    BUFFER_BYTES.set(stats["bytes"])
    BUFFER_OLDEST_AGE.set(stats["oldest_age_s"])
    for sink, row in stats["sinks"].items():
        BUFFER_SINK_BACKLOG.labels(sink).set(row["lag_batches"])
    for reason, counts in stats["dropped"].items():
        seen = dropped_seen.get(reason, 0)
        if counts["lines"] > seen:
            BUFFER_DROPPED.labels(reason).inc(counts["lines"] - seen)
        dropped_seen[reason] = counts["lines"]
