"""The Loki push service: turns a batch into push requests and sends them.

``deliver`` groups a batch's lines into streams (a line's stream is its part's labels plus its
own ``line_labels``, through the cardinality guard: sanitised, capped per stream, new streams
past ``max_streams`` folded into an overflow stream; each line keeps its own timestamp and
structured metadata), builds one request (protobuf + snappy, or JSON, gzip optional), POSTs it
to ``{url}/loki/api/v1/push`` over a kept-alive session, and classifies the answer
(:mod:`logcap.sinks.loki.response`): 2xx delivered; 429, 5xx (not 501), timeouts and connection
errors retried (``Retry-After`` passed on); 413 split in halves and each half sent (recursively,
a single entry that is still too large is rejected); other 4xx and 501 rejected for good with
Loki's reason. Entries keep their original timestamps on every attempt.

Credentials (basic or bearer, files read when the service is created), TLS settings and what
requests would read from the environment are set on the session once
(:mod:`logcap.sinks.loki.session`); secrets are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

import requests

from logcap.messages import Entries, Labels, Outcome
from logcap.metrics import SINK_CARDINALITY_DROPS
from logcap.sinks.base import Verdict
from logcap.sinks.loki.labels import LabelPolicy, StreamLimiter
from logcap.sinks.loki.request import (
    CannotSplit,
    LokiEntry,
    LokiStream,
    build_push_request,
    entries_at,
    entries_of,
    split_in_halves,
)
from logcap.sinks.loki.response import OutcomeKind, classify
from logcap.sinks.loki.session import push_session

__all__ = ["MAX_SPLIT_DEPTH", "PUSH_PATH", "LokiService", "push_url"]

log = logging.getLogger(__name__)

PUSH_PATH = "/loki/api/v1/push"
MAX_SPLIT_DEPTH = 10
"""413 splits at most this deep (1,000 entries reach single entries in 10 halvings)."""


def push_url(url: str) -> str:
    """The push endpoint of a configured Loki ``url`` (a base URL or the push URL itself)."""
    return url if url.endswith(PUSH_PATH) else url.rstrip("/") + PUSH_PATH


class LokiService:
    """A :class:`~logcap.sinks.base.SinkBackend` for Loki; ``cfg`` is ``sinks.loki`` (or a
    ``sinks.loki_endpoints[]`` entry), ``name`` the sink instance's name (metrics label)."""

    def __init__(self, cfg: Any, session: requests.Session | None = None,
                 name: str = "loki") -> None:
        self.cfg = cfg
        self.name = name
        self.url = push_url(cfg.url)
        self.session = push_session(self.url, cfg.auth, cfg.tls, session)
        self.policy = LabelPolicy(static_labels=dict(cfg.labels),
                                  max_labels=cfg.max_labels_per_stream)
        self.limiter = StreamLimiter(self.policy.overflow_labels, max_streams=cfg.max_streams)
        self._label_cache: dict[Labels, str] = {}
        self._merged_cache: dict[tuple[Labels, Labels], str] = {}

    # -- building --------------------------------------------------------------------------

    def _rendered(self, labels: tuple[tuple[str, str], ...]) -> str:
        rendered = self._label_cache.get(labels)
        if rendered is None:
            built = self.policy.build(labels)
            if built.dropped:
                SINK_CARDINALITY_DROPS.labels(self.name, "labels_capped").inc(built.dropped)
            rendered = built.rendered
            if len(self._label_cache) > 4 * self.cfg.max_streams:
                self._label_cache.clear()
            self._label_cache[labels] = rendered
        return rendered

    def _line_rendered(self, base: Labels, extra: Labels) -> str:
        """The rendered stream of a line whose labels ``extra`` add to its part's ``base``
        (a name in both takes the line's value), through the same guard as ``base``."""
        key = (base, extra)
        rendered = self._merged_cache.get(key)
        if rendered is None:
            merged = dict(base)
            merged.update(extra)
            rendered = self._rendered(tuple(merged.items()))
            if len(self._merged_cache) > 4 * self.cfg.max_streams:
                self._merged_cache.clear()
            self._merged_cache[key] = rendered
        return rendered

    def streams(self, parts: tuple[Entries, ...]) -> list[LokiStream]:
        """Group the batch by Loki stream.

        Line ``i`` of a part has timestamp ``part.timestamp(i)``, the stream
        ``part.labels`` plus ``part.line_labels[i]`` (the line's value wins), and its
        structured metadata ``part.metadata[i]``; so one part's lines may go to several streams.
        The stream limiter admits each (part, stream) group once, with its line count.
        """
        grouped: dict[str, list[LokiEntry]] = {}
        folded_before = self.limiter.folded_lines
        for part in parts:
            if part.line_labels is None and part.metadata is None:
                labels = self.limiter.admit(self._rendered(part.labels), len(part.lines))
                grouped.setdefault(labels, []).extend(
                    entries_at(part.ts_ns, part.lines) if part.timestamps is None
                    else entries_of(part.timestamps, part.lines))
                continue
            self._group_lines(part, grouped)
        folded = self.limiter.folded_lines - folded_before
        if folded:
            SINK_CARDINALITY_DROPS.labels(self.name, "streams_folded").inc(folded)
        return [LokiStream(labels, entries) for labels, entries in grouped.items()]

    def _group_lines(self, part: Entries, grouped: dict[str, list[LokiEntry]]) -> None:
        """Add a part with per-line fields to ``grouped``, line by line."""
        own: dict[str, list[LokiEntry]] = {}
        base_rendered = self._rendered(part.labels)
        line_labels, metadata = part.line_labels, part.metadata
        # lines with the same labels share one tuple (the pipeline's): looked up once per
        # part by identity, not hashed per line (the tuples outlive the loop)
        done: dict[int, str] = {}
        for i, line in enumerate(part.lines):
            extra = line_labels[i] if line_labels is not None else ()
            if extra:
                rendered = done.get(id(extra))
                if rendered is None:
                    rendered = done[id(extra)] = self._line_rendered(part.labels, extra)
            else:
                rendered = base_rendered
            md = metadata[i] if metadata is not None else ()
            own.setdefault(rendered, []).append(LokiEntry(part.timestamp(i), line, md))
        for rendered, entries in own.items():
            labels = self.limiter.admit(rendered, len(entries))
            grouped.setdefault(labels, []).extend(entries)

    # -- sending ---------------------------------------------------------------------------

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
        streams = self.streams(parts)
        if not streams:
            return Verdict(Outcome.DELIVERED)
        return self._send_capped(streams, 0)

    def _send_capped(self, streams: list[LokiStream], depth: int) -> Verdict:
        """Send, first halving a batch over ``batch_bytes`` of line text and structured
        metadata (``batch_size`` lines is applied by the shard, whose batch is at most that
        long)."""
        size = _batch_chars(streams)
        entries = sum(len(s.entries) for s in streams)
        if size <= self.cfg.batch_bytes or entries < 2 or depth >= MAX_SPLIT_DEPTH:
            return self._push(streams, 0)
        first, second = split_in_halves(streams)
        return _worst(self._send_capped(first, depth + 1), self._send_capped(second, depth + 1))

    def _push(self, streams: list[LokiStream], depth: int) -> Verdict:
        cfg = self.cfg
        request = build_push_request(
            streams, encoding=cfg.encoding, gzip=cfg.gzip and cfg.encoding == "json",
            tenant_id=cfg.tenant_id or None,
        )
        try:
            resp = self.session.post(self.url, data=request.body, headers=dict(request.headers),
                                     timeout=cfg.timeout)
        except requests.RequestException as exc:
            outcome = classify(None, error=exc)
        else:
            outcome = classify(resp.status_code, _headers(resp.headers), resp.text)
            resp.close()
        if outcome.kind is OutcomeKind.SUCCESS:
            return Verdict(Outcome.DELIVERED, outcome.reason)
        if outcome.kind is OutcomeKind.RETRY:  # the status leads: "HTTP 503: <Loki's text>"
            detail = outcome.message if outcome.status is None \
                else f"HTTP {outcome.status}: {outcome.message}"
            return Verdict(Outcome.RETRY, outcome.reason, outcome.retry_after_s, detail)
        if outcome.kind is OutcomeKind.REJECT:
            return Verdict(Outcome.REJECTED, outcome.reason, detail=outcome.message)
        # 413: split in halves and send each; one entry that is still too big is rejected.
        if depth >= MAX_SPLIT_DEPTH:
            return Verdict(Outcome.REJECTED, outcome.reason, detail="413 after maximum splits")
        try:
            first, second = split_in_halves(streams)
        except CannotSplit:
            return Verdict(Outcome.REJECTED, outcome.reason, detail=outcome.message)
        return _worst(self._push(first, depth + 1), self._push(second, depth + 1))

    def close(self) -> None:
        self.session.close()


def _worst(a: Verdict, b: Verdict) -> Verdict:
    """The verdict of a batch sent in two parts: retry beats reject beats delivered."""
    for wanted in (Outcome.RETRY, Outcome.REJECTED):
        for verdict in (a, b):
            if verdict.outcome is wanted:
                return verdict
    return a


def _batch_chars(streams: list[LokiStream]) -> int:
    """What the streams count toward ``batch_bytes``: their lines and their metadata's names
    and values, in characters (counted in C where it can: this runs for every batch)."""
    total = 0
    for stream in streams:
        entries = stream.entries
        total += sum(map(len, map(_LINE, entries)))
        for metadata in filter(None, map(_METADATA, entries)):
            total += sum(len(k) + len(v) for k, v in metadata)
    return total


_LINE = attrgetter("line")
_METADATA = attrgetter("metadata")


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
