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

import re
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CLOSE_REASONS",
    "COMPLETE",
    "END_OF_STREAM",
    "MAX_BYTES",
    "MAX_LINES",
    "TIMEOUT",
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
    ``negate`` (``firstline`` is ``negate=True, after=True``); ``after`` is ``match: after``."""

    regex: re.Pattern[str]
    negate: bool = True
    after: bool = True
    max_lines: int = 500
    max_bytes: int = 256 * 1024
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_lines < 1 or self.max_bytes < 1 or self.timeout_s <= 0:
            raise ValueError("max_lines, max_bytes and timeout must be positive")

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


@dataclass(frozen=True, slots=True)
class JoinedEntry:
    """A closed entry: its text, its span ``[start, end)``, its line count, and why it was
    closed (one of :data:`CLOSE_REASONS`)."""

    text: str
    start: int
    end: int
    lines: int
    reason: str


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
