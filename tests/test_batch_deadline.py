"""The shard's batch deadline counts from when the source saw the lines (``Entries.seen``), and
a batch closes at once when none of its sources reads again before that deadline
(``Entries.next_read_at``): a source's read delay is spent inside the batch timeout."""

from __future__ import annotations

from logcap.dispatch.batcher import Batcher
from logcap.messages import Entries
from logcap.origin import ReadToken


def part(source: str = "app", lines: int = 10, seen: float | None = None,
         next_read_at: float | None = None) -> Entries:
    token = ReadToken(source, "fake", ("s",), 0, lines)
    return Entries(source, "s", (), ["x"] * lines, 1, token, lines, seen=seen,
                   next_read_at=next_read_at)


def test_without_a_seen_time_the_deadline_counts_from_the_arrival() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part(), now=10.0) is None
    assert batcher.deadline() == 10.05


def test_the_deadline_counts_from_when_the_source_saw_the_lines() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part(seen=9.97), now=10.0) is None
    assert batcher.deadline() == 9.97 + 0.05


def test_entries_seen_earlier_than_the_open_batch_bring_its_deadline_forward() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part("a", seen=9.99), now=10.0) is None
    assert batcher.add(part("b", seen=9.98), now=10.001) is None
    assert batcher.deadline() == 9.98 + 0.05
    assert batcher.add(part("c", seen=9.999), now=10.002) is None
    assert batcher.deadline() == 9.98 + 0.05  # a later seen time does not push it back


def test_entries_seen_a_whole_timeout_ago_close_the_batch_at_once() -> None:
    batcher = Batcher(1000, 0.05)
    closed = batcher.add(part(seen=9.94), now=10.0)
    assert closed is not None and len(closed) == 1
    assert len(batcher) == 0


def test_a_seen_time_in_the_future_counts_as_the_arrival() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part(seen=11.0), now=10.0) is None
    assert batcher.deadline() == 10.05


def test_a_batch_closes_at_once_when_its_source_reads_again_only_after_the_deadline() -> None:
    batcher = Batcher(1000, 0.05)
    closed = batcher.add(part(seen=9.96, next_read_at=10.04), now=10.0)
    assert closed is not None


def test_a_batch_waits_while_its_source_may_read_again_before_the_deadline() -> None:
    batcher = Batcher(1000, 0.2)
    assert batcher.add(part(seen=9.96, next_read_at=10.04), now=10.0) is None
    assert batcher.add(part(seen=10.0, next_read_at=10.09), now=10.05) is None
    closed = batcher.add(part(seen=10.1, next_read_at=10.18), now=10.14)
    assert closed is not None and len(closed) == 3  # the next read would come after 10.16


def test_a_batch_waits_while_any_of_its_sources_may_read_again_before_the_deadline() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part("a", seen=9.99, next_read_at=None), now=10.0) is None
    assert batcher.add(part("b", seen=9.99, next_read_at=10.2), now=10.001) is None
    assert len(batcher) == 2  # a may read again at once: wait for the deadline


def test_the_next_read_hint_is_the_latest_of_each_source() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part("a", next_read_at=None), now=10.0) is None
    assert batcher.add(part("a", next_read_at=10.1), now=10.001) is not None


def test_a_closed_batch_forgets_its_sources_hints() -> None:
    batcher = Batcher(1000, 0.05)
    assert batcher.add(part("a", next_read_at=10.1), now=10.0) is not None
    assert batcher.add(part("b", next_read_at=None), now=10.01) is None


def test_batch_size_still_closes_a_batch() -> None:
    batcher = Batcher(20, 10.0)
    assert batcher.add(part(lines=10), now=10.0) is None
    closed = batcher.add(part(lines=10), now=10.0)
    assert closed is not None and batcher.lines == 0
