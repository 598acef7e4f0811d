"""Multi-line entries on a container's streams, joined before the lines leave the source.

Plain code, no threads, the clock passed in. A :class:`ContainerJoining` holds one
:class:`~logcap.sources.multiline.LineJoiner` per stream that has a rule (stdout and stderr
are joined separately: they are separate Loki streams and separate cursors), and turns the
:class:`Ready` lines of a stream (a line with its text, engine timestamp, size and the stream
cursor once it is shipped) into :class:`Ready` *entries*:

* an entry's text is its lines joined with ``"\\n"``, its timestamp its first line's (the
  first one that has a timestamp), its size the sum of its lines' sizes (each line + 1), and
  its cursor its **last** line's. So a committed cursor always sits at the end of a whole
  entry: lines of the open entry are held here, in no Entries and no cursor the source
  commits; after a kill -9 (or a rewind) they are read again from the committed cursor and the
  entry is joined again whole;
* the open entry of a stream is closed by the rule, by :meth:`ContainerJoining.flush_due`
  (no new line for the rule's ``timeout``: reason ``timeout``), and by
  :meth:`ContainerJoining.flush` (the container's log ended: ``end_of_stream``; a rename that
  changes the rule also closes it so);
* :meth:`ContainerJoining.reset` forgets the open entries (a rewind: they are read again).

Caps (``max_lines``, ``max_bytes``) are the rule's (:mod:`logcap.sources.multiline`): an
entry is cut, nothing dropped. Close reasons are counted in a
:class:`~logcap.sources.multiline.JoinCounts`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from logcap.sources.containers.cursor import StreamCursor
from logcap.sources.containers.framing import Stream
from logcap.sources.multiline import (
    END_OF_STREAM,
    TIMEOUT,
    JoinCounts,
    JoinedEntry,
    LineJoiner,
    MultilineRule,
)

__all__ = ["ContainerJoining", "Ready"]


class Ready(NamedTuple):
    """A line (or a joined entry) ready to be sent: its text, the engine's timestamp (None:
    the engine gave none), its size in bytes (with its newline: what the read window counts),
    and the stream's cursor once it is shipped (None: nothing of the stream has a timestamp
    yet)."""

    text: str
    timestamp_ns: int | None
    nbytes: int
    cursor: StreamCursor | None


class _StreamJoiner:
    """One stream's joiner and, per line it holds, that line's timestamp and cursor."""

    __slots__ = ("counts", "held", "joiner", "offset")

    def __init__(self, rule: MultilineRule, counts: JoinCounts) -> None:
        self.joiner = LineJoiner(rule)
        self.counts = counts
        self.held: deque[tuple[int | None, StreamCursor | None]] = deque()
        self.offset = 0
        """Bytes fed so far (the joiner's spans are offsets in this running count)."""

    def feed(self, lines: list[Ready], now: float) -> list[Ready]:
        starts = []
        at = self.offset
        for line in lines:
            starts.append(at)
            at += line.nbytes
        self.offset = at
        self.held.extend((line.timestamp_ns, line.cursor) for line in lines)
        return self.ready(self.joiner.feed_lines([line.text for line in lines], starts, at,
                                                 now))

    def ready(self, closed: Iterable[JoinedEntry]) -> list[Ready]:
        out = []
        held = self.held
        for entry in closed:
            timestamp, cursor = held.popleft()
            for _ in range(entry.lines - 1):
                ts, cursor = held.popleft()
                if timestamp is None:
                    timestamp = ts
            out.append(Ready(entry.text, timestamp, entry.end - entry.start, cursor))
            self.counts.add(entry.reason)
        return out

    def close(self, reason: str) -> list[Ready]:
        entry = self.joiner.flush(reason)
        return [] if entry is None else self.ready([entry])

    def reset(self) -> None:
        self.joiner.reset()
        self.held.clear()


class ContainerJoining:
    """The joiners of one container's streams (module docstring). ``rules`` maps a stream to
    its rule; a stream without one passes its lines through unchanged."""

    def __init__(self, rules: Mapping[Stream, MultilineRule | None], counts: JoinCounts
                 ) -> None:
        self.counts = counts
        self.rules: dict[Stream, MultilineRule | None] = dict(rules)
        self._joiners = {s: _StreamJoiner(r, counts) for s, r in self.rules.items()
                         if r is not None}

    @property
    def active(self) -> bool:
        """Whether any stream is joined."""
        return bool(self._joiners)

    def feed(self, stream: Stream, lines: list[Ready], now: float) -> list[Ready]:
        """The next lines of ``stream`` (read at ``now``, monotonic seconds); returns what is
        ready: the entries they closed (the open one is held), or the lines themselves when
        the stream has no rule."""
        joiner = self._joiners.get(stream)
        return lines if joiner is None else joiner.feed(lines, now)

    def holding(self, stream: Stream) -> bool:
        """Whether ``stream`` has an open entry (lines read and not ready)."""
        joiner = self._joiners.get(stream)
        return joiner is not None and joiner.joiner.holding

    @property
    def holding_any(self) -> bool:
        return any(j.joiner.holding for j in self._joiners.values())

    def flush_due(self, now: float) -> dict[Stream, list[Ready]]:
        """Close the open entries that got no line for their rule's timeout."""
        return {s: j.close(TIMEOUT) for s, j in self._joiners.items() if j.joiner.due(now)}

    def flush(self, reason: str = END_OF_STREAM) -> dict[Stream, list[Ready]]:
        """Close every open entry (the log ended)."""
        out = {s: j.close(reason) for s, j in self._joiners.items()}
        return {s: ready for s, ready in out.items() if ready}

    def reset(self) -> None:
        """Forget the open entries: their lines will be read again."""
        for joiner in self._joiners.values():
            joiner.reset()

    def with_rules(self, rules: Mapping[Stream, MultilineRule | None]
                   ) -> tuple[ContainerJoining, dict[Stream, list[Ready]]]:
        """This container joined by ``rules`` from now on (a rename routed it elsewhere): the
        streams whose rule changes close their open entry (``end_of_stream``), returned."""
        if dict(rules) == self.rules:
            return self, {}
        closed = {s: j.close(END_OF_STREAM) for s, j in self._joiners.items()
                  if rules.get(s) != self.rules.get(s)}
        changed = ContainerJoining(rules, self.counts)
        for s, j in self._joiners.items():
            if rules.get(s) == self.rules.get(s):
                changed._joiners[s] = j
        return changed, {s: ready for s, ready in closed.items() if ready}
