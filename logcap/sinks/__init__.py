"""Sinks: where logcap delivers batches (Grafana Loki, local files)."""
