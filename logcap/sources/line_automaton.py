r"""Which lines a multiline rule's regex finds a match in, decided by a small automaton.

A multiline rule searches its pattern in every line (``regex.search(line)``), and that search,
not the joining, is most of what joining costs (about 2.5k instructions per line in CPython's
``re``, half of it the call around the match). :func:`compile_lines_automaton` reads the
pattern's parse tree (Python's own regex parser, as :mod:`logcap.pipeline.literals` does) and,
when the pattern is made only of what a finite automaton decides exactly, builds one
(Glushkov's construction: one state per character the pattern consumes, at most
:data:`MAX_STATES`): literals, ``.``, character classes, groups, alternatives and greedy or lazy
repeats, optionally ``^`` / ``\A`` first and ``$`` / ``\Z`` last. Whether a search finds *a*
match depends only on the language of the pattern for these (backtracking tries every way), so
the automaton answers what ``search`` answers. Anything else (a flag other than ``DOTALL``,
``ASCII`` or ``VERBOSE``, an inline flag group, lookarounds, ``\b``, backreferences, atomic
groups and possessive repeats, an anchor elsewhere, too many states) gives None: the rule keeps
searching line by line.

The automaton knows the classes on ASCII characters only. :func:`stops` (compiled in C,
``_line_automaton.c``) runs it over each line and asks ``regex.search`` itself for a line
where it reaches a character past ASCII (or, with ``$``, a line ending in ``\n``): the answer
is the search's in every case. Where the C module is not built, :func:`stops` is its
specification, the line-by-line search.
"""

from __future__ import annotations

import importlib
import operator
import re
import struct
from collections.abc import Iterator
from itertools import compress, count
from re import _constants as _sre  # type: ignore[attr-defined]  # CPython's own regex parser
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from types import ModuleType
from typing import Any

__all__ = ["COMPILED", "MAX_STATES", "LinesAutomaton", "compile_lines_automaton", "stops"]

MAX_STATES = 64
"""States of an automaton at most (one 64-bit word per set of states)."""

ASCII = 128
_ALL = (1 << ASCII) - 1
_ANCHORED, _END, _END_STRING = 1, 2, 4  # the header's flags (as in _line_automaton.c)
_ALLOWED_FLAGS = re.DOTALL | re.ASCII | re.VERBOSE | re.UNICODE


def _compiled_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


COMPILED = _compiled_module("logcap.sources._line_automaton")
"""The compiled runner (:mod:`logcap.sources._line_automaton`), None where it was not built."""


class LinesAutomaton:
    """A pattern's automaton (module docstring), packed for ``_line_automaton.c``: eight
    little 64-bit words (states, flags, whether the empty string matches, the first states,
    the last states, three unused), then one word per state (the states that may follow it),
    then one per ASCII character (the states whose class holds it)."""

    __slots__ = ("packed", "regex")

    def __init__(self, regex: re.Pattern[str], packed: bytes) -> None:
        self.regex = regex
        self.packed = packed


_Fragment = tuple[int, int, bool]  # first states, last states, matches the empty string


class _Glushkov:
    """Glushkov's construction over a parse tree: ``classes[p]`` is the ASCII set (a 128-bit
    int) of state ``p``, ``follow[p]`` the states that may come after it. A fragment is
    ``(first, last, nullable)``: the states it may start and end with (bit masks), and whether
    it matches the empty string."""

    def __init__(self, flags: int) -> None:
        self.classes: list[int] = []
        self.follow: list[int] = []
        self.dotall = bool(flags & re.DOTALL)
        self.ascii = bool(flags & re.ASCII)

    def sequence(self, items: list[tuple[Any, Any]]) -> _Fragment:
        return self.concat([self.item(op, av) for op, av in items])

    def concat(self, parts: list[_Fragment]) -> _Fragment:
        """The fragments one after the other (each part's last states lead to the next
        one's first, and past a nullable part to the one after)."""
        first, last, nullable = 0, 0, True
        for part_first, part_last, part_nullable in parts:
            for p in _bits(last):
                self.follow[p] |= part_first
            first |= part_first if nullable else 0
            last = part_last | (last if part_nullable else 0)
            nullable = nullable and part_nullable
        return first, last, nullable

    def item(self, op: Any, av: Any) -> _Fragment:
        if op is _sre.LITERAL:
            return self.state(_char(av))
        if op is _sre.NOT_LITERAL:
            return self.state(_ALL & ~_char(av))
        if op is _sre.ANY:
            return self.state(_ALL if self.dotall else _ALL & ~_char(10))
        if op is _sre.IN:
            return self.state(self.char_class(av))
        if op is _sre.BRANCH:
            first = last = 0
            nullable = False
            for alternative in av[1]:
                alt_first, alt_last, alt_nullable = self.sequence(list(alternative))
                first, last = first | alt_first, last | alt_last
                nullable = nullable or alt_nullable
            return first, last, nullable
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise _Unsupported
            return self.sequence(list(sub))
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = av
            return self.repeat(low, high, list(sub))
        raise _Unsupported

    def repeat(self, low: int, high: int, sub: list[tuple[Any, Any]]) -> _Fragment:
        """``sub{low,high}`` as ``low`` copies, then ``high - low`` optional ones (the same
        language as nested options) or one looping copy when unbounded."""
        if low > MAX_STATES or (high is not _sre.MAXREPEAT and high > MAX_STATES):
            raise _Unsupported
        parts = [self.sequence(sub) for _ in range(low)]
        if high is _sre.MAXREPEAT:
            if parts:
                first, last, _n = parts[-1]
            else:
                first, last, _n = self.sequence(sub)
                parts.append((first, last, True))
            for p in _bits(last):
                self.follow[p] |= first
        else:
            for _ in range(high - low):
                first, last, _n = self.sequence(sub)
                parts.append((first, last, True))
        return self.concat(parts)

    def state(self, ascii_set: int) -> _Fragment:
        p = len(self.classes)
        if p >= MAX_STATES:
            raise _Unsupported
        self.classes.append(ascii_set)
        self.follow.append(0)
        return 1 << p, 1 << p, False

    def char_class(self, items: list[tuple[Any, Any]]) -> int:
        out = 0
        negate = False
        for op, av in items:
            if op is _sre.NEGATE:
                negate = True
            elif op is _sre.LITERAL:
                out |= _char(av)
            elif op is _sre.RANGE:
                low, high = av
                if low < ASCII:
                    out |= ((1 << (min(high, ASCII - 1) + 1)) - 1) & ~((1 << low) - 1)
            elif op is _sre.CATEGORY and av in _CATEGORIES:
                out |= _category(_CATEGORIES[av], self.ascii)
            else:
                raise _Unsupported
        return _ALL & ~out if negate else out


class _Unsupported(Exception):
    """A construct the automaton does not decide."""


_CATEGORIES = {_sre.CATEGORY_DIGIT: r"\d", _sre.CATEGORY_NOT_DIGIT: r"\D",
               _sre.CATEGORY_SPACE: r"\s", _sre.CATEGORY_NOT_SPACE: r"\S",
               _sre.CATEGORY_WORD: r"\w", _sre.CATEGORY_NOT_WORD: r"\W"}


def _category(escape: str, ascii_only: bool) -> int:
    """The ASCII characters ``escape`` matches, asked of ``re`` itself."""
    regex = re.compile(escape, re.ASCII if ascii_only else 0)
    return sum(1 << c for c in range(ASCII) if regex.fullmatch(chr(c)))


def _char(code: int) -> int:
    return 1 << code if code < ASCII else 0


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def compile_lines_automaton(regex: re.Pattern[str]) -> LinesAutomaton | None:
    """The automaton deciding ``regex.search(line)`` (module docstring); None when the
    pattern is not one it decides exactly."""
    if not isinstance(regex.pattern, str) or regex.flags & ~_ALLOWED_FLAGS:
        return None
    try:
        parsed = _sre_parse.parse(regex.pattern, regex.flags)
    except Exception:  # anything the parser refuses stays with re
        return None
    items = list(parsed.data)
    flags = 0
    if items and items[0] in ((_sre.AT, _sre.AT_BEGINNING), (_sre.AT, _sre.AT_BEGINNING_STRING)):
        flags |= _ANCHORED
        items = items[1:]
    if items and items[-1] == (_sre.AT, _sre.AT_END):
        flags |= _END
        items = items[:-1]
    elif items and items[-1] == (_sre.AT, _sre.AT_END_STRING):
        flags |= _END_STRING
        items = items[:-1]
    built = _Glushkov(parsed.state.flags)
    try:
        first, last, nullable = built.sequence(items)
    except _Unsupported:
        return None
    by_char = [sum(1 << p for p, members in enumerate(built.classes) if members >> c & 1)
               for c in range(ASCII)]
    packed = struct.pack(f"<8Q{len(built.follow)}Q{ASCII}Q", len(built.classes), flags,
                         int(nullable), first, last, 0, 0, 0, *built.follow, *by_char)
    return LinesAutomaton(regex, packed)


def stops(regex: re.Pattern[str], automaton: LinesAutomaton | None, lines: list[str],
          on_match: bool, first: int) -> list[int]:
    """``first + i`` for each line ``i`` where ``regex.search`` finds a match (``on_match``)
    or finds none (not ``on_match``), ascending: run by the compiled automaton when there is
    one, else searched line by line (the specification)."""
    if automaton is not None and COMPILED is not None:
        stopped: list[int] = COMPILED.stops(automaton.packed, lines, on_match, first,
                                             regex.search)
        return stopped
    found = map(regex.search, lines)  # a match object is true
    return list(compress(count(first), found if on_match else map(operator.not_, found)))
