"""What the disk buffer holds of each source, by stream and byte range: the answer to a
restarted source's ``ResumeRanges`` (it resumes past what is stored, so those lines are not
read again with new timestamps).

Filled at the buffer's start from the records of the recent window (the write-ahead log of
the positions, which are flushed less often than the buffer fsyncs), then with every batch
stored while it runs. A range touching or overlapping a stream's last one extends it, so a
stream read in order keeps one range. Tokens without a stream (DLQ resends) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from logcap.messages import Entries
from logcap.origin import Buffered

__all__ = ["StoredRanges"]


class StoredRanges:
    """Byte ranges stored per source and stream (module docstring)."""

    def __init__(self) -> None:
        self._by_source: dict[str, Buffered] = {}

    def add(self, parts: Iterable[Entries]) -> None:
        """Add the ranges of the reads in ``parts``."""
        for part in parts:
            token = part.token
            if token.stream is None:
                continue
            spans = self._by_source.setdefault(token.source, {}).setdefault(token.stream, [])
            if spans and token.start <= spans[-1][1] and token.end >= spans[-1][0]:
                first, last = spans[-1]
                spans[-1] = (min(first, token.start), max(last, token.end))
            else:
                spans.append((token.start, token.end))

    def of(self, source: str) -> Buffered:
        """A copy of ``source``'s ranges (the asker reads it in its own thread)."""
        return {stream: list(spans)
                for stream, spans in self._by_source.get(source, {}).items()}
