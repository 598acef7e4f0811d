"""Dispatcher logic: batching entries and tracking each sink's delivery of each batch."""
