"""The ``timestamp`` stage: a line's timestamp from one of its fields.

``source`` names the field, ``format`` its format (see :mod:`logcap.pipeline.timeformats`),
``fallback_formats`` formats tried in order when ``format`` does not parse (a log with two
forms, e.g. syslog and RFC 3339), ``timezone`` the zone of times written without an offset
(an IANA name such as ``Europe/Lisbon``, ``UTC``, or ``+01:00``; default UTC). A line
without the field (``missing_field``) or whose field does not parse (``unparsable``) keeps its
read time and is counted. Syslog times take the year that puts them closest to the line's read time.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from logcap.config.section import Problem, Section
from logcap.config.values import choice, str_list, text
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.timeformats import TIME_FORMATS, SecondCache, zone

__all__ = ["TimestampConfig", "TimestampStage", "timezone_option"]


def _check_zone(value: str) -> str | None:
    try:
        zone(value)
    except ValueError as exc:
        return str(exc)
    return None


def timezone_option() -> str:
    """The ``timezone`` option of a stage that converts times: an IANA name, ``UTC`` or an
    offset (checked when the config is read); default UTC."""
    return text("UTC", check=_check_zone)


@attrs.frozen
class TimestampConfig(Section):
    """Options of ``timestamp``."""

    source: str = text(required=True)
    format: str = choice("rfc3339", tuple(TIME_FORMATS))
    fallback_formats: tuple[str, ...] = str_list()
    timezone: str = timezone_option()

    def problems(self) -> Iterator[Problem]:
        for index, fmt in enumerate(self.fallback_formats):
            if fmt not in TIME_FORMATS:
                yield Problem(f"fallback_formats[{index}]", f"unknown format {fmt!r} "
                              f"(expected one of {', '.join(TIME_FORMATS)})",
                              ("fallback_formats",))


class TimestampStage:
    """Sets each line's timestamp from its field ``source`` (module docstring)."""

    __slots__ = ("fallbacks", "label", "parse", "source")

    def __init__(self, config: TimestampConfig, label: str) -> None:
        self.label = label
        self.source = config.source
        tz = zone(config.timezone)
        self.parse = SecondCache(config.format, tz).parse
        self.fallbacks = [SecondCache(f, tz).parse for f in config.fallback_formats]

    def __call__(self, batch: LineBatch) -> None:
        missing = bad = 0
        parse, fallbacks, source = self.parse, self.fallbacks, self.source
        stamps, fields = batch.timestamps, batch.fields
        # a time without a fraction, seen before in this batch: the same answer (lines of a
        # batch are read within nanoseconds of each other; the second cache would answer it)
        seen: dict[str, int] = {}
        failed: set[str] = set()
        for i in range(len(stamps)):
            line_fields = fields[i]
            value = None if line_fields is None else line_fields.get(source)
            if value is None:
                missing += 1
                continue
            plain = "." not in value  # no fraction: the memo may answer
            if plain:
                known = seen.get(value)
                if known is not None:
                    stamps[i] = known
                    continue
                if value in failed:
                    bad += 1
                    continue
            try:
                ns = parse(value, stamps[i])
            except ValueError:
                for fallback in fallbacks:  # in order; the read time is still stamps[i]
                    try:
                        ns = fallback(value, stamps[i])
                        break
                    except ValueError:
                        continue
                else:
                    bad += 1
                    if plain:
                        failed.add(value)
                    continue
            stamps[i] = ns
            if plain:
                seen[value] = ns
        batch.timestamped = True
        if missing:
            batch.fail(self.label, "missing_field", missing)
        if bad:
            batch.fail(self.label, "unparsable", bad)

