"""The working state of one pipeline run over one :class:`~logcap.messages.Entries`.

A :class:`LineBatch` holds the lines as parallel lists (line text, extracted fields,
timestamp, labels, structured metadata), so a stage loops over plain lists without building an
object per line. Fields, labels and metadata of a line are ``None`` until a stage sets one
(most stages touch only some lines). A field whose value is ``None`` is absent (a regex group
that did not take part, kept so as not to copy the match's dict): fields are read with
``get``, never iterated. A stage that drops lines calls :meth:`LineBatch.keep`,
which compacts every list at once.

Labels and metadata are kept as the :class:`~logcap.messages.Entries` will carry them, tuples
of ``(name, value)`` pairs (labels sorted by name, metadata in the order the stage set them),
so the runner hands them on without converting each line's: a stage that adds to a line's
pairs makes a new tuple. Label tuples are shared between lines (the ``labels`` stage makes one
per combination of values). Fields dicts belong to one line.

What happened is counted in the batch, not in metrics: :attr:`LineBatch.failures` and
:attr:`LineBatch.drops` map ``(stage, reason)`` to a line count. The runner's caller (the
shard, ``logcap pipeline test``) reports them once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from logcap.pipeline.textindex import TextIndex

if TYPE_CHECKING:  # the stage module imports this one
    from logcap.pipeline.stages.filter import TokenBucket

__all__ = ["Fields", "LineBatch", "Pairs"]

Fields = dict[str, str]
Pairs = tuple[tuple[str, str], ...]


class LineBatch:
    """The lines of one Entries while a pipeline runs over them (module docstring).

    ``read_ns`` is the read time of line 0 (``Entries.ts_ns``); :attr:`timestamps` starts as
    the lines' timestamps as read (or as given by the source) and ``timestamped`` says whether
    a stage set any of them from the log itself. ``stream`` is the Entries' stream and
    ``now_s`` the caller's monotonic clock (the rate limiter's time).
    """

    __slots__ = ("_index", "demand", "drops", "failures", "fields", "labels", "lines",
                 "metadata", "now_s", "read_ns", "stream", "timestamped", "timestamps")

    def __init__(self, lines: list[str], timestamps: list[int], read_ns: int,
                 stream: str = "", now_s: float = 0.0) -> None:
        n = len(lines)
        self.lines = lines
        self.timestamps = timestamps
        self.read_ns = read_ns
        self.stream = stream
        self.now_s = now_s
        self.fields: list[Fields | None] = [None] * n
        self.labels: list[Pairs | None] = [None] * n
        self.metadata: list[Pairs | None] = [None] * n
        self.timestamped = False
        self.failures: dict[tuple[str, str], int] = {}
        self.drops: dict[tuple[str, str], int] = {}
        self._index: TextIndex | None = None
        # set by a rate_limit stage in block mode: (its stream's bucket, its label)
        self.demand: tuple[TokenBucket, str] | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def line_index(self) -> TextIndex:
        """A :class:`~logcap.pipeline.textindex.TextIndex` of the lines as they are now
        (made again when a line changed since the last call)."""
        index = self._index
        if index is None or index.texts != self.lines:
            index = self._index = TextIndex(self.lines)
        return index

    def value(self, i: int, source: str | None) -> str | None:
        """Line ``i``'s text (``source`` None) or the value of its field ``source``."""
        if source is None:
            return self.lines[i]
        fields = self.fields[i]
        return None if fields is None else fields.get(source)

    def set_value(self, i: int, source: str | None, value: str) -> None:
        """Replace line ``i``'s text (``source`` None) or its field ``source``."""
        if source is None:
            self.lines[i] = value
        else:
            fields = self.fields[i]
            if fields is None:
                self.fields[i] = {source: value}
            else:
                fields[source] = value

    def add_fields(self, i: int, found: Fields) -> None:
        """Merge ``found`` into line ``i``'s fields (a later stage's value wins)."""
        fields = self.fields[i]
        if fields is None:
            self.fields[i] = found
        else:
            fields.update(found)

    def fail(self, stage: str, reason: str, lines: int = 1) -> None:
        """Count ``lines`` lines on which ``stage`` failed (they pass on unchanged)."""
        key = (stage, reason)
        self.failures[key] = self.failures.get(key, 0) + lines

    def keep(self, kept: Sequence[int], stage: str, reason: str) -> None:
        """Keep only the lines at indices ``kept`` (ascending); the others are counted as
        dropped by ``stage`` with ``reason``."""
        dropped = len(self.lines) - len(kept)
        if not dropped:
            return
        key = (stage, reason)
        self.drops[key] = self.drops.get(key, 0) + dropped
        self.lines = [self.lines[i] for i in kept]
        self.timestamps = [self.timestamps[i] for i in kept]
        self.fields = [self.fields[i] for i in kept]
        self.labels = [self.labels[i] for i in kept]
        self.metadata = [self.metadata[i] for i in kept]
