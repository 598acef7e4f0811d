"""One followed container's lines: reassembly, resume filtering, read window and cursors.

Plain code (no I/O, no threads), run by the container source in its shell's thread.

A :class:`ContainerReads` takes what the container's follower read (:meth:`opened` at each new
log request, :meth:`add` for its frames, :meth:`finish` at the end of the log) and keeps:

* the **received** cursor (:class:`~logcap.sources.containers.cursor.ContainerCursor`):
  advanced by every line taken; each new request is filtered from it
  (:class:`~logcap.sources.containers.cursor.ResumeFilter`), so a reconnect, whatever ``since``
  the follower used, passes on no line twice. A request whose ``since`` is later than the
  received cursor needs (:meth:`since_ns`) is refused by :meth:`opened` (the caller restarts
  the follower: lines would be missing);
* the **read window**: each :class:`~logcap.messages.Entries` made by :meth:`take` (one per
  stream: stdout and stderr are separate Loki streams and separate cursors) is unacknowledged
  until :meth:`ack`; per stream, the acknowledged prefix moves the **committed** cursor, which
  is what the positions keeper stores (:meth:`commit_cursor`);
* :meth:`rewind`: the reads in flight were lost (a shard restarted): forget them, and take the
  lines again from the committed cursor (a new ``epoch``; acks of the old reads are ignored).

Tokens: ``ReadToken(source, "container", (container id, stream, run id), start, end,
generation=container id, epoch)``, ``[start, end)`` counting the stream's lines in this process
life (the run id makes the identity unique to it: line numbers start again at each start).

Multi-line joining (:class:`~logcap.sources.containers.joining.ContainerJoining`, when the
container's streams have a rule): lines pass through the joiner of their stream between the
resume filter and the window, so an Entries line is a whole entry and the cursor of a read is
its last entry's last line's; the open entry is held (in no read, so not committed). A
reconnect feeds the same joiner (its lines come after the received cursor); :meth:`rewind`
forgets the open entries (read again from the committed cursor); :meth:`finish` closes them
(``end_of_stream``) and :meth:`flush_due` after their timeout. A stream holding an open entry
is not quiet (below).

A stream that never wrote (stderr of most containers, every TTY container) has no cursor; so
that a resume does not re-read the whole log for it, :meth:`commit_cursor` and :meth:`since_ns`
raise the cursor's floor to the other stream's timestamp minus :data:`FLOOR_MARGIN_NS`, but
only while the quiet stream has nothing received and not committed (no line in the window, no
partial line). The margin covers engines whose two streams are not in exact time order
(Docker copies stdout and stderr in separate goroutines); podman keeps both in one log in time
order (``opened(ordered=True)``, as the follower reports a polled engine): no margin, so a
poll re-sends only the resume point's second.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from logcap.messages import Entries, Labels
from logcap.origin import CONTAINER_KIND, ReadToken
from logcap.sources.containers.cursor import (
    ContainerCursor,
    ResumeFilter,
    SinceSemantics,
    StreamCursor,
    since_for,
)
from logcap.sources.containers.framing import Frame, Stream
from logcap.sources.containers.joining import ContainerJoining, Ready
from logcap.sources.containers.lines import LineAssembler, LogLine
from logcap.sources.multiline import JoinCounts, MultilineRule

__all__ = ["FLOOR_MARGIN_NS", "ContainerReads", "entries_stream"]

"""``ReadToken.kind`` of container reads (stream: ``(container id, stream, run id)``)."""
FLOOR_MARGIN_NS = 1_000_000_000
"""How far below the other stream's cursor a quiet stream's floor is raised (1 s)."""
METADATA_KEY = "container_id"
"""The structured metadata key of the container ID."""


def entries_stream(container_id: str, stream: Stream) -> str:
    """``Entries.stream`` of a container stream's reads (its shard key)."""
    return f"{container_id}/{stream.label}"


@dataclass(slots=True)
class _Read:
    end: int
    cursor: StreamCursor | None
    nbytes: int
    acked: bool = False


class ContainerReads:
    """See the module docstring. ``labels(stream)`` gives the Loki labels of a stream's lines
    (read at each :meth:`take`: a rename changes them); ``clock_ns`` stamps lines the engine
    sent without a timestamp; ``rules`` join a stream's lines into entries (counted in
    ``counts``), ``clock`` (monotonic seconds) times their timeout."""

    def __init__(self, source: str, container_id: str, run_id: str,
                 cursor: ContainerCursor, *, max_line_bytes: int,
                 clock_ns: Callable[[], int],
                 rules: Mapping[Stream, MultilineRule | None] | None = None,
                 counts: JoinCounts | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.container_id = container_id
        self.run_id = run_id
        self.committed = cursor
        self.received = cursor
        self.epoch = 0
        self.session: int | None = None
        self.max_line_bytes = max_line_bytes
        self._clock_ns = clock_ns
        self._assembler: LineAssembler | None = None
        self._filter: ResumeFilter | None = None
        self._out: dict[Stream, list[Ready]] = {}
        self._joining = ContainerJoining(rules or {}, counts or JoinCounts())
        self._clock = clock
        self._unacked: dict[Stream, deque[_Read]] = {s: deque() for s in Stream}
        self._next_seq = dict.fromkeys(Stream, 0)
        self._acked_seq = dict.fromkeys(Stream, 0)
        self._metadata: Labels = ((METADATA_KEY, container_id),)
        self.lines = 0
        self.bytes = 0
        self.skipped = 0
        self.boundary_mismatches = 0
        self.reassembled_lines = 0
        self.truncated_lines = 0
        self.untimed_pieces = 0
        self.refused_requests = 0
        self._reported = (0, 0)
        self.floor_margin_ns = FLOOR_MARGIN_NS
        self.published_since_ns = self.since_ns()
        """:meth:`since_ns` as of the last :meth:`publish` (what the follower thread reads)."""

    # -- what was read ---------------------------------------------------------------------

    def opened(self, session: int, since_ns: int, tty: bool, *, ordered: bool = False
               ) -> bool:
        """A new log request (``session``) answered with the lines after ``since_ns``; False
        (and its frames will be ignored) if that is later than the lines still needed.
        ``ordered``: the engine keeps both streams in one log in time order (podman), so a
        quiet stream's floor needs no margin (from now on)."""
        self.floor_margin_ns = 0 if ordered else FLOOR_MARGIN_NS
        if since_ns > self.since_ns():
            self.refused_requests += 1
            self.session = None
            return False
        self._count_assembler()
        self._filter = ResumeFilter(self._resume_cursor(self.received, self._assembler))
        self._assembler = LineAssembler(tty=tty, max_line_bytes=self.max_line_bytes)
        self.session = session
        return True

    def add(self, session: int, frames: list[Frame]) -> int:
        """The frames of a read of ``session`` (ignored if not the current one); returns the
        lines taken."""
        if session != self.session or self._assembler is None:
            return 0
        return self._take_lines(self._assembler.add(frames))

    def finish(self) -> int:
        """The end of the log: partial last lines become lines. Returns the lines taken."""
        if self._assembler is None:
            return 0
        taken = self._take_lines(self._assembler.finish())
        self._emit(self._joining.flush())
        self._count_assembler()
        self._assembler = None
        self.session = None
        return taken

    def _take_lines(self, lines: list[LogLine]) -> int:
        keep = self._filter.keep if self._filter is not None else None
        received = self.received
        taken: dict[Stream, list[Ready]] = {}
        for line in lines:
            if keep is not None and not keep(line):
                continue
            received = received.shipped(line)
            data = line.data
            taken.setdefault(line.stream, []).append(Ready(
                data.decode("utf-8", "backslashreplace"), line.timestamp_ns, len(data) + 1,
                received.streams.get(line.stream)))
        self.received = received
        if self._joining.active:
            now = self._clock()
            self._emit({s: self._joining.feed(s, ready, now) for s, ready in taken.items()})
        else:
            self._emit(taken)
        if self._filter is not None:
            self.skipped = self._filter.skipped
            self.boundary_mismatches = self._filter.boundary_mismatches
        return sum(map(len, taken.values()))

    def _emit(self, ready: Mapping[Stream, list[Ready]]) -> None:
        for stream, items in ready.items():
            if items:
                self._out.setdefault(stream, []).extend(items)

    # -- joining ---------------------------------------------------------------------------

    @property
    def joining(self) -> bool:
        """Whether any stream is joined into multi-line entries."""
        return self._joining.active

    def flush_due(self, now: float) -> bool:
        """Close the open entries whose timeout passed; True if any became ready."""
        ready = self._joining.flush_due(now)
        self._emit(ready)
        return any(ready.values())

    def set_rules(self, rules: Mapping[Stream, MultilineRule | None]) -> bool:
        """Join by ``rules`` from now on; streams whose rule changed close their open entry.
        True if an entry became ready."""
        self._joining, ready = self._joining.with_rules(rules)
        self._emit(ready)
        return bool(ready)

    def _count_assembler(self) -> None:
        if self._assembler is not None:
            a = self._assembler
            self.reassembled_lines += a.reassembled_lines
            self.truncated_lines += a.truncated_lines
            self.untimed_pieces += a.untimed_pieces
            a.reassembled_lines = a.truncated_lines = a.untimed_pieces = 0

    def take_counts(self) -> tuple[int, int]:
        """``(reassembled, truncated)`` lines since the last call (for the metrics)."""
        self._count_assembler()
        now = (self.reassembled_lines, self.truncated_lines)
        before, self._reported = self._reported, now
        return now[0] - before[0], now[1] - before[1]

    # -- entries and the window ------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def unacked(self) -> tuple[int, int]:
        """``(reads, bytes)`` in the window."""
        reads = sum(len(q) for q in self._unacked.values())
        nbytes = sum(r.nbytes for q in self._unacked.values() for r in q)
        return reads, nbytes

    def take(self, labels: Callable[[Stream], Labels], max_lines: int) -> list[Entries]:
        """The lines taken since the last call, as Entries of at most ``max_lines`` lines
        (one stream each), now in the window."""
        out: list[Entries] = []
        for stream, items in sorted(self._out.items()):
            stream_labels = labels(stream)
            for at in range(0, len(items), max_lines):
                out.append(self._entries(stream, stream_labels, items[at:at + max_lines]))
        self._out.clear()
        return out

    def _entries(self, stream: Stream, labels: Labels, items: list[Ready]) -> Entries:
        texts: list[str] = []
        stamps: list[int] = []
        nbytes = 0
        last = None
        for item in items:
            texts.append(item.text)
            nbytes += item.nbytes
            ts = item.timestamp_ns
            if ts is None:
                ts = last if last is not None else self._clock_ns()
            stamps.append(ts)
            last = ts
        start = self._next_seq[stream]
        end = start + len(items)
        self._next_seq[stream] = end
        self._unacked[stream].append(_Read(end, items[-1].cursor, nbytes))
        self.lines += len(items)
        self.bytes += nbytes
        token = ReadToken(self.source, CONTAINER_KIND,
                          (self.container_id, stream.label, self.run_id), start, end,
                          generation=self.container_id, epoch=self.epoch)
        return Entries(self.source, entries_stream(self.container_id, stream), labels, texts,
                       stamps[0], token, nbytes, timestamps=stamps,
                       metadata=[self._metadata] * len(items))

    def ack(self, token: ReadToken) -> bool:
        """Settle one read; True if the committed cursor moved. Stale tokens are ignored."""
        if token.epoch != self.epoch or not isinstance(token.stream, tuple):
            return False
        label = token.stream[1]
        stream = Stream.STDOUT if label == Stream.STDOUT.label else Stream.STDERR
        window = self._unacked[stream]
        for read in window:
            if read.end == token.end:
                read.acked = True
                break
        else:
            return False
        moved = False
        committed = self.committed
        while window and window[0].acked:
            read = window.popleft()
            self._acked_seq[stream] = read.end
            if read.cursor is not None:
                committed = replace(committed, streams={**committed.streams,
                                                        stream: read.cursor})
                moved = True
        self.committed = committed
        return moved

    @property
    def settled(self) -> bool:
        """Nothing in the window and nothing waiting to be taken."""
        return (not self._out and not any(self._unacked.values())
                and not self._joining.holding_any)

    def rewind(self) -> int:
        """Forget the window; lines are taken again from the committed cursor (the caller
        restarts the follower). Returns the reads dropped."""
        dropped = sum(len(q) for q in self._unacked.values())
        self.epoch += 1
        for window in self._unacked.values():
            window.clear()
        self._out.clear()
        self._joining.reset()
        self._next_seq = dict(self._acked_seq)
        self.received = self.committed
        self._count_assembler()
        self._assembler = None
        self._filter = None
        self.session = None
        self.publish()
        return dropped

    # -- cursors ---------------------------------------------------------------------------

    def _quiet(self, stream: Stream, assembler: LineAssembler | None) -> bool:
        """Nothing of ``stream`` received and not committed."""
        return (not self._unacked[stream] and stream not in self._out
                and not self._joining.holding(stream)
                and (assembler is None or stream not in assembler.pending_streams()))

    def _resume_cursor(self, cursor: ContainerCursor,
                       assembler: LineAssembler | None) -> ContainerCursor:
        """``cursor`` with its floor raised past quiet streams (module docstring)."""
        if not cursor.streams:
            return cursor
        quiet = [s for s in Stream if s not in cursor.streams]
        if not quiet or not all(self._quiet(s, assembler) for s in quiet):
            return cursor
        floor = min(c.timestamp_ns for c in cursor.streams.values()) - self.floor_margin_ns
        if floor <= cursor.floor_ns:
            return cursor
        return ContainerCursor(floor, cursor.streams)

    def commit_cursor(self) -> ContainerCursor:
        """The cursor to store: every line before it was delivered."""
        return self._resume_cursor(self.committed, self._assembler)

    def publish(self) -> None:
        """Make :meth:`since_ns` visible to the follower thread (``published_since_ns``: one
        int, read without a lock)."""
        self.published_since_ns = self.since_ns()

    def since_ns(self) -> int:
        """The ``since`` (ns, 0: from the first line) a new request must use so that no line
        still needed is missing (right for Docker's inclusive and podman's exclusive since)."""
        cursor = self._resume_cursor(self.received, self._assembler)
        since = since_for(cursor.resume_ns(), SinceSemantics.EXCLUSIVE)
        return since.ns if since is not None else 0
