"""An enabled instance of a component kind, and the groups of the tree they live in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GROUPS", "Instance"]

GROUPS = ("state", "sinks", "dispatchers", "sources")
"""The supervisors under the root, in start order (stop runs in reverse)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One enabled instance: its kind, its name in its group, its config section and the key
    path of that section (``sinks.loki``, ``sources.files[0]``)."""

    kind: str
    name: str
    settings: Any
    key: str
