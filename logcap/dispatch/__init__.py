"""Dispatcher logic, plain synchronous code: batching entries, retry arithmetic, the outbox
(what each sink was sent, its retry gate and resends), delivered-range deduplication."""
