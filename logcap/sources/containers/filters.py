"""Which containers to follow: the ``sources.containers`` section's label and name filters.

Semantics (:class:`ContainerFilter`, built from
:class:`~logcap.config.sources.ContainersConfig` by :meth:`ContainerFilter.from_config`):

- ``include_labels``: every label given must be on the container with exactly that value
  (none given: no condition);
- ``include_names``: globs (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[...]``, case
  matters); the container must match at least one (none given: every name matches);
- ``exclude_names``: globs; a container matching any is not followed, even if included
  (exclude wins).

Names are compared without the leading ``/`` the Engine API puts on them (``/web-1`` is
``web-1``; :func:`container_name`). A container listed with several names (legacy links) is
included if any of its names is, and excluded if any is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

__all__ = ["ContainerFilter", "container_name"]


def container_name(name: str) -> str:
    """``name`` without the Engine API's leading ``/`` (all of them: the result has none, so
    ``container_name`` is idempotent and ``"/" + container_name(n)`` names the same container)."""
    return name.lstrip("/")


class _FilterSection(Protocol):
    include_labels: Mapping[str, str]
    include_names: tuple[str, ...]
    exclude_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContainerFilter:
    """The follow decision of the ``sources.containers`` section (see the module docstring)."""

    include_labels: Mapping[str, str] = field(default_factory=dict)
    include_names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, section: _FilterSection) -> ContainerFilter:
        """The filter of a :class:`~logcap.config.sources.ContainersConfig`."""
        return cls(dict(section.include_labels), tuple(section.include_names),
                   tuple(section.exclude_names))

    def follows(self, names: str | Iterable[str], labels: Mapping[str, str] | None) -> bool:
        """Whether a container with ``names`` (one name or the API's list) and ``labels``
        (None: no labels) is to be followed."""
        plain = [container_name(n) for n in ([names] if isinstance(names, str) else names)]
        have = labels or {}
        if any(have.get(key) != value for key, value in self.include_labels.items()):
            return False
        if self.include_names and not any(fnmatchcase(n, glob) for n in plain
                                          for glob in self.include_names):
            return False
        return not any(fnmatchcase(n, glob) for n in plain for glob in self.exclude_names)
