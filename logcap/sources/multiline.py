"""Joining a stream's lines into multi-line entries (a stack trace, a SIP dump, a slow query).

Plain code, no threads, the clock passed in: :class:`LineJoiner` is fed one stream's lines in
order, each with the span it took in the stream (``[start, end)``: byte offsets in a file, or
any running count a container stream keeps), and gives back whole entries
(:class:`JoinedEntry`: the lines joined with ``"\\n"``, the span from the first line's start
to the last line's end, how many lines, and why it was closed). The entry being built is
*open*; the caller must not treat its lines as read (see
:mod:`logcap.sources.files.joining`: the position stops at :attr:`LineJoiner.open_start`).

The rule (:class:`MultilineRule`, compiled from anything shaped like
:class:`MultilineSpec`, i.e. the config's ``MultilineConfig``) says where entries begin or end.
Patterns are searched anywhere in the line (``re.search``), as Filebeat and Promtail do:

* ``firstline``: a line that matches starts a new entry; every other line continues the open
  one (Promtail's ``multiline`` stage).
* ``pattern`` with ``negate`` and ``match`` (Filebeat's rule). A line *continues* when it
  matches ``pattern`` (does not match, with ``negate``):

  - ``match: after``: a continuing line is appended to the open entry; any other line starts
    a new entry. (``negate: true`` is ``firstline``; ``pattern: '^\\s'`` joins indented lines
    to the line before them.)
  - ``match: before``: a continuing line is followed by the next line in the same entry; the
    first line that does not continue ends the entry, which is closed at once. (``pattern:
    '\\\\$'`` joins lines ending in a backslash to the next line.)

A line that would continue an entry but would take it past ``max_lines`` lines or
``max_bytes`` bytes (its span: the lines and their newlines) closes that entry (reason
``max_lines`` / ``max_bytes``) and starts a new one: nothing is dropped. One line longer than
``max_bytes`` is an entry of its own (the source already cut it at ``max_line_bytes``). A line
with nothing open starts an entry whatever it matches.

An open entry that got no new line for ``timeout_s`` is *due*: the caller closes it with
:meth:`LineJoiner.flush` (reason ``timeout``), as at the end of a stream that will not grow
any more (``end_of_stream``). Close reasons are the closed set :data:`CLOSE_REASONS`;
``complete`` is an entry closed by the rule itself.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from typing import NamedTuple, Protocol

from logcap.sources.line_automaton import LinesAutomaton, compile_lines_automaton, stops

__all__ = [
    "CLOSE_REASONS",
    "COMPLETE",
    "END_OF_STREAM",
    "MAX_BYTES",
    "MAX_LINES",
    "TIMEOUT",
    "JoinCounts",
    "JoinedEntries",
    "JoinedEntry",
    "LineJoiner",
    "MultilineRule",
    "MultilineSpec",
]

COMPLETE = "complete"
MAX_LINES = "max_lines"
MAX_BYTES = "max_bytes"
TIMEOUT = "timeout"
END_OF_STREAM = "end_of_stream"
CLOSE_REASONS = (COMPLETE, MAX_LINES, MAX_BYTES, TIMEOUT, END_OF_STREAM)
"""Why an entry was closed (the ``reason`` label of ``logcap_source_multiline_entries_total``)."""


class MultilineSpec(Protocol):
    """What a rule is compiled from (``logcap.config.sources.MultilineConfig`` has this shape):
    ``firstline`` or ``pattern`` (the other empty), ``negate`` and ``match`` for ``pattern``,
    the caps, and the timeout in seconds."""

    @property
    def firstline(self) -> str: ...

    @property
    def pattern(self) -> str: ...

    @property
    def negate(self) -> bool: ...

    @property
    def match(self) -> str: ...

    @property
    def max_lines(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...

    @property
    def timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MultilineRule:
    """A compiled rule: a line continues the open entry when ``regex`` finds a match, unless
    ``negate`` (``firstline`` is ``negate=True, after=True``); ``after`` is ``match: after``.
    ``automaton`` decides the searches of a run of lines at once when the pattern allows it
    (:mod:`logcap.sources.line_automaton`; None: searched line by line)."""

    regex: re.Pattern[str]
    negate: bool = True
    after: bool = True
    max_lines: int = 500
    max_bytes: int = 256 * 1024
    timeout_s: float = 5.0
    automaton: LinesAutomaton | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_lines < 1 or self.max_bytes < 1 or self.timeout_s <= 0:
            raise ValueError("max_lines, max_bytes and timeout must be positive")
        object.__setattr__(self, "automaton", compile_lines_automaton(self.regex))

    @classmethod
    def of(cls, spec: MultilineSpec) -> MultilineRule:
        """The rule of a config's ``multiline`` section (validated there: exactly one of
        ``firstline`` and ``pattern``)."""
        if spec.firstline:
            return cls(re.compile(spec.firstline), True, True, spec.max_lines, spec.max_bytes,
                       spec.timeout)
        return cls(re.compile(spec.pattern), spec.negate, spec.match == "after",
                   spec.max_lines, spec.max_bytes, spec.timeout)

    def continues(self, line: str) -> bool:
        """Whether ``line`` continues an entry (module docstring)."""
        return (self.regex.search(line) is None) is self.negate


class JoinedEntry(NamedTuple):
    """A closed entry: its text, its span ``[start, end)``, its line count, and why it was
    closed (one of :data:`CLOSE_REASONS`)."""

    text: str
    start: int
    end: int
    lines: int
    reason: str


@dataclass(slots=True)
class JoinedEntries:
    """Entries closed by a run of lines, oldest first, column by column: entry ``i`` is
    ``texts[i]``, ``starts[i]``, ``ends[i]``, ``lines[i]``, ``reasons[i]`` (the fields of
    :class:`JoinedEntry`). The read path makes no object per entry: a file read hands
    ``texts`` and ``starts`` on as they are. Iterating gives :class:`JoinedEntry` s."""

    texts: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[JoinedEntry]:
        return map(JoinedEntry, self.texts, self.starts, self.ends, self.lines, self.reasons)

    def append(self, entry: JoinedEntry) -> None:
        self.texts.append(entry.text)
        self.starts.append(entry.start)
        self.ends.append(entry.end)
        self.lines.append(entry.lines)
        self.reasons.append(entry.reason)


class LineJoiner:
    """Joins one stream's lines by a :class:`MultilineRule` (module docstring). Not
    thread-safe: one joiner per stream."""

    __slots__ = ("_end", "_fed_at", "_lines", "_start", "rule")

    def __init__(self, rule: MultilineRule) -> None:
        self.rule = rule
        self._lines: list[str] = []
        self._start = 0
        self._end = 0
        self._fed_at = 0.0

    @property
    def holding(self) -> bool:
        """Whether an entry is open."""
        return bool(self._lines)

    @property
    def open_start(self) -> int | None:
        """Where the open entry starts (None: nothing open)."""
        return self._start if self._lines else None

    @property
    def open_lines(self) -> int:
        return len(self._lines)

    def feed(self, line: str, start: int, end: int, now: float) -> list[JoinedEntry]:
        """Add the next line (spanning ``[start, end)``, read at ``now``); returns the entries
        it closed, oldest first (none, one, or, with ``match: before`` and a cap, two)."""
        rule = self.rule
        closed: list[JoinedEntry] = []
        self._fed_at = now
        if not self._lines:
            self._open(line, start, end)
            if not rule.after and not rule.continues(line):
                closed.append(self._close(COMPLETE))
            return closed
        if rule.after and not rule.continues(line):
            closed.append(self._close(COMPLETE))
            self._open(line, start, end)
            return closed
        if len(self._lines) >= rule.max_lines:
            closed.append(self._close(MAX_LINES))
            self._open(line, start, end)
        elif end - self._start > rule.max_bytes:
            closed.append(self._close(MAX_BYTES))
            self._open(line, start, end)
        else:
            self._lines.append(line)
            self._end = end
        if not rule.after and not rule.continues(line):
            closed.append(self._close(COMPLETE))
        return closed

    def feed_lines(self, lines: list[str], starts: list[int], end: int, now: float
                   ) -> JoinedEntries:
        """:meth:`feed` for a run of lines at once (line ``i`` spans ``[starts[i],
        starts[i + 1])``, the last one ``[starts[-1], end)``); the same entries, faster: when
        no cap is reached, entries are cut where one pass over the lines finds the lines that
        do not continue (with ``match: after`` an entry starts at such a line, with
        ``before`` one ends with it; by the rule's automaton when it has one, see
        :func:`~logcap.sources.line_automaton.stops`), and only the entries of several lines
        are joined."""
        if not lines:
            return JoinedEntries()
        rule = self.rule
        fast = self._feed_cut(lines, starts, end, now, stops(
            rule.regex, rule.automaton, lines, rule.negate, 0 if rule.after else 1))
        if fast is not None:
            return fast
        closed = JoinedEntries()
        last = len(lines) - 1
        for i, line in enumerate(lines):
            for entry in self.feed(line, starts[i], starts[i + 1] if i < last else end, now):
                closed.append(entry)
        return closed

    def _feed_cut(self, lines: list[str], starts: list[int], end: int, now: float,
                  cuts: list[int]) -> JoinedEntries | None:
        """The fast path of :meth:`feed_lines`: an entry ends before each line index in
        ``cuts`` (ascending, from 0 to ``len(lines)``); None when a cap would cut an entry
        (the caller then feeds line by line)."""
        n = len(lines)
        held = len(self._lines)
        # Piece k is lines [bounds[k], bounds[k + 1]): piece 0 goes to the open entry (if
        # any), each piece that ends at a cut is closed, the last one stays open.
        bounds = [0, *cuts, n]
        at = [*starts, end]
        pos = list(map(at.__getitem__, bounds))
        sizes = list(map(operator.sub, bounds[1:], bounds))
        max_lines, max_bytes = self.rule.max_lines, self.rule.max_bytes
        grows = held and sizes[0]  # piece 0 grows the open entry
        if grows:
            sizes[0] += held
        # no piece is longer than all the lines, nor spans more than all of them: the caps
        # are checked piece by piece only when the whole could pass them
        if held + n > max_lines and max(sizes) > max_lines:
            return None
        if end - (self._start if grows else pos[0]) > max_bytes:
            spans = list(map(operator.sub, pos[1:], pos))
            if grows:
                spans[0] = pos[1] - self._start
            if any(span > max_bytes and size > 1
                   for span, size in zip(spans, sizes, strict=True)):
                return None
        self._fed_at = now
        closed = JoinedEntries()
        if sizes[0]:
            if held:
                self._lines.extend(lines[:bounds[1]])
            else:
                self._lines = lines[:bounds[1]]
                self._start = pos[0]
            self._end = pos[1]
        if not cuts:
            return closed
        if self._lines:
            closed.append(self._close(COMPLETE))
        last = len(cuts)  # pieces 1 .. last - 1 are closed, piece ``last`` stays open
        if last > 1:
            heads = bounds[1:last]
            sizes = sizes[1:last]
            texts = list(map(lines.__getitem__, heads))  # right for one line
            for k in compress(count(), map(operator.ne, sizes, repeat(1))):
                texts[k] = "\n".join(lines[heads[k]:bounds[k + 2]])
            closed.texts += texts
            closed.starts += pos[1:last]
            closed.ends += pos[2:last + 1]
            closed.lines += sizes
            closed.reasons += [COMPLETE] * len(texts)
        if bounds[last] < n:
            self._lines = lines[bounds[last]:]
            self._start = pos[last]
            self._end = end
        return closed

    def due(self, now: float) -> bool:
        """Whether an open entry got no line for the rule's timeout."""
        return bool(self._lines) and now - self._fed_at >= self.rule.timeout_s

    def flush(self, reason: str) -> JoinedEntry | None:
        """Close the open entry now (``timeout`` or ``end_of_stream``); None if none is
        open."""
        if reason not in CLOSE_REASONS:
            raise ValueError(f"unknown close reason {reason!r}")
        return self._close(reason) if self._lines else None

    def reset(self) -> None:
        """Forget the open entry (its lines will be fed again)."""
        self._lines = []

    def _open(self, line: str, start: int, end: int) -> None:
        self._lines = [line]
        self._start = start
        self._end = end

    def _close(self, reason: str) -> JoinedEntry:
        lines = self._lines
        self._lines = []
        text = lines[0] if len(lines) == 1 else "\n".join(lines)
        return JoinedEntry(text, self._start, self._end, len(lines), reason)


class JoinCounts:
    """Entries closed, by reason, since the last :meth:`take` (and in total)."""

    __slots__ = ("_new", "total")

    def __init__(self) -> None:
        self._new: Counter[str] = Counter()
        self.total: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        self._new[reason] += n
        self.total[reason] += n

    def add_all(self, counts: Counter[str]) -> None:
        self._new.update(counts)
        self.total.update(counts)

    def take(self) -> dict[str, int]:
        """The counts added since the last call."""
        if not self._new:
            return {}  # the common case (no multiline rule): no new Counter per read
        new, self._new = dict(self._new), Counter()
        return new
