"""Crashing an actor on purpose, inside its own thread: the fault of the chaos harness.

:class:`CrashActor` is a control-lane message that every
:class:`~logcap.runtime.actor.LogcapActor` takes before its own handler sees it: it raises
:class:`InjectedCrash` there, so the actor ends exactly as a bug in one of its handlers would
end it (pykka's failure path: ``on_failure``, the actor's crash clean-up, ``ChildExited(crashed=
True)`` to its supervisor), and the supervisor restarts it by its policy. A supervisor crashed
this way stops its children first, as any crashed supervisor does.

Tell it, never ask it: an exception raised while answering an ask goes to the asker, and the
actor would keep running.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CrashActor", "InjectedCrash"]


@dataclass(frozen=True, slots=True)
class CrashActor:
    """Command (tell): raise :class:`InjectedCrash` with ``reason`` in the actor's thread."""

    reason: str = "crash injected"


class InjectedCrash(RuntimeError):
    """Raised by an actor told :class:`CrashActor`; its text is the command's reason."""
