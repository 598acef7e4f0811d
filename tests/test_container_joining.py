"""Multi-line entries on container streams: ContainerReads with joining rules (plain code, no
engine). Whole entries only in reads and cursors; a kill -9 (a new ContainerReads from the
committed cursor, the engine re-sending from ``since``) or a rewind mid-entry gives each entry
exactly once."""

from __future__ import annotations

import re

from logcap.messages import Entries
from logcap.sources.containers.cursor import ContainerCursor
from logcap.sources.containers.framing import Stream
from logcap.sources.containers.reads import ContainerReads
from logcap.sources.multiline import JoinCounts, MultilineRule
from tests.test_container_source import CID, T0, S, frames, labels

TRACE = MultilineRule(re.compile(r"^\S"), timeout_s=5.0)  # indented lines continue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def joined_reads(cursor: ContainerCursor | None = None, clock: Clock | None = None,
                 counts: JoinCounts | None = None, rule: MultilineRule = TRACE,
                 ) -> ContainerReads:
    return ContainerReads("c", CID, "run1", cursor or ContainerCursor(), max_line_bytes=1000,
                          clock_ns=lambda: T0, rules={Stream.STDOUT: rule, Stream.STDERR: rule},
                          counts=counts, clock=clock or Clock())


def trace(n: int, ts: int, stream: Stream = Stream.STDOUT, depth: int = 3
          ) -> list[tuple[int, Stream, bytes]]:
    """Entry ``n``: a head line and ``depth`` indented lines, all at ``ts``."""
    return [(ts, stream, b"E%d boom" % n)] + [(ts, stream, b"  at f%d_%d" % (n, i))
                                             for i in range(depth)]


def texts(batches: list[Entries]) -> list[str]:
    return [line for e in batches for line in e.lines]


def entry_text(n: int, depth: int = 3) -> str:
    return "\n".join([f"E{n} boom"] + [f"  at f{n}_{i}" for i in range(depth)])


def test_each_stream_is_joined_apart_and_the_open_entry_is_held_out_of_reads_and_cursors(
) -> None:
    counts = JoinCounts()
    r = joined_reads(counts=counts)
    r.opened(1, 0, tty=False)
    out, err = trace(0, T0), trace(1, T0, Stream.STDERR)
    mixed = [x for pair in zip(out, err, strict=True) for x in pair] + trace(2, T0 + S)[:2]
    r.add(1, frames(mixed))
    got = r.take(labels, 100)
    # stdout's entry 0 closed by entry 2's head; stderr's entry 1 still open
    assert {e.stream: e.lines for e in got} == {f"{CID}/stdout": [entry_text(0)]}
    stdout = next(e for e in got if e.stream.endswith("stdout"))
    assert stdout.timestamps == [T0] and stdout.bytes == len(entry_text(0)) + 1
    for e in got:
        r.ack(e.token)
    committed = r.commit_cursor()
    assert committed.streams[Stream.STDOUT].timestamp_ns == T0  # entry 2 (T0 + S) is open
    assert committed.streams[Stream.STDOUT].count == 4
    assert Stream.STDERR not in committed.streams
    assert not r.settled
    r.add(1, frames(trace(2, T0 + S)[2:] + trace(3, T0 + S, depth=0)
                    + trace(4, T0 + S, Stream.STDERR, depth=0)))
    assert sorted(texts(r.take(labels, 100))) == [entry_text(1), entry_text(2)]
    assert counts.total == {"complete": 3}


def test_a_kill_9_mid_entry_reads_that_entry_again_whole_and_no_entry_twice() -> None:
    log = [x for n in range(6) for x in trace(n, T0 + (n // 2) * S)]
    first = joined_reads()
    first.opened(1, 0, tty=False)
    cut = 4 * 3 + 2  # entries 0..2 read (3's head closed 2), entry 3 half read
    first.add(1, frames(log[:cut]))
    delivered = first.take(labels, 100)
    for e in delivered:
        first.ack(e.token)
    stored = first.commit_cursor()  # what the positions file holds at the kill
    assert texts(delivered) == [entry_text(n) for n in range(3)]
    restarted = joined_reads(stored)
    restarted.opened(1, restarted.since_ns(), tty=False)
    resent = [x for x in log if x[0] > restarted.since_ns()]  # podman: strictly after since
    restarted.add(1, frames(resent))
    restarted.finish()
    assert texts(delivered) + texts(restarted.take(labels, 100)) == [
        entry_text(n) for n in range(6)]


def test_a_rewind_mid_entry_forgets_the_open_entry_and_takes_it_again_whole() -> None:
    r = joined_reads()
    r.opened(1, 0, tty=False)
    r.add(1, frames(trace(0, T0) + trace(1, T0)[:2]))
    lost = r.take(labels, 100)  # in flight to a shard that restarted
    assert texts(lost) == [entry_text(0)]
    r.rewind()
    r.opened(2, r.since_ns(), tty=False)
    r.add(2, frames(trace(0, T0) + trace(1, T0) + trace(2, T0 + S, depth=0)))
    assert texts(r.take(labels, 100)) == [entry_text(0), entry_text(1)]


def test_the_open_entry_is_closed_after_its_timeout_and_at_the_end_of_the_log() -> None:
    clock, counts = Clock(), JoinCounts()
    r = joined_reads(clock=clock, counts=counts)
    r.opened(1, 0, tty=False)
    r.add(1, frames(trace(0, T0)))
    clock.now += 4.9
    assert not r.flush_due(clock.now) and r.take(labels, 100) == []
    clock.now += 0.2
    assert r.flush_due(clock.now)
    assert texts(r.take(labels, 100)) == [entry_text(0)]
    r.add(1, frames(trace(1, T0 + S, Stream.STDERR)))
    r.finish()
    assert texts(r.take(labels, 100)) == [entry_text(1)]
    assert counts.total == {"timeout": 1, "end_of_stream": 1}


def test_caps_cut_an_entry_and_nothing_is_dropped() -> None:
    rule = MultilineRule(re.compile(r"^\S"), max_lines=3, timeout_s=5.0)
    counts = JoinCounts()
    r = joined_reads(rule=rule, counts=counts)
    r.opened(1, 0, tty=False)
    r.add(1, frames(trace(0, T0, depth=6) + trace(1, T0, depth=0)))
    got = texts(r.take(labels, 100))
    lines = entry_text(0, depth=6).split("\n")
    assert got == ["\n".join(lines[0:3]), "\n".join(lines[3:6]), lines[6]]
    assert counts.total == {"max_lines": 2, "complete": 1}  # the last line "E1" is open


def test_a_stream_with_an_open_entry_keeps_the_resume_point_below_it() -> None:
    r = joined_reads()
    r.opened(1, 0, tty=False)
    r.add(1, frames(trace(0, T0, Stream.STDERR)[:2]))  # stderr: an open entry, nothing closed
    r.add(1, frames(trace(1, T0 + 100 * S) + trace(2, T0 + 100 * S, depth=0)))
    for e in r.take(labels, 100):
        r.ack(e.token)
    assert r.commit_cursor().floor_ns == 0  # not raised past the held stderr lines
    assert r.since_ns() == T0 - 1  # a reconnect asks from the held lines' time


def test_without_rules_lines_pass_through_one_by_one() -> None:
    r = ContainerReads("c", CID, "run1", ContainerCursor(), max_line_bytes=1000,
                       clock_ns=lambda: T0)
    r.opened(1, 0, tty=False)
    r.add(1, frames(trace(0, T0)))
    assert texts(r.take(labels, 100)) == entry_text(0).split("\n")
    assert not r.joining

