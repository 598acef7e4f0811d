"""The Grafana Loki sink, as plain synchronous parts the sink actor composes.

- :mod:`~logcap.sinks.loki.labels`: label sanitising, rendering, per-stream and stream-count caps.
- :mod:`~logcap.sinks.loki.protobuf`: the hand-written ``PushRequest`` encoder and snappy block
  compression (the compiled ``_snappy`` module, or a literal-only fallback).
- :mod:`~logcap.sinks.loki.request`: one push request body (protobuf or JSON) from a batch.
- :mod:`~logcap.sinks.loki.response`: what an HTTP outcome means (success, retry, split, reject).
  The backoff between retries is the senders' (:mod:`logcap.dispatch.retry`).
- :mod:`~logcap.sinks.loki.session`: the HTTP transport (urllib3), its settings worked out once.
- :mod:`~logcap.sinks.loki.service`: the backend that groups, sends and judges a batch;
  :mod:`~logcap.sinks.loki.probe`: ``check-config --connect``'s one ``GET /ready``.

None of these modules starts a thread or talks to an actor; they are tested without either.
"""

__all__: list[str] = []
