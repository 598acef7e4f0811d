"""The disk buffer's in-memory copy of the batches it appended last (``recent.py``); the store
reading through it is tested with the store (``test_buffer_segments.py``)."""

from __future__ import annotations

from dataclasses import replace

from logcap.messages import Entries
from logcap.runtime.directory import Directory, Handle
from logcap.state.buffer.recent import RecentBatches
from tests.test_buffer_segments import make_batch

ADDRESS = Handle(Directory(), "root/sources/app")


def addressed(n: int) -> list[Entries]:
    """A batch whose entries carry a source address, as the shards deliver them."""
    return [replace(e, ack_to=ADDRESS) for e in make_batch(n)]


def test_batches_are_kept_by_seq_without_their_address_and_given_as_new_lists() -> None:
    recent = RecentBatches(limit=1000)
    recent.keep(1, addressed(1), 150)
    got = recent.get(1)
    assert got == make_batch(1) and all(e.ack_to is None for e in got)
    got.clear()  # a caller's list is its own
    assert recent.get(1) == make_batch(1)
    assert recent.get(2) is None


def test_the_oldest_leave_beyond_the_bound_and_a_batch_above_it_is_not_kept() -> None:
    recent = RecentBatches(limit=400)
    for seq in range(1, 5):
        recent.keep(seq, make_batch(seq), 150)
    assert [s for s in range(1, 5) if recent.get(s) is not None] == [3, 4]
    assert recent.bytes == 300 and len(recent) == 2
    recent.keep(5, make_batch(5), 401)
    assert recent.get(5) is None and recent.bytes == 0


def test_forget_below_drops_what_every_sink_has_read() -> None:
    recent = RecentBatches(limit=10_000)
    for seq in range(1, 6):
        recent.keep(seq, make_batch(seq), 10)
    recent.forget_below(4)
    assert [s for s in range(1, 6) if recent.get(s) is not None] == [4, 5]
    assert recent.bytes == 20
    recent.forget_below(100)
    assert len(recent) == 0 and recent.bytes == 0


def test_what_is_held_is_contiguous_up_to_the_last_append() -> None:
    recent = RecentBatches(limit=400)
    assert recent.covers(1, 0)  # nothing appended: nothing to read
    assert not recent.covers(1, 1)
    for seq in range(1, 4):
        recent.keep(seq, make_batch(seq), 150)
    assert recent.covers(2, 3) and recent.covers(4, 3) and not recent.covers(1, 3)
    recent.keep(4, make_batch(4), 401)  # too big: not held, and the rest would leave a gap
    assert len(recent) == 0 and not recent.covers(4, 4) and recent.covers(5, 4)
