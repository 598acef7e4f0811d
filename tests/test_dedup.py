"""Sink-side deduplication by delivered byte ranges."""

from __future__ import annotations

from logcap.dispatch.dedup import DeliveredRanges
from logcap.messages import Entries
from logcap.origin import DLQ_KIND, FILE_KIND, FileStream, ReadToken, StreamId
from logcap.runtime.timers import ManualClock

CONTENT = FileStream(1, 2, "8:abc")


def part(start: int, end: int, stream: StreamId | None = CONTENT, gen: str = "g1",
         source: str = "app", kind: str = FILE_KIND) -> Entries:
    return Entries(source, "/x.log", (), ["l"], 0,
                   ReadToken(source, kind, stream, start, end, gen))


def test_a_part_inside_delivered_bytes_is_recognised() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100))
    seen.add(part(100, 250))
    assert seen.delivered(part(0, 100))
    assert seen.delivered(part(50, 250))  # merged ranges
    assert not seen.delivered(part(200, 300))  # partly new: sent


def test_the_generation_id_does_not_matter_but_the_file_content_does() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100, gen="g1"))
    assert seen.delivered(part(0, 100, gen="g7"))
    assert not seen.delivered(part(0, 100, stream=FileStream(1, 2, "8:other")))
    assert not seen.delivered(part(0, 100, source="other"))


def test_ranges_expire_after_the_window_and_memory_is_capped() -> None:
    clock = ManualClock()
    seen = DeliveredRanges(10, 2, clock=clock.monotonic)
    seen.add(part(0, 100))
    clock.advance(11)
    assert not seen.delivered(part(0, 100))
    for n in range(5):
        seen.add(part(0, 10, stream=FileStream(n, 1, "8:x"), gen="g"))
    assert len(seen) == 2


def test_parts_without_a_file_identity_are_never_dropped() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100, stream=None, gen="dlq", kind=DLQ_KIND))
    assert not seen.delivered(part(0, 100, stream=None, gen="dlq", kind=DLQ_KIND))


def test_streams_of_another_kind_are_deduplicated_by_their_own_identity() -> None:
    seen = DeliveredRanges(60, 10)
    seen.add(part(0, 100, stream=("c0ffee", "stdout"), kind="container"))
    assert seen.delivered(part(10, 90, stream=("c0ffee", "stdout"), kind="container"))
    assert not seen.delivered(part(10, 90, stream=("c0ffee", "stderr"), kind="container"))
    assert not seen.delivered(part(10, 90, stream=("c0ffee", "stdout"), kind="other"))
