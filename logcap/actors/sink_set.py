"""Applying :class:`~logcap.messages.SinksChanged` to a sender's set of sinks: the one copy
the shards, the disk buffer and the DLQ share."""

from __future__ import annotations

from typing import TypeVar

from logcap.dispatch.outbox import Outbox
from logcap.messages import SinksChanged
from logcap.runtime.directory import Handle

__all__ = ["change_sinks"]

T = TypeVar("T")


def change_sinks(change: SinksChanged, sinks: dict[str, Handle], sink_of: dict[str, str],
                 outbox: Outbox[T], watcher: Handle) -> tuple[dict[str, list[T]], list[str]]:
    """Apply ``change`` to a sender's ``sinks`` (by sink name), ``sink_of`` (sink name by
    handle name) and ``outbox``; ``watcher`` (the sender) watches each added sink's name.
    Returns, per removed sink, the payloads its removal released (every other sink had
    settled them), and the names of the sinks added. Sinks already there (added) or not
    there (removed) are skipped: a sender restarted from an updated spec may be told again."""
    released: dict[str, list[T]] = {}
    for sink in change.removed:
        handle = sinks.pop(sink, None)
        if handle is None:
            continue
        sink_of.pop(handle.name, None)
        released[sink] = outbox.remove_sink(sink)
    added = []
    for sink, handle in change.added:
        if sink in sinks:
            continue
        sinks[sink] = handle
        sink_of[handle.name] = sink
        outbox.add_sink(sink)
        handle.watch(watcher)
        added.append(sink)
    return released, added
