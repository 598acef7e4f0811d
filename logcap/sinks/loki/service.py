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

Requests go out through a :class:`~logcap.sinks.loki.session.PushSession` (urllib3) made with
the service: credentials (basic or bearer, files read then; else a netrc entry), TLS settings,
the environment's proxy and CA bundle are worked out once; a transport failure arrives as a
:class:`~logcap.sinks.loki.session.TransportFailure` that :func:`classify` understands, and a
redirect is not followed (a 3xx is rejected with its ``Location`` in the reason). Secrets are
never logged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import reduce
from itertools import chain, compress, count, islice
from operator import is_not, itemgetter
from typing import Any

from logcap.messages import Entries, Labels, Outcome
from logcap.metrics import SINK_CARDINALITY_DROPS
from logcap.sinks.base import Verdict
from logcap.sinks.loki.labels import LabelPolicy, StreamLimiter
from logcap.sinks.loki.protobuf import SNAPPY_COMPILED, EntryLike
from logcap.sinks.loki.request import (
    CannotSplit,
    LokiStream,
    PushRequest,
    build_push_request,
    entries_at,
    entries_of,
    split_in_halves,
)
from logcap.sinks.loki.response import OutcomeKind, classify
from logcap.sinks.loki.session import Answer, PushSession, TransportFailure

__all__ = ["MAX_SPLIT_DEPTH", "PUSH_PATH", "LokiService", "answer_text", "push_url"]

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

    def __init__(self, cfg: Any, session: PushSession | None = None,
                 name: str = "loki") -> None:
        self.cfg = cfg
        self.name = name
        self.url = push_url(cfg.url)
        self.session = session or PushSession(self.url, cfg.auth, cfg.tls)
        self.policy = LabelPolicy(static_labels=dict(cfg.labels),
                                  max_labels=cfg.max_labels_per_stream)
        self.limiter = StreamLimiter(self.policy.overflow_labels, max_streams=cfg.max_streams)
        self._label_cache: dict[Labels, str] = {}
        self._merged_cache: dict[tuple[Labels, Labels], str] = {}
        if cfg.encoding == "protobuf":
            _log_compressor(name)

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
        A stream made only of parts without their own timestamps (line ``i`` at ``ts_ns + i``),
        each starting at or after the previous one's last line, is ``ordered``.
        """
        grouped: dict[str, list[EntryLike]] = {}
        last_ns: dict[str, int | None] = {}  # stream -> its last timestamp while in order
        folded_before = self.limiter.folded_lines
        for part in parts:
            if part.line_labels is None and part.metadata is None:
                count = len(part.lines)
                labels = self.limiter.admit(self._rendered(part.labels), count)
                entries = grouped.get(labels)
                if entries is None:
                    entries = grouped[labels] = []
                if part.timestamps is None:
                    entries.extend(entries_at(part.ts_ns, part.lines))
                    if count:
                        before = last_ns.get(labels, part.ts_ns)
                        in_order = before is not None and before <= part.ts_ns
                        last_ns[labels] = part.ts_ns + count - 1 if in_order else None
                elif count:
                    entries.extend(entries_of(part.timestamps, part.lines))
                    last_ns[labels] = None
                continue
            self._group_lines(part, grouped, last_ns)
        folded = self.limiter.folded_lines - folded_before
        if folded:
            SINK_CARDINALITY_DROPS.labels(self.name, "streams_folded").inc(folded)
        return [LokiStream(labels, entries, last_ns.get(labels) is not None)
                for labels, entries in grouped.items()]

    def _group_lines(self, part: Entries, grouped: dict[str, list[EntryLike]],
                     last_ns: dict[str, int | None]) -> None:
        """Add a part with per-line fields to ``grouped``: its entries are made in one pass in
        C, then each goes to its line's stream, streams in the order of their first line
        (whose order is then not known: ``last_ns`` says None)."""
        lines = part.lines
        stamps = part.timestamps if part.timestamps is not None \
            else range(part.ts_ns, part.ts_ns + len(lines))
        made = entries_of(stamps, lines, part.metadata)
        base_rendered = self._rendered(part.labels)
        line_labels = part.line_labels
        own: dict[str, list[EntryLike]]
        if line_labels is None:
            own = {base_rendered: made}
        else:
            # lines with the same labels share one tuple (the pipeline's), lines next to
            # each other mostly the same one: each distinct tuple is rendered once, found by
            # identity (the tuples outlive this call)
            own = _by_stream(made, line_labels, lambda extra: self._line_rendered(
                part.labels, extra) if extra else base_rendered)
        for rendered, entries in own.items():
            labels = self.limiter.admit(rendered, len(entries))
            grouped.setdefault(labels, []).extend(entries)
            last_ns[labels] = None

    # -- sending ---------------------------------------------------------------------------

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
        return self.send(self.prepare(parts))

    def prepare(self, parts: tuple[Entries, ...]) -> list[tuple[list[LokiStream], PushRequest]]:
        """The batch as the requests that :meth:`send` posts, in order: grouped by stream and,
        when over ``batch_bytes``, halved until each part fits (:meth:`_plan`). No I/O."""
        streams = self.streams(parts)
        return self._plan(streams, 0) if streams else []

    def send(self, prepared: list[tuple[list[LokiStream], PushRequest]]) -> Verdict:
        """POST each prepared request in order, every one whatever the others' answers; the
        worst verdict (retry, then rejected, then delivered)."""
        verdicts = [self._push(streams, 0, request) for streams, request in prepared]
        return reduce(_worst, verdicts) if verdicts else Verdict(Outcome.DELIVERED)

    def _plan(self, streams: list[LokiStream], depth: int,
              ) -> list[tuple[list[LokiStream], PushRequest]]:
        """The requests for ``streams``: one, or halves of it over ``batch_bytes`` of line text
        and structured metadata (``batch_size`` lines is applied by the shard, whose batch is at
        most that long), each halved again until it fits or is one entry.

        The metadata is counted only when it may matter: a protobuf message holds every line
        and every metadata name and value, each character one UTF-8 byte or more, so a message
        within ``batch_bytes`` is a batch within it (JSON keeps one value per metadata name:
        no such bound)."""
        cap = self.cfg.batch_bytes
        entries = sum(len(s.entries) for s in streams)
        if entries < 2 or depth >= MAX_SPLIT_DEPTH:
            return [(streams, self._request(streams))]
        line_chars = _line_chars(streams)
        if line_chars <= cap:
            request = self._request(streams)
            if (request.payload_bytes <= cap and request.encoding == "protobuf") \
                    or line_chars + _metadata_chars(streams, request) <= cap:
                return [(streams, request)]
        first, second = split_in_halves(streams)
        return self._plan(first, depth + 1) + self._plan(second, depth + 1)

    def _request(self, streams: list[LokiStream]) -> PushRequest:
        cfg = self.cfg
        return build_push_request(
            streams, encoding=cfg.encoding, gzip=cfg.gzip and cfg.encoding == "json",
            tenant_id=cfg.tenant_id or None,
        )

    def _push(self, streams: list[LokiStream], depth: int,
              request: PushRequest | None = None) -> Verdict:
        """POST ``streams`` (``request``, when already built from them) and judge the answer."""
        cfg = self.cfg
        if request is None:
            request = self._request(streams)
        try:
            answer = self.session.post(self.url, request.body, request.headers, cfg.timeout)
        except TransportFailure as exc:
            outcome = classify(None, error=exc)
        else:
            outcome = classify(answer.status, answer.headers, answer_text(answer))
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


def _log_compressor(name: str) -> None:
    """Say, once per sink at its start, which snappy compressor its protobuf bodies go through:
    a warning for the literal-only fallback (bodies not compressed: bandwidth, not CPU)."""
    if SNAPPY_COMPILED:
        log.info("loki sink %s: protobuf bodies compressed by the compiled snappy compressor",
                 name)
    else:
        log.warning("loki sink %s: logcap.sinks.loki._snappy is not built: protobuf bodies are "
                    "sent as uncompressed snappy literals (valid, several times larger)", name)


def _worst(a: Verdict, b: Verdict) -> Verdict:
    """The verdict of a batch sent in two parts: retry beats reject beats delivered."""
    for wanted in (Outcome.RETRY, Outcome.REJECTED):
        for verdict in (a, b):
            if verdict.outcome is wanted:
                return verdict
    return a


def _line_chars(streams: list[LokiStream]) -> int:
    """The characters of the streams' lines (counted in C: this runs for every batch)."""
    return sum(sum(map(len, map(_LINE, stream.entries))) for stream in streams)


def _metadata_chars(streams: list[LokiStream], request: PushRequest) -> int:
    """The characters of the streams' metadata names and values: as the protobuf encoder
    counted them, else the metadata tuples flattened to pairs, flattened to strings,
    measured in C."""
    if request.metadata_chars is not None:
        return request.metadata_chars
    return sum(sum(map(len, _flat(_flat(filter(None, map(_METADATA, stream.entries))))))
               for stream in streams)


_consume = deque[object](maxlen=0).extend
"""Run an iterator to its end, keeping nothing (in C)."""

RUNS_PER_LINE_MAX = 0.25
"""Above this many runs of one label tuple per line, :func:`_by_stream` sends each line on its
own (a run costs a few Python steps, a line alone a few C calls)."""


def _by_stream(made: list[EntryLike], line_labels: Sequence[Labels],
               render: Callable[[Labels], str]) -> dict[str, list[EntryLike]]:
    """``made[i]`` put in the list of its line's stream (``render(line_labels[i])``, called
    once per distinct tuple), streams in the order of their first line, lines in their order.

    Lines next to each other mostly share their labels' tuple: the runs of one tuple (found by
    identity, in C) are moved as slices; when the runs are short, line by line."""
    n = len(made)
    if not n:
        return {}
    ends = list(compress(count(1), map(is_not, line_labels, islice(line_labels, 1, None))))
    if len(ends) > RUNS_PER_LINE_MAX * n:
        rendered_of = {key: render(extra) for key, extra in
                       dict(zip(map(id, line_labels), line_labels, strict=True)).items()}
        per_line = list(map(rendered_of.__getitem__, map(id, line_labels)))
        own: dict[str, list[EntryLike]] = {rendered: [] for rendered in dict.fromkeys(per_line)}
        _consume(map(list.append, map(own.__getitem__, per_line), made))
        return own
    own = {}
    rendered_by_id: dict[int, str] = {}
    start = 0
    ends.append(n)
    for end in ends:
        extra = line_labels[start]
        rendered = rendered_by_id.get(id(extra))
        if rendered is None:
            rendered = rendered_by_id[id(extra)] = render(extra)
        run = own.get(rendered)
        if run is None:
            own[rendered] = made[start:end] if start or end < n else made
        else:
            run += made[start:end]
        start = end
    return own


_LINE = itemgetter(1)
_METADATA = itemgetter(2)
_flat = chain.from_iterable


def answer_text(answer: Answer) -> str:
    """The text an answer is judged and reported by: Loki's body; for a redirect (never
    followed) where it points first, so the reason says which URL to configure."""
    location = answer.headers.get("location")
    if location is not None and 300 <= answer.status < 400:
        return f"redirect to {location} not followed (configure that URL): {answer.text}"
    return answer.text
