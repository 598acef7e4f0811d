"""What each stream of a container is: its Loki labels and its multi-line rule.

Plain code. A container has two streams (stdout, stderr; a TTY container writes stdout only),
each its own Loki stream and its own cursor:

* :func:`stream_labels`: the source's static labels, then ``container`` (the name),
  ``image``, ``compose_service`` and ``compose_project`` when the container has the compose
  labels, and ``stream`` (``stdout`` or ``stderr``). The container ID is not a label (it is
  structured metadata, set by :mod:`logcap.sources.containers.reads`).
* :class:`StreamRules`: the joining rule of each stream, from ``multiline_for(stream,
  labels)`` (:data:`MultilineFor`: the stream's ``Entries.stream`` and labels give a spec, or
  None: lines as they are), each spec compiled once.
"""

from __future__ import annotations

from collections.abc import Callable

from logcap.messages import Labels
from logcap.sources.containers.engine import COMPOSE_PROJECT, COMPOSE_SERVICE, ContainerInfo
from logcap.sources.containers.framing import Stream
from logcap.sources.containers.reads import entries_stream
from logcap.sources.multiline import MultilineRule, MultilineSpec

__all__ = ["MultilineFor", "StreamRules", "stream_labels"]

MultilineFor = Callable[[str, Labels], MultilineSpec | None]
"""``(Entries.stream, labels) -> spec``: how a container stream's lines are joined (None:
not)."""


def stream_labels(static: Labels, info: ContainerInfo) -> dict[Stream, Labels]:
    """The labels of each of ``info``'s streams (module docstring), sorted by name."""
    base = dict(static)
    base["container"] = info.name
    base["image"] = info.image
    if COMPOSE_SERVICE in info.labels:
        base["compose_service"] = info.labels[COMPOSE_SERVICE]
    if COMPOSE_PROJECT in info.labels:
        base["compose_project"] = info.labels[COMPOSE_PROJECT]
    return {s: tuple(sorted({**base, "stream": s.label}.items())) for s in Stream}


class StreamRules:
    """The joining rules of container streams, by ``multiline_for`` (module docstring)."""

    def __init__(self, multiline_for: MultilineFor) -> None:
        self.multiline_for = multiline_for
        self._compiled: dict[object, MultilineRule] = {}

    def of(self, container_id: str, labels: dict[Stream, Labels]
           ) -> dict[Stream, MultilineRule | None]:
        """The rule of each of a container's streams (``labels``: :func:`stream_labels`)."""
        rules: dict[Stream, MultilineRule | None] = {}
        for stream in Stream:
            spec = self.multiline_for(entries_stream(container_id, stream), labels[stream])
            if spec is None:
                rules[stream] = None
                continue
            rule = self._compiled.get(spec)
            if rule is None:
                rule = self._compiled[spec] = MultilineRule.of(spec)
            rules[stream] = rule
        return rules
