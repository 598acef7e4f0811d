r"""The literal texts every match of a regular expression starts with, when it has some.

:func:`match_prefixes` reads the expression's parse tree (Python's own regex parser) and
answers a small set of strings such that every match of the expression begins with one of
them, or None when it cannot tell (an anchor, a character class with ranges or categories, a
case-insensitive literal, a repeat that may be empty of more than one item... at the start).
Only what the tree proves is used: literals, classes of single literal characters, groups,
alternatives, ``x?`` over such items and the first item of a repeat of at least one.

``(?:request |method=)(?P<method>\w+)`` gives ``("request ", "method=")``;
``[cC](?:all|ALL)[-_]?id`` gives the eight spellings up to ``id``; ``^\d+`` gives None.

This is exact, so a regex stage may rely on it (:mod:`logcap.pipeline.stages.parse`): a text
containing none of the prefixes has no match, and a search from the first place where one
occurs finds the same first match as a search from the start (lookbehinds and ``\b`` still see
the characters before that place).
"""

from __future__ import annotations

from collections.abc import Sequence
from re import _constants as _sre  # type: ignore[attr-defined]  # CPython's own regex parser
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_PREFIXES", "MERGED_PREFIX", "match_prefixes"]

MAX_PREFIXES = 16
"""More alternatives than this at one point: the prefixes stop before it (shorter, still
exact)."""

MERGED_PREFIX = 3
"""Two prefixes sharing at least this many first characters (and two thirds of the shorter)
are looked for as their shared start."""

_Found = tuple[set[str], bool]  # the strings; whether a match of the items is one of them whole


def match_prefixes(expression: str) -> tuple[str, ...] | None:
    """Strings every match of ``expression`` starts with (module docstring), few (two that
    share most of their start become that shared start; none starts with another), sorted;
    None when unknown."""
    try:
        parsed = _sre_parse.parse(expression)
    except Exception:  # an invalid expression is reported by the config
        return None
    if parsed.state.flags & _sre.SRE_FLAG_IGNORECASE:
        return None
    strings, _whole = _sequence(list(parsed.data))
    if not strings or "" in strings:
        return None
    # fewer strings to look for: two that share at least MERGED_PREFIX first characters, and
    # two thirds of the shorter, are replaced by that shared start (a start of every match)
    merged: list[str] = []
    for s in sorted(strings):
        if merged:
            shared = _shared_start(merged[-1], s)
            if len(shared) >= MERGED_PREFIX and \
                    3 * len(shared) >= 2 * min(len(merged[-1]), len(s)):
                merged[-1] = shared
                continue
        merged.append(s)
    cover = sorted(merged, key=len)
    kept: list[str] = []
    for s in cover:
        if not any(s.startswith(k) for k in kept):
            kept.append(s)
    return tuple(sorted(kept))


def _shared_start(a: str, b: str) -> str:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return a[:n]


def _sequence(items: Sequence[tuple[Any, Any]]) -> _Found:
    """The prefixes of a sequence of items: each item's strings appended to the ones before,
    until an item is not known or not whole."""
    out = {""}
    for op, av in items:
        found = _item(op, av)
        if found is None:
            return out, False
        strings, whole = found
        longer = {a + b for a in out for b in strings}
        if len(longer) > MAX_PREFIXES:
            return out, False
        out = longer
        if not whole:
            return out, False
    return out, True


def _item(op: Any, av: Any) -> _Found | None:
    if op is _sre.LITERAL:
        return {chr(av)}, True
    if op is _sre.IN:
        if all(o is _sre.LITERAL for o, _ in av):
            return {chr(c) for _, c in av}, True
        return None
    if op is _sre.BRANCH:
        union: set[str] = set()
        whole = True
        for alternative in av[1]:
            strings, alt_whole = _sequence(list(alternative))
            if strings == {""} and not alt_whole:
                return None  # an alternative that starts with something unknown
            union |= strings
            whole = whole and alt_whole
        return union, whole
    if op is _sre.SUBPATTERN:
        _group, add_flags, _del_flags, sub = av
        if add_flags & _sre.SRE_FLAG_IGNORECASE:
            return None
        strings, whole = _sequence(list(sub))
        return None if strings == {""} and not whole else (strings, whole)
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _POSSESSIVE):
        low, high, sub = av
        strings, whole = _sequence(list(sub))
        if strings == {""}:
            return None
        if low == 0 and high == 1 and whole:
            return strings | {""}, True  # x?: x, or nothing
        if low >= 1:
            return strings, False  # starts with one x
        return None
    return None


_POSSESSIVE = getattr(_sre, "POSSESSIVE_REPEAT", object())
