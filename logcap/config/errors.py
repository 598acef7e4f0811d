"""Configuration errors: what the loader reports and how each message reads.

A problem is a :class:`ConfigIssue`: a *path* and a *reason*. Paths are key paths such as
``sinks.loki.batch_wait`` or ``sources.files[1].include`` (built with :func:`join_path`), or one
of the pseudo-paths ``<file>`` (reading the file), ``<yaml>`` (parsing it) and ``<root>`` (the
document as a whole, and the path of an issue reported at ``""``). The loader collects every
issue in an :class:`IssueCollector`, in the order found, and raises one :class:`ConfigError`
carrying them all, rendered one per line as ``config error: <path>: <reason>``.

The collector also keeps, per path, a *note* on where a value came from (an expanded ``${VAR}``
or an environment override); it is appended to any reason reported at that path, e.g.
``expected an integer, got a string 'x' (from '${PORT}')``. It remembers which paths failed, so
that the decoder does not decode a value that already had an issue and does not report an
invariant that uses a key with an issue of its own: one mistake gives one message.

The ``describe``/``hint`` helpers phrase values in messages the same way everywhere: ``null``,
``a boolean (true)``, ``an integer (3)``, ``a string 'x'``, ``a list``, ``a mapping``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "IssueCollector",
    "describe",
    "did_you_mean",
    "join_path",
    "quote_hint",
]


@attrs.frozen
class ConfigIssue:
    """One problem: where (a key path, or ``<file>``, ``<yaml>``, ``<root>``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` holds every problem found, in the order found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__(issues)
        self.issues = list(issues)

    def __str__(self) -> str:
        return "\n".join(f"config error: {issue}" for issue in self.issues)


class IssueCollector:
    """Collects issues in order; remembers failed paths and per-path notes (where a value
    came from: an expanded ``${VAR}`` or an environment override)."""

    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []
        self.notes: dict[str, str] = {}
        self.expanded: set[str] = set()
        """Paths whose value came from a ``${...}`` expansion (the field then types the text)."""
        self._failed: set[str] = set()

    def add(self, path: str, reason: str) -> None:
        note = self.notes.get(path)
        self.items.append(ConfigIssue(path or "<root>", f"{reason} ({note})" if note else reason))
        self._failed.add(path)

    def reported(self, path: str) -> bool:
        """Whether ``path`` itself already had an issue (so its value is not to be decoded)."""
        return path in self._failed

    def failed(self, path: str) -> bool:
        """Whether ``path``, a key inside it, or a section around it had an issue."""
        return any(_related(path, failed) for failed in self._failed)


def _related(path: str, other: str) -> bool:
    if path == other:
        return True
    shorter, longer = sorted((path, other), key=len)
    return not shorter or (longer.startswith(shorter) and longer[len(shorter)] in ".[")


def join_path(path: str, key: str) -> str:
    """``path.key``; either may be empty (the root, or the section itself)."""
    return f"{path}.{key}" if path and key else path or key


def describe(value: Any) -> str:
    """A parsed YAML value as a message shows it: its type, and the value when short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value!r})"


def quote_hint(value: Any) -> str:
    """A hint for a scalar YAML read as a number or boolean where a string was wanted."""
    if isinstance(value, bool | int | float):
        return " (quote it to make it a string)"
    return ""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or ``""`` if none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
