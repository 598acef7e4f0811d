"""Parsing a log's own timestamps into Unix nanoseconds: the formats of the ``timestamp`` stage.

Every parser takes the text and a :class:`TimeContext` (the line's read time and the zone of
times written without an offset) and returns nanoseconds, or raises :class:`ValueError`.

Formats (:data:`TIME_FORMATS`):

* ``rfc3339``: RFC 3339 / ISO 8601, ``2026-12-01T20:34:47.146887+00:00``, ``...Z``, a space
  instead of ``T``, fractions to the nanosecond, ``+hh:mm``/``+hhmm``/``Z``; without an offset
  the configured zone applies.
* ``syslog``: ``Mmm dd HH:MM:SS`` (also ``Mmm  d``; optional fraction), no year: the year is
  the one of the three around the read time (last, this, next) that puts the time closest to
  the read time, so ``Dec 31 23:59:59`` read on Jan 1 is last year's.
* ``mysql``: ``YYMMDD HH:MM:SS`` (MariaDB's slow log and MySQL 5's error log; the hour may be
  one digit padded with a space) or ``YYYY-MM-DD HH:MM:SS`` (MariaDB's error log), optional
  fraction, in the configured zone; also MySQL 8's ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (with an
  offset, the offset applies).
* ``unix``, ``unix_ms``, ``unix_us``, ``unix_ns``: a number of seconds (fraction allowed),
  milliseconds, microseconds or nanoseconds since the epoch.

Conversions of the same second text are cached (:class:`SecondCache`): consecutive lines of a
log share their second, so the calendar arithmetic runs about once per second of log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

__all__ = ["TIME_FORMATS", "SecondCache", "TimeContext", "TimeParser", "parse_time", "zone"]

NS = 1_000_000_000
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimeContext:
    """What a parser needs besides the text: the line's read time and the default zone."""

    read_ns: int
    tz: tzinfo


def zone(name: str) -> tzinfo:
    """The zone named ``name`` (``UTC``, ``Europe/Lisbon``, ``+01:00``); ValueError if unknown."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    offset = re.fullmatch(r"([+-])(\d\d):?(\d\d)", name)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(offset.group(2)),
                                         minutes=int(offset.group(3))))
    # zoneinfo (and the sysconfig it reads for the zone path) is imported by the first named
    # zone, not by every agent
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (e.g. UTC, Europe/Lisbon, +01:00)") \
            from exc


def _ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def _fraction_ns(fraction: str | None) -> int:
    if not fraction:
        return 0
    return int(fraction[:9].ljust(9, "0"))


def _offset(text: str | None, default: tzinfo) -> tzinfo:
    """The zone of an offset suffix (``Z``, ``+01:00``, ``-0500``, ``+01``), else ``default``."""
    if text is None:
        return default
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))


_RFC3339 = re.compile(
    r"\s*(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"\s*(Z|z|[+-]\d\d:?\d\d|[+-]\d\d)?\s*")


def _rfc3339(text: str, ctx: TimeContext) -> int:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s, frac, off = m.groups()
    moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=_offset(off, ctx.tz))
    return _ns(moment) + _fraction_ns(frac)


_SYSLOG = re.compile(r"\s*([A-Z][a-z]{2})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*")


def _syslog(text: str, ctx: TimeContext) -> int:
    m = _SYSLOG.fullmatch(text)
    if m is None or m.group(1) not in _MONTHS:
        raise ValueError(f"not a syslog time (Mmm dd HH:MM:SS): {text!r}")
    mon, day, h, mi, s, frac = m.groups()
    read_year = datetime.fromtimestamp(ctx.read_ns / NS, ctx.tz).year
    best: int | None = None
    for year in (read_year - 1, read_year, read_year + 1):
        try:
            moment = datetime(year, _MONTHS[mon], int(day), int(h), int(mi), int(s),
                              tzinfo=ctx.tz)
        except ValueError:  # Feb 29 of a year that has none
            continue
        ns = _ns(moment)
        if best is None or abs(ns - ctx.read_ns) < abs(best - ctx.read_ns):
            best = ns
    if best is None:
        raise ValueError(f"no year around the read time has this date: {text!r}")
    return best + _fraction_ns(frac)


_MYSQL = re.compile(
    r"\s*(?:(\d{4})-(\d\d)-(\d\d)|(\d\d)(\d\d)(\d\d))[ T]+(\d{1,2}):(\d\d):(\d\d)"
    r"(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?\s*")


def _mysql(text: str, ctx: TimeContext) -> int:
    m = _MYSQL.fullmatch(text)
    if m is None:
        raise ValueError(f"not a MySQL time (YYMMDD HH:MM:SS or YYYY-MM-DD HH:MM:SS): {text!r}")
    y4, mo4, d4, y2, mo2, d2, h, mi, s, frac, off = m.groups()
    year, month, day = (int(y4), int(mo4), int(d4)) if y4 else (2000 + int(y2), int(mo2), int(d2))
    moment = datetime(year, month, day, int(h), int(mi), int(s), tzinfo=_offset(off, ctx.tz))
    return _ns(moment) + _fraction_ns(frac)


_NUMBER = re.compile(r"\s*(\d+)(?:\.(\d+))?\s*")


def _unix(scale_digits: int) -> Callable[[str, TimeContext], int]:
    """A parser of a count of 10^-scale_digits seconds (0 = seconds, 9 = nanoseconds)."""
    unit = 10 ** (9 - scale_digits)

    def parse(text: str, ctx: TimeContext) -> int:
        if text.isdecimal():  # the common case (``\d`` is a decimal digit too)
            return int(text) * unit
        m = _NUMBER.fullmatch(text)
        if m is None:
            raise ValueError(f"not a number: {text!r}")
        whole, frac = m.groups()
        ns = int(whole) * unit
        if frac and unit > 1:
            digits = 9 - scale_digits
            ns += int(frac[:digits].ljust(digits, "0"))
        return ns

    return parse


TimeParser = Callable[[str, TimeContext], int]

TIME_FORMATS: dict[str, TimeParser] = {
    "rfc3339": _rfc3339,
    "syslog": _syslog,
    "mysql": _mysql,
    "unix": _unix(0),
    "unix_ms": _unix(3),
    "unix_us": _unix(6),
    "unix_ns": _unix(9),
}
"""Format name -> parser."""


def parse_time(fmt: str, text: str, read_ns: int, tz: tzinfo = UTC) -> int:
    """``text`` in format ``fmt`` as Unix ns (ValueError if it does not parse)."""
    return TIME_FORMATS[fmt](text, TimeContext(read_ns, tz))


SECOND_CACHE_ENTRIES = 64
_CACHED_FORMATS = ("rfc3339", "syslog", "mysql")
_DAY_NS = 86400 * NS


class SecondCache:
    """A parser of one format that caches the result per text without its fraction.

    Consecutive lines of a log share their second, so the calendar arithmetic runs about once
    per second of log. For ``syslog`` (the year comes from the read time) an entry is reused
    only while the read time stays within a day of the one it was computed for. Unix formats
    are not cached (they are plain arithmetic, and do not use the read time: they get one
    context made once).
    """

    __slots__ = ("_entries", "_fixed", "_parser", "_relative", "cached", "tz")

    def __init__(self, fmt: str, tz: tzinfo) -> None:
        self._parser = TIME_FORMATS[fmt]
        self._relative = fmt == "syslog"
        self.cached = fmt in _CACHED_FORMATS
        self.tz = tz
        self._entries: dict[str, tuple[int, int]] = {}
        self._fixed = TimeContext(0, tz)

    def parse(self, text: str, read_ns: int) -> int:
        """``text`` as Unix ns (ValueError if it does not parse)."""
        if not self.cached:
            return self._parser(text, self._fixed)
        dot = text.find(".")
        if dot < 0:
            key, fraction = text, ""
        else:
            end = dot + 1
            while end < len(text) and text[end].isdigit():
                end += 1
            key, fraction = text[:dot] + text[end:], text[dot + 1:end]
        hit = self._entries.get(key)
        if hit is not None and (not self._relative or abs(read_ns - hit[1]) < _DAY_NS):
            return hit[0] + _fraction_ns(fraction) if fraction else hit[0]
        ns = self._parser(text, TimeContext(read_ns, self.tz))
        if len(self._entries) >= SECOND_CACHE_ENTRIES:
            self._entries.clear()
        self._entries[key] = (ns - _fraction_ns(fraction), read_ns)
        return ns
