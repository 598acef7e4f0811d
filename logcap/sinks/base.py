"""The boundary between the sink actor and a concrete sink (Loki, file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from logcap.messages import Entries, Outcome

__all__ = ["PreparingBackend", "SinkBackend", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a sink made of one batch; ``reason`` is from the sink's closed set."""

    outcome: Outcome
    reason: str = "ok"
    retry_after_s: float | None = None
    detail: str = ""


class SinkBackend(Protocol):
    """Delivers batches synchronously; never raises for a delivery problem, returns a Verdict."""

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict: ...

    def close(self) -> None: ...


@runtime_checkable
class PreparingBackend(SinkBackend, Protocol):
    """A backend whose delivery is two steps: :meth:`prepare` does everything that does not
    depend on the answer (grouping, encoding, compressing: plain CPU work, no I/O) and
    :meth:`send` the I/O and the verdict; ``deliver(parts)`` is ``send(prepare(parts))``. So
    the sink actor can prepare the next batch while a thread of its own sends this one
    (:class:`~logcap.actors.sink.SinkActor`). A prepared batch not sent is dropped: nothing
    but its own memory holds it."""

    def prepare(self, parts: tuple[Entries, ...]) -> object: ...

    def send(self, prepared: object) -> Verdict: ...
