"""The boundary between the sink actor and a concrete sink (Loki, file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from logcap.messages import Entries, Outcome

__all__ = ["SinkBackend", "Verdict"]


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
