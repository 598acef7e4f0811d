"""What a kind of component declares, in one place: :class:`ComponentKind`.

A *kind* is a file source, a Loki sink, the disk buffer, ...; an :class:`Instance` is one
configured, enabled occurrence of it (a ``sources.files[]`` entry, the ``loki`` sink, a
``sinks.loki_endpoints[]`` entry). Each kind says:

- which **group** of the supervision tree its instances live in (``state``, ``sinks``,
  ``dispatchers``, ``sources``); the tree names an instance ``root/<group>/<name>``;
- which instances the config enables (:meth:`ComponentKind.instances`), each with the
  config key path it came from, for messages;
- how to build an instance's :class:`~logcap.runtime.childspec.ChildSpec` from the
  :class:`~logcap.components.wiring.Wiring` (the handles of the other components);
- which directories preflight must be able to create and write, which of them the running
  agent locks (:meth:`ComponentKind.locks`: one agent per state directory), and any deeper check
  (:meth:`ComponentKind.preflight`: each problem one line, ``<key path>: <reason>``);
- what ``check-config`` warns about (:meth:`ComponentKind.warnings`) and, with ``--connect``,
  how to probe what it talks to (:meth:`ComponentKind.probe`);
- one phrase for the start-up summary (:meth:`ComponentKind.describe`).

The registry (:mod:`logcap.components.registry`) lists the kinds in start order; the tree,
preflight and the summary iterate it, so adding a kind is adding one declaration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from logcap.components.instance import GROUPS, Instance
from logcap.components.wiring import Wiring
from logcap.config import Config
from logcap.runtime.childspec import ChildSpec

__all__ = ["GROUPS", "ComponentKind", "Instance"]


class ComponentKind(ABC):
    """The declaration of one kind of component (module docstring). Subclasses set ``kind``
    and ``group`` and define :meth:`instances` and :meth:`child_spec`; the others default to
    "nothing to check" and the instance's name."""

    kind: str = ""
    group: str = ""

    @abstractmethod
    def instances(self, config: Config) -> list[Instance]:
        """The enabled instances, in start order."""

    @abstractmethod
    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        """How the group supervisor starts (and restarts) ``instance``."""

    def directories(self, instance: Instance, config: Config) -> list[tuple[str, str]]:
        """``(key path, directory)`` that must exist and be writable before the start."""
        return []

    def locks(self, instance: Instance, config: Config) -> list[tuple[str, str, str]]:
        """``(key path, directory, lock file name)`` that ``logcap run`` locks for its whole
        life (:mod:`logcap.state.dirlock`): a second agent on the directory is refused."""
        return []

    def preflight(self, instance: Instance, config: Config) -> list[str]:
        """Deeper checks before the start (after the directories); each problem one line."""
        return []

    def warnings(self, instance: Instance, config: Config) -> list[str]:
        """What ``check-config`` reports without refusing (``<key path>: <what>``): true now,
        may change by the time the agent runs (an include that matches no file yet)."""
        return []

    def probe(self, instance: Instance, config: Config) -> tuple[bool, str] | None:
        """``check-config --connect``: ``(ok, one line)`` from one request to what the
        instance talks to, changing nothing there; None when there is nothing to probe."""
        return None

    def describe(self, instance: Instance) -> str:
        """One phrase for the start-up summary (no secrets)."""
        return instance.name
