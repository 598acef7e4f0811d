"""Sink-side deduplication by delivered byte ranges."""

from __future__ import annotations

from logcap.dispatch.dedup import DeliveredRanges
from logcap.messages import Entries, ReadToken
from logcap.runtime.timers import ManualClock


def part(start: int, end: int, key: str = "g1|1:2|8:abc", source: str = "app") -> Entries:
    return Entries(source, "/x.log", (), ["l"], 0, ReadToken(source, key, start, end, 0))


def test_a_part_inside_delivered_bytes_is_recognised() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100))
    seen.add(part(100, 250))
    assert seen.delivered(part(0, 100))
    assert seen.delivered(part(50, 250))  # merged ranges
    assert not seen.delivered(part(200, 300))  # partly new: sent


def test_the_generation_id_does_not_matter_but_the_file_content_does() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100, key="g1|1:2|8:abc"))
    assert seen.delivered(part(0, 100, key="g7|1:2|8:abc"))
    assert not seen.delivered(part(0, 100, key="g1|1:2|8:other"))
    assert not seen.delivered(part(0, 100, source="other"))


def test_ranges_expire_after_the_window_and_memory_is_capped() -> None:
    clock = ManualClock()
    seen = DeliveredRanges(10, 2, clock=clock.monotonic)
    seen.add(part(0, 100))
    clock.advance(11)
    assert not seen.delivered(part(0, 100))
    for n in range(5):
        seen.add(part(0, 10, key=f"g|{n}:1|8:x"))
    assert len(seen) == 2


def test_parts_without_a_file_identity_are_never_dropped() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100, key="dlq"))
    assert not seen.delivered(part(0, 100, key="dlq"))
