"""A scripted sink backend and a stand-in shard, for tests of the SinkActor and its senders."""

from __future__ import annotations

import threading
from typing import Any

from logcap.messages import Entries, Outcome, SinkResult
from logcap.runtime.actor import LogcapActor
from logcap.sinks.base import Verdict


class ScriptedBackend:
    """A sink backend answering from a script (then DELIVERED); records every batch."""

    def __init__(self, script: list[Verdict] | None = None) -> None:
        self.script = list(script or [])
        self.batches: list[tuple[Entries, ...]] = []
        self._cond = threading.Condition()

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
        with self._cond:
            self.batches.append(parts)
            self._cond.notify_all()
            return self.script.pop(0) if self.script else Verdict(Outcome.DELIVERED)

    def close(self) -> None:
        pass

    def wait_for(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.batches) >= count, timeout=10), (
                f"{len(self.batches)} of {count} batches arrived")

    def entry_ids(self) -> list[str]:
        with self._cond:
            return [parts[0].token.generation for parts in self.batches]


class ResultRecorder(LogcapActor):
    """Stands for a shard: keeps every SinkResult it is told."""

    def __init__(self, results: list[SinkResult], **kw: Any) -> None:
        super().__init__(**kw)
        self.results = results

    def handle(self, message: Any) -> Any:
        if isinstance(message, SinkResult):
            self.results.append(message)
            return None
        return super().handle(message)
