"""The resume cursor of one container: what was shipped, and what to skip when it is re-sent.

An engine can only resume a container's logs by time (``logs(since=...)``), and its timestamps
are not unique: podman's have whole-second precision and one covers a whole read batch
(hundreds of lines), Docker's are ns but still repeat. So a cursor is a timestamp **plus** what
was already shipped at that timestamp.

Model
    A container has one ordered sequence of lines per stream (stdout, stderr): the engine's log
    file order, in which the timestamps of a stream do not decrease. Lines are shipped (acked) in
    order *per stream* (the two streams travel separately, so one can be ahead of the other).
    A :class:`StreamCursor` says, for one stream: every line with a timestamp below
    ``timestamp_ns`` is shipped, and of the lines at ``timestamp_ns`` the first ``count`` are,
    ``digest`` being the chained hash of their bytes (:func:`chain_digest`). A
    :class:`ContainerCursor` holds one per stream that shipped anything, and ``floor_ns``: where
    following began (lines before it are not wanted; 0 is the container's first line).

Resuming
    :meth:`ContainerCursor.resume_ns` is the earliest timestamp still needed (the smallest
    stream cursor, or ``floor_ns`` for a stream with none), :func:`since_for` turns it into the
    SDK's ``since`` for the engine's behaviour (:class:`SinceSemantics`), and a
    :class:`ResumeFilter` fed the lines the engine sends back decides, per stream, which were
    shipped: below the cursor's timestamp, skipped; at it, the first ``count`` skipped; after
    them, everything kept. So there is no loss and no duplicate however many lines share the
    boundary timestamp.

Limits (each gives duplicates, never loss, and a count in ``boundary_mismatches``)
    If the lines re-sent at the boundary are not those shipped (their digest differs: the engine
    lost some of its log to rotation, or a line split by the engine had pieces on both sides of a
    timestamp change), the filter still skips ``count`` lines at the boundary and counts a
    mismatch. Lines without a timestamp never move a cursor and are always kept. Known loss
    case: an engine clock stepped backwards makes later lines look older than the cursor.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from logcap.sources.containers.framing import Stream
from logcap.sources.containers.lines import LogLine

__all__ = [
    "EMPTY_DIGEST",
    "ContainerCursor",
    "ResumeFilter",
    "SinceSeconds",
    "SinceSemantics",
    "StreamCursor",
    "chain_digest",
    "since_for",
    "since_seconds",
]

DIGEST_BYTES = 16
EMPTY_DIGEST = "0" * (2 * DIGEST_BYTES)
"""The digest of no line: where :func:`chain_digest` starts."""

_NS_PER_S = 1_000_000_000


def chain_digest(digest: str, data: bytes) -> str:
    """The digest of the lines hashed into ``digest`` followed by the line ``data``
    (BLAKE2b-128 over the previous digest, the line's length and its bytes; hex)."""
    h = hashlib.blake2b(bytes.fromhex(digest), digest_size=DIGEST_BYTES)
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class StreamCursor:
    """One stream's resume point: every line before ``timestamp_ns`` shipped, and the first
    ``count`` lines at ``timestamp_ns``, whose chained digest is ``digest``."""

    timestamp_ns: int
    count: int
    digest: str

    def after(self, timestamp_ns: int, data: bytes) -> StreamCursor:
        """The cursor once the next line (``timestamp_ns``, ``data``) is shipped too. A line
        older than the cursor (a clock stepped back) leaves it where it is."""
        if timestamp_ns > self.timestamp_ns:
            return StreamCursor(timestamp_ns, 1, chain_digest(EMPTY_DIGEST, data))
        if timestamp_ns == self.timestamp_ns:
            return StreamCursor(timestamp_ns, self.count + 1, chain_digest(self.digest, data))
        return self


@dataclass(frozen=True, slots=True)
class ContainerCursor:
    """A container's resume point: ``floor_ns`` (where following began) and one
    :class:`StreamCursor` per stream that shipped a line (see the module docstring)."""

    floor_ns: int = 0
    streams: Mapping[Stream, StreamCursor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.floor_ns < 0:
            raise ValueError("floor_ns must not be negative")
        for stream, cursor in self.streams.items():
            if cursor.timestamp_ns < 0 or cursor.count < 1:
                raise ValueError(f"{stream.label}: a stream cursor needs a timestamp >= 0 and "
                                 "a count >= 1")

    def shipped(self, line: LogLine) -> ContainerCursor:
        """The cursor once ``line`` (the next line of its stream) is shipped too. A line
        without a timestamp, or one before ``floor_ns``, does not move it."""
        ts = line.timestamp_ns
        if ts is None or ts < self.floor_ns:
            return self
        current = self.streams.get(line.stream)
        if current is None:
            moved = StreamCursor(ts, 1, chain_digest(EMPTY_DIGEST, line.data))
        else:
            moved = current.after(ts, line.data)
            if moved is current:
                return self
        return replace(self, streams={**self.streams, line.stream: moved})

    def resume_ns(self) -> int:
        """The earliest engine timestamp whose lines are still needed: the smallest stream
        cursor's, ``floor_ns`` for a stream that shipped nothing."""
        stamps = [self.streams[s].timestamp_ns if s in self.streams else self.floor_ns
                  for s in Stream]
        return min(stamps)


class SinceSemantics(enum.Enum):
    """How an engine applies ``since``: Docker returns lines at or after it (``INCLUSIVE``),
    podman strictly after it, at ns precision (``EXCLUSIVE``)."""

    INCLUSIVE = "inclusive"
    EXCLUSIVE = "exclusive"


class SinceSeconds(float):
    """Seconds since the epoch, whose ``str`` is exact to the nanosecond.

    The ``docker`` SDK passes a float ``since`` into the query string with ``str()``, and a
    float cannot hold ns precision (a 2024 time in seconds has about 0.2 µs of it); the engine
    parses ``seconds.nanoseconds`` exactly. This float carries the exact decimal text."""

    ns: int

    def __new__(cls, ns: int) -> SinceSeconds:
        self = super().__new__(cls, ns / _NS_PER_S)
        self.ns = ns
        return self

    def __str__(self) -> str:
        return f"{self.ns // _NS_PER_S}.{self.ns % _NS_PER_S:09d}"

    __repr__ = __str__


def since_seconds(ns: int) -> SinceSeconds:
    """``ns`` nanoseconds since the epoch as the SDK's float ``since`` (exact in the query)."""
    if ns < 0:
        raise ValueError("since must not be negative")
    return SinceSeconds(ns)


def since_for(resume_ns: int, semantics: SinceSemantics) -> SinceSeconds | None:
    """The ``since`` that makes an engine re-send every line at or after ``resume_ns``; None
    (no ``since``: from the first line) when that is the whole log.

    ``EXCLUSIVE`` asks for 1 ns earlier. That choice is also correct for an ``INCLUSIVE``
    engine (a line 1 ns before ``resume_ns`` is older than every cursor, so the
    :class:`ResumeFilter` skips it), so it is the one to use when the engine is not known."""
    start = resume_ns - 1 if semantics is SinceSemantics.EXCLUSIVE else resume_ns
    return since_seconds(start) if start > 0 else None


@dataclass(slots=True)
class _Boundary:
    """Progress of one stream through its cursor's boundary timestamp."""

    cursor: StreamCursor
    seen: int = 0
    digest: str = EMPTY_DIGEST
    done: bool = False


class ResumeFilter:
    """Decides which re-sent lines were already shipped, given the cursor the stream was
    resumed from (see the module docstring). Feed it every line of the resumed stream, in
    order; counters: ``skipped`` lines and ``boundary_mismatches`` (streams whose re-sent
    boundary lines were not the ones shipped)."""

    def __init__(self, cursor: ContainerCursor) -> None:
        self._floor = cursor.floor_ns
        self._boundaries = {stream: _Boundary(c) for stream, c in cursor.streams.items()}
        self.skipped = 0
        self.boundary_mismatches = 0

    def keep(self, line: LogLine) -> bool:
        """True if ``line`` is to be shipped, False if it was shipped before."""
        ts = line.timestamp_ns
        if ts is None:
            return True
        boundary = self._boundaries.get(line.stream)
        if boundary is None:  # nothing of this stream shipped: all from the floor on
            if ts < self._floor:
                self.skipped += 1
                return False
            return True
        if boundary.done:
            return True
        cursor = boundary.cursor
        if ts < cursor.timestamp_ns or (ts == cursor.timestamp_ns
                                        and boundary.seen < cursor.count):
            if ts == cursor.timestamp_ns:
                boundary.seen += 1
                boundary.digest = chain_digest(boundary.digest, line.data)
                if boundary.seen == cursor.count:
                    self._close(boundary)
            self.skipped += 1
            return False
        self._close(boundary)  # past the boundary, having seen fewer lines than shipped
        return True

    def _close(self, boundary: _Boundary) -> None:
        boundary.done = True
        if boundary.seen != boundary.cursor.count or boundary.digest != boundary.cursor.digest:
            self.boundary_mismatches += 1
