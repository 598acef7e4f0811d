"""Loki stream labels: sanitised names, Prometheus-style rendering, and cardinality guards.

Rules, in the order :meth:`LabelPolicy.build` applies them:

1. **Reserved names.** A name that starts with ``__`` is internal by Prometheus convention
   (``__path__``, ``__meta_*``) and is dropped, counted as ``invalid``.
2. **Sanitising.** A name must match ``[a-zA-Z_][a-zA-Z0-9_]*``: every other character becomes
   ``_``, a leading digit gets a ``_`` prefix, and a result that starts with ``__`` is cut back to
   one leading ``_`` (so sanitising never makes a reserved name). Counted as ``sanitized``.
   An empty name is dropped (``invalid``). Names longer than 1024 bytes are cut (Loki's limit).
3. **Empty values** are dropped silently: Loki treats an empty value as an absent label.
   Values longer than ``max_value_bytes`` (Loki's default limit, 2048 bytes) are cut at a
   character boundary, counted as ``truncated``. A U+FFFD replacement character in a value
   becomes ``?``: Loki's label lexer refuses it, and with JSON pushes Loki writes the label
   string itself, so escaping cannot help there.
4. **Collisions.** Static labels (the sink's configured ones) win over dynamic labels of the
   same name; two dynamic names that sanitise to the same name keep the smaller original name.
   The losers are counted as ``invalid``.
5. **Cap.** At most ``max_labels`` labels (default 15, Loki's ``max_label_names_per_series``):
   static labels first, in configured order, then dynamic labels sorted by name. Whatever does
   not fit is counted as ``dropped``. The subset kept is deterministic for a given input.

:func:`render_labels` writes the Loki/Prometheus label string ``{a="x", b="y"}``: names sorted,
values escaped as Prometheus does (backslash, double quote, newline). :func:`parse_labels` reads
that format back.

:class:`StreamLimiter` caps the number of distinct streams. Up to ``max_streams`` label sets are
admitted; a new label set beyond that is folded into the overflow stream (the static labels plus
``logcap_overflow="true"``) and counted, instead of becoming a new stream. A stream idle for
``idle_timeout_s`` gives its place up to a new one, as Loki forgets idle streams.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_MAX_LABELS",
    "DEFAULT_MAX_LABEL_NAME_BYTES",
    "DEFAULT_MAX_LABEL_VALUE_BYTES",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_STREAM_IDLE_TIMEOUT_S",
    "OVERFLOW_LABEL",
    "LabelPolicy",
    "StreamLabels",
    "StreamLimiter",
    "escape_label_value",
    "is_valid_label_name",
    "parse_labels",
    "render_labels",
    "sanitize_label_name",
]

DEFAULT_MAX_LABELS = 15
DEFAULT_MAX_LABEL_NAME_BYTES = 1024
DEFAULT_MAX_LABEL_VALUE_BYTES = 2048
DEFAULT_MAX_STREAMS = 10_000
DEFAULT_STREAM_IDLE_TIMEOUT_S = 3600.0
OVERFLOW_LABEL = "logcap_overflow"

_VALID_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INVALID_CHAR = re.compile(r"[^a-zA-Z0-9_]")
_CACHE_SIZE = 4096


def is_valid_label_name(name: str) -> bool:
    """Whether ``name`` matches ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return _VALID_NAME.fullmatch(name) is not None


@lru_cache(maxsize=_CACHE_SIZE)
def sanitize_label_name(name: str) -> str:
    """``name`` made valid (rule 2 above); ``""`` when nothing is left of it."""
    if _VALID_NAME.fullmatch(name) and not name.startswith("__"):
        return name[:DEFAULT_MAX_LABEL_NAME_BYTES]
    fixed = _INVALID_CHAR.sub("_", name)
    if fixed[:1].isdigit():
        fixed = "_" + fixed
    if fixed.startswith("__"):
        fixed = "_" + fixed.lstrip("_")
    return fixed[:DEFAULT_MAX_LABEL_NAME_BYTES]


def escape_label_value(value: str) -> str:
    """Escape a label value as Prometheus does: backslash, double quote and newline.

    U+FFFD is written as ``\\ufffd`` too: Loki's label lexer (PromQL's) takes a literal
    replacement character for an invalid UTF-8 byte and refuses the whole label string.
    """
    if "\\" in value or '"' in value or "\n" in value or "\ufffd" in value:
        return (
            value.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\ufffd", "\\ufffd")
        )
    return value


def render_labels(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The Loki label string ``{a="x", b="y"}``, names sorted. Names are used as given."""
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    body = ", ".join(f'{name}="{escape_label_value(value)}"' for name, value in sorted(pairs))
    return "{" + body + "}"


_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_labels_cached(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    n = len(text)
    i = 0

    def skip_spaces(j: int) -> int:
        while j < n and text[j] in " \t":
            j += 1
        return j

    def fail(why: str) -> ValueError:
        return ValueError(f"bad label string {text!r} at {i}: {why}")

    i = skip_spaces(i)
    if i >= n or text[i] != "{":
        raise fail("expected '{'")
    i = skip_spaces(i + 1)
    while i < n and text[i] != "}":
        m = _VALID_NAME.match(text, i)
        if m is None:
            raise fail("expected a label name")
        name = m.group()
        i = skip_spaces(m.end())
        if i >= n or text[i] != "=":
            raise fail("expected '='")
        i = skip_spaces(i + 1)
        if i >= n or text[i] != '"':
            raise fail("expected '\"'")
        i += 1
        chars: list[str] = []
        while True:
            if i >= n:
                raise fail("unterminated value")
            c = text[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                esc = text[i + 1 : i + 2]
                if esc == "u" and _HEX4.fullmatch(text, i + 2, i + 6):
                    chars.append(chr(int(text[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                if esc not in _UNESCAPE or not esc:
                    raise fail("bad escape")
                chars.append(_UNESCAPE[esc])
                i += 2
                continue
            chars.append(c)
            i += 1
        pairs.append((name, "".join(chars)))
        i = skip_spaces(i)
        if i < n and text[i] == ",":
            i = skip_spaces(i + 1)
        elif i < n and text[i] != "}":
            raise fail("expected ',' or '}'")
    if i >= n:
        raise fail("expected '}'")
    if skip_spaces(i + 1) != n:
        raise fail("trailing characters")
    return tuple(pairs)


def parse_labels(text: str) -> dict[str, str]:
    """Read a label string written by :func:`render_labels` back into a dict."""
    return dict(_parse_labels_cached(text))


def _truncate_utf8(value: str, max_bytes: int) -> str:
    if len(value) * 4 <= max_bytes:
        return value
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return value
    return encoded[:max_bytes].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class StreamLabels:
    """The label set of one stream and what building it cost.

    ``labels`` are sorted by name; ``rendered`` is their Loki string. The counters say how
    many input labels were dropped by the cap (``dropped``), refused as reserved, empty-named
    or colliding (``invalid``), renamed (``sanitized``), or had their value cut (``truncated``).
    """

    rendered: str
    labels: tuple[tuple[str, str], ...]
    dropped: int = 0
    invalid: int = 0
    sanitized: int = 0
    truncated: int = 0


class LabelPolicy:
    """Turns a stream's dynamic labels, plus the configured static ones, into a capped set.

    Results are memoised (a bounded cache keyed by the input pairs), so calling :meth:`build`
    once per batch and stream key is cheap.
    """

    def __init__(
        self,
        static_labels: Mapping[str, str] | None = None,
        *,
        max_labels: int = DEFAULT_MAX_LABELS,
        max_value_bytes: int = DEFAULT_MAX_LABEL_VALUE_BYTES,
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        if max_labels < 1:
            raise ValueError(f"max_labels must be at least 1, got {max_labels}")
        self.max_labels = max_labels
        self.max_value_bytes = max_value_bytes
        self._cache: dict[tuple[tuple[str, str], ...], StreamLabels] = {}
        self._cache_size = cache_size
        static: dict[str, str] = {}
        for name, value in (static_labels or {}).items():
            fixed = sanitize_label_name(name) if not name.startswith("__") else ""
            if fixed and value and fixed not in static:
                static[fixed] = _truncate_utf8(value, max_value_bytes).replace("\ufffd", "?")
        self.static_labels: dict[str, str] = static
        overflow = dict(list(static.items())[: max_labels - 1])
        overflow[OVERFLOW_LABEL] = "true"
        self.overflow_labels: str = render_labels(overflow)

    def build(self, labels: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> StreamLabels:
        """The capped, sanitised label set for a stream with these dynamic ``labels``."""
        pairs = tuple(labels.items() if isinstance(labels, Mapping) else labels)
        cached = self._cache.get(pairs)
        if cached is not None:
            return cached
        result = self._build(pairs)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[pairs] = result
        return result

    def _build(self, pairs: tuple[tuple[str, str], ...]) -> StreamLabels:
        invalid = sanitized = truncated = 0
        candidates: list[tuple[str, str, str]] = []  # (sanitised name, original name, value)
        for name, value in pairs:
            if not value:
                continue
            if name.startswith("__"):
                invalid += 1
                continue
            fixed = sanitize_label_name(name)
            if not fixed:
                invalid += 1
                continue
            if fixed != name:
                sanitized += 1
            candidates.append((fixed, name, value))
        candidates.sort()
        kept: dict[str, str] = {}
        budget = self.max_labels
        dropped = 0
        for name, value in self.static_labels.items():
            if len(kept) < budget:
                kept[name] = value
            else:
                dropped += 1
        seen: set[str] = set()
        for fixed, _original, value in candidates:
            if fixed in seen or fixed in self.static_labels:
                invalid += 1
                continue
            seen.add(fixed)
            if len(kept) >= budget:
                dropped += 1
                continue
            cut = _truncate_utf8(value, self.max_value_bytes)
            if cut is not value:
                truncated += 1
            kept[fixed] = cut.replace("\ufffd", "?") if "\ufffd" in cut else cut
        ordered = tuple(sorted(kept.items()))
        return StreamLabels(
            rendered=render_labels(ordered),
            labels=ordered,
            dropped=dropped,
            invalid=invalid,
            sanitized=sanitized,
            truncated=truncated,
        )


class StreamLimiter:
    """Caps the number of distinct streams; the rest go to one overflow stream.

    :meth:`admit` returns the label string to send a group of lines under: the stream's own
    when it is known or there is room (or an idle stream can give its place up), the
    ``overflow_labels`` otherwise. ``folded_streams`` counts the refusals, ``folded_lines`` the
    lines they carried. Not thread-safe: one sink owns one limiter.
    """

    def __init__(
        self,
        overflow_labels: str,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {max_streams}")
        self.overflow_labels = overflow_labels
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._last_seen: OrderedDict[str, float] = OrderedDict()
        self.folded_streams = 0
        self.folded_lines = 0

    @property
    def active_streams(self) -> int:
        return len(self._last_seen)

    def admit(self, labels: str, lines: int = 1) -> str:
        """The label string these ``lines`` go out under (see the class docstring)."""
        if labels == self.overflow_labels:
            return labels
        now = self._clock()
        seen = self._last_seen
        if labels in seen:
            seen[labels] = now
            seen.move_to_end(labels)
            return labels
        if len(seen) >= self.max_streams:
            oldest, last = next(iter(seen.items()))
            if now - last < self.idle_timeout_s:
                self.folded_streams += 1
                self.folded_lines += lines
                return self.overflow_labels
            del seen[oldest]
        seen[labels] = now
        return labels

    def forget_idle(self) -> int:
        """Forget streams idle for ``idle_timeout_s``; returns how many were forgotten."""
        now = self._clock()
        seen = self._last_seen
        forgotten = 0
        while seen:
            oldest, last = next(iter(seen.items()))
            if now - last < self.idle_timeout_s:
                break
            del seen[oldest]
            forgotten += 1
        return forgotten
