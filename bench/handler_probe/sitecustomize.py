"""Thread CPU of every actor message handled, by actor class and message type (for
``bench/handler_cpu.py``).

Loaded as ``sitecustomize`` by processes started with this directory on ``PYTHONPATH`` and
``LOGCAP_HANDLER_CPU`` set to a path prefix: when ``logcap.runtime.actor`` is imported, its
``LogcapActor.on_receive`` is wrapped to add the calling thread's CPU time
(``time.thread_time``) per ``(actor class, message type)``; at exit the totals are written to
``<prefix>.<pid>``. With ``LOGCAP_HANDLER_PROFILE=Actor.Message[,...]`` those messages'
handling also runs under cProfile (thread time), its top functions written to
``<prefix>.<pid>.prof``. Nothing is changed without the variable.
"""

from __future__ import annotations

import atexit
import collections
import importlib.abc
import importlib.util
import os
import sys
import time
from typing import Any

_PREFIX = os.environ.get("LOGCAP_HANDLER_CPU")
_TOTALS: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
_PROFILES: list[Any] = []


def _wrap(module: Any) -> None:
    import cProfile

    base = module.LogcapActor
    real = base.on_receive
    profiled = set(filter(None, os.environ.get("LOGCAP_HANDLER_PROFILE", "").split(",")))
    profile = cProfile.Profile(time.thread_time)
    _PROFILES.append(profile)
    clock = time.thread_time

    def on_receive(self: Any, message: Any) -> Any:
        key = (type(self).__name__, type(message).__name__)
        started = clock()
        try:
            if profiled and f"{key[0]}.{key[1]}" in profiled:
                return profile.runcall(real, self, message)
            return real(self, message)
        finally:
            total = _TOTALS[key]
            total[0] += 1
            total[1] += clock() - started

    base.on_receive = on_receive


class _ActorFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "logcap.runtime.actor":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _wrap(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _dump() -> None:
    if not _TOTALS:
        return
    with open(f"{_PREFIX}.{os.getpid()}", "w") as out:
        for (actor, message), (count, spent) in sorted(_TOTALS.items(), key=lambda kv: -kv[1][1]):
            out.write(f"{actor}\t{message}\t{count:.0f}\t{spent}\n")
    if _PROFILES and os.environ.get("LOGCAP_HANDLER_PROFILE"):
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(_PROFILES[0], stream=text).sort_stats("tottime").print_stats(30)
        with open(f"{_PREFIX}.{os.getpid()}.prof", "w") as out:
            out.write(text.getvalue())


if _PREFIX:
    sys.meta_path.insert(0, _ActorFinder())
    atexit.register(_dump)
