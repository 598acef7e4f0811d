"""The base of every config section: :class:`Section`, :class:`Problem` and shared field checks.

A section is a frozen, slotted ``attrs`` class deriving from :class:`Section`, whose fields are
declared with the helpers of :mod:`logcap.config.values` so the loader knows how to convert and
check each raw value. :meth:`Section.to_dict` renders it back to plain data (secrets redacted
unless ``redact=False``).

A section's :meth:`Section.problems` yields the invariants between its fields that a single
field cannot express (``backoff_min <= backoff_max``, loki enabled needs a url, ...). Each
:class:`Problem` names the key it is reported at (relative to the section, ``""`` for the
section itself) and the keys it ``uses``; the loader skips a problem when one of those keys
already had an error of its own, so one mistake gives one message.

Field checks (``check=`` of a field helper) return ``None`` when the value is fine, else the
reason; the ones shared by several areas are here (:func:`check_name`, :func:`check_not_empty`).
The byte and time units (``KiB``, ``MiB``, ``GiB``, ``HOUR_S``) spell the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from logcap.config.values import render

__all__ = [
    "HOUR_S",
    "GiB",
    "KiB",
    "MiB",
    "Problem",
    "Section",
    "check_name",
    "check_not_empty",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
HOUR_S = 3600.0

_NAME = re.compile(r"[a-zA-Z0-9_.-]+")


def check_name(value: str) -> str | None:
    """A source or pipeline name: letters, digits, ``_``, ``.`` and ``-``."""
    if _NAME.fullmatch(value):
        return None
    return f"invalid name {value!r} (use letters, digits, '_', '.' and '-')"


def check_not_empty(value: str) -> str | None:
    """Text that must contain more than white space (a host, a directory)."""
    return "must not be empty" if not value.strip() else None


class Problem(NamedTuple):
    """A broken invariant: reported at ``key`` (relative, "" = the section), using ``uses``."""

    key: str
    reason: str
    uses: tuple[str, ...]


class Section:
    """Base of every config section: rendering and (by default no) invariants."""

    __slots__ = ()

    def problems(self) -> Iterator[Problem]:
        """The invariants between this section's own fields that do not hold."""
        return iter(())

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """This section as plain data; see :func:`logcap.config.values.render`."""
        return render(self, redact=redact)
