"""ContainerSource: the :class:`~logcap.sources.base.Source` of ``sources.containers``.

Threads (all daemon): one :class:`~logcap.sources.containers.watch.EngineWatch` (discovery,
events, the engine's reachability) and one
:class:`~logcap.sources.containers.follower.Follower` per followed container. They put what
they read on one bounded inbox (:data:`INBOX_ITEMS` items) and call the shell's ``wake``; this
class runs in the shell's thread and never blocks: :meth:`read` takes from the inbox what the
read window allows and turns it into :class:`~logcap.messages.Entries`, one per container
stream, through each container's :class:`~logcap.sources.containers.reads.ContainerReads`.

Following
    A running container that passes the filters (:class:`~logcap.sources.containers.filters.
    ContainerFilter`) gets a follower. Its reads start from its stored cursor if there is one;
    else from its first line, except for containers already running when logcap first lists
    the engine with ``start_at: end`` (from the current second on). A container seen again
    (a replayed event, a re-list) is not followed twice; one that stopped and started again is
    followed again from its cursor; a rename changes its labels (and, if the filters now
    exclude it, stops its follower). A removed container's position is forgotten once its last
    lines are delivered.

Lines
    Labels: the section's static ``labels``, then ``container`` (name), ``image``,
    ``compose_service`` and ``compose_project`` when the container has the compose labels,
    and ``stream`` (stdout or stderr). Each line's timestamp is the engine's
    (``Entries.timestamps``); the container ID is structured metadata ``container_id``.

Multi-line entries
    ``multiline_for(stream, labels)`` gives the multiline spec of a container stream (its
    ``Entries.stream`` and labels; None: lines as they are), asked when a container is first
    followed and again when a rename changes its labels. Each stream is joined apart (see
    :mod:`logcap.sources.containers.joining`): an Entries line is a whole entry, and cursors
    commit only whole entries. An open entry is closed after its timeout only once the inbox
    is drained (its next lines are not waiting in it), and at the end of the container's log.
    Entries closed are counted by reason (``logcap_source_multiline_entries_total``,
    ``multiline`` in the status).

Watchdog (:meth:`on_tick`, every second)
    A follower whose container died more than :data:`DIE_GRACE_S` ago and is still streaming,
    or that had no data for :data:`IDLE_RESTART_S`, is restarted (a stuck read; it re-filters
    from the cursor, so nothing is sent twice); when the engine becomes unreachable every
    follower is restarted (its reads then fail and retry with backoff, instead of blocking on
    a hung daemon).

Health
    :meth:`status` has ``degraded`` (the reason) while the engine is unreachable, the engine's
    state, and per container: lines, bytes, reconnects, reassembled and truncated lines.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from logcap.messages import Labels
from logcap.metrics import (
    CONTAINER_ENGINE_UP,
    CONTAINER_REASSEMBLED,
    CONTAINER_RECONNECTS,
    CONTAINERS_FOLLOWED,
    SOURCE_MULTILINE_ENTRIES,
)
from logcap.origin import CONTAINER_KIND, Buffered, ReadToken
from logcap.sources.base import Reading
from logcap.sources.containers.cursor import ContainerCursor
from logcap.sources.containers.cursor_format import (
    CursorFormatError,
    decode_cursor,
    encode_cursor,
)
from logcap.sources.containers.engine import ContainerInfo, Engine
from logcap.sources.containers.follower import Chunk, Ended, Follower, Opened, Trouble
from logcap.sources.containers.framing import MAX_FRAME_BYTES, Stream
from logcap.sources.containers.reads import ContainerReads
from logcap.sources.containers.settings import ContainerSettings
from logcap.sources.containers.streams import MultilineFor, StreamRules, stream_labels
from logcap.sources.containers.watch import Died, EngineStatus, EngineWatch, Removed, Seen
from logcap.sources.multiline import JoinCounts
from logcap.state.positions import ContainerPosition
from logcap.state.positions_messages import (
    CommitContainers,
    ForgetContainers,
    GetContainerPositions,
    PositionsUpdate,
    RecordContainers,
)

__all__ = ["DIE_GRACE_S", "IDLE_RESTART_S", "INBOX_ITEMS", "ContainerSettings",
           "ContainerSource"]

log = logging.getLogger(__name__)

INBOX_ITEMS = 256
"""Items (reads of at most 64 KiB) the followers may queue ahead of the source."""
WINDOW_READS = 64
"""Unacknowledged Entries per container."""
WINDOW_BYTES = 32 * 1024 * 1024
"""Unacknowledged bytes per source."""
READ_ITEMS = 64
"""Inbox items taken by one :meth:`ContainerSource.read`."""
DIE_GRACE_S = 3.0
IDLE_RESTART_S = 60.0
TICK_S = 1.0
CLOSE_WAIT_S = 2.0
"""How long :meth:`ContainerSource.close` waits for its threads in all (they are daemons)."""
_NS_PER_S = 1_000_000_000


@dataclass(slots=True)
class _Container:
    info: ContainerInfo
    reads: ContainerReads
    follower: Follower | None = None
    died_at: float | None = None
    removed: bool = False
    reconnects: int = 0
    trouble: str = ""
    labels: dict[Stream, Labels] = field(default_factory=dict)


class ContainerSource:
    """The container source (module docstring). ``engine_factory(url)`` makes an engine client
    (each thread gets its own); ``multiline_for`` chooses the joining of each stream."""

    kind = CONTAINER_KIND
    positions_query = GetContainerPositions()
    tick_interval_s = TICK_S

    def __init__(self, settings: ContainerSettings,
                 engine_factory: Callable[[str], Engine] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 clock_ns: Callable[[], int] = time.time_ns,
                 multiline_for: MultilineFor = lambda stream, labels: None) -> None:
        self.name = settings.source
        self.settings = settings
        self._engine_factory = engine_factory or _docker_engine
        self.clock = clock
        self.clock_ns = clock_ns
        self.run_id = uuid.uuid4().hex[:12]
        self.inbox: queue.Queue[object] = queue.Queue(INBOX_ITEMS)
        self._wake: Callable[[], None] = lambda: None
        self._watch: EngineWatch | None = None
        self._containers: dict[str, _Container] = {}
        self._stored: dict[str, ContainerCursor] = {}
        self._listed_once = False
        self._engine_ok: bool | None = None
        self._engine_reason = "not connected yet"
        self.errors: dict[str, str] = {}
        self.rules = StreamRules(multiline_for)
        self.joined = JoinCounts()
        self._ready: set[str] = set()
        """Containers whose reads have entries ready outside of a read (a rename)."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, stored: Sequence[Any], buffered: Buffered,
              wake: Callable[[], None]) -> None:
        """Begin from the stored cursors (``buffered`` is not used: a container's lines are
        numbered per process life, so the buffer's ranges cannot name them)."""
        for pos in stored:
            if not isinstance(pos, ContainerPosition):
                continue
            try:
                self._stored[pos.id] = decode_cursor(pos.cursor)
            except CursorFormatError as exc:
                log.error("%s: stored position of %s (%s) ignored: %s; the container is read "
                          "from its first line", self.name, pos.name, pos.id[:12], exc)
                self._stored[pos.id] = ContainerCursor()
        self._wake = wake
        url = self.settings.socket
        self._watch = EngineWatch(lambda: self._engine_factory(url), self.inbox, wake)
        self._watch.start()
        CONTAINER_ENGINE_UP.labels(self.name).set(0)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        for c in self._containers.values():
            if c.follower is not None:
                c.follower.stop()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for c in self._containers.values():
            if c.follower is not None:
                c.follower.join(max(0.0, deadline - time.monotonic()))
        if self._watch is not None:
            self._watch.join(max(0.0, deadline - time.monotonic()))

    # -- reading ---------------------------------------------------------------------------

    def _window_full(self) -> bool:
        total = 0
        for c in self._containers.values():
            reads, nbytes = c.reads.unacked()
            if reads >= WINDOW_READS:
                return True
            total += nbytes
        return total >= WINDOW_BYTES

    def read(self) -> Reading:
        reading = Reading()
        touched: set[str] = set()
        taken = 0
        while taken < READ_ITEMS and not self._window_full():
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            taken += 1
            self._take(item, touched, reading)
        if self.inbox.empty():
            self._close_due(touched)
        touched |= self._ready
        self._ready.clear()
        for cid in touched:
            c = self._containers.get(cid)
            if c is None:
                continue
            c.reads.publish()
            for entries in c.reads.take(c.labels.__getitem__, self.settings.batch_lines):
                reading.entries.append(entries)
                reading.lines += len(entries.lines)
                reading.bytes += entries.bytes
            reassembled, truncated = c.reads.take_counts()
            reading.truncated_lines += truncated
            if reassembled:
                CONTAINER_REASSEMBLED.labels(self.name).inc(reassembled)
            self._forget_if_done(c, reading.updates)
        for reason, count in self.joined.take().items():
            SOURCE_MULTILINE_ENTRIES.labels(self.name, reason).inc(count)
        reading.more = not self.inbox.empty() and not self._window_full()
        return reading

    def _close_due(self, touched: set[str]) -> None:
        """Close the open entries past their timeout (every line read so far was fed)."""
        now = self.clock()
        for cid, c in self._containers.items():
            if c.reads.joining and c.reads.flush_due(now):
                touched.add(cid)

    def _take(self, item: object, touched: set[str], reading: Reading) -> None:
        if isinstance(item, Chunk):
            c = self._containers.get(item.container_id)
            if c is not None and c.reads.add(item.session, item.frames):
                touched.add(item.container_id)
        elif isinstance(item, Opened):
            self._opened(item)
        elif isinstance(item, Ended):
            self._ended(item, touched)
        elif isinstance(item, Trouble):
            c = self._containers.get(item.container_id)
            if c is not None and c.trouble != item.reason:
                log.warning("%s: %s: %s (retrying with backoff)", self.name, c.info.name,
                            item.reason)
                c.trouble = item.reason
        elif isinstance(item, Seen):
            started: list[ContainerPosition] = []
            for info in item.infos:
                self._seen(info, started)
            if started:
                reading.updates.append(RecordContainers(tuple(started)))
            self._listed_once = True
        elif isinstance(item, Died):
            c = self._containers.get(item.container_id)
            if c is not None:
                c.died_at = self.clock()
        elif isinstance(item, Removed):
            c = self._containers.get(item.container_id)
            if c is not None:
                c.removed = True
                touched.add(item.container_id)
        elif isinstance(item, EngineStatus):
            self._engine_status(item)

    def _opened(self, item: Opened) -> None:
        c = self._containers.get(item.container_id)
        if c is None or c.follower is None:
            return
        if item.session > 1:
            c.reconnects += 1
            CONTAINER_RECONNECTS.labels(self.name).inc()
        c.trouble = ""
        if c.info.tty != item.tty:
            c.info = ContainerInfo(c.info.id, c.info.name, c.info.image, c.info.labels,
                                   item.tty, c.info.running)
        if not c.reads.opened(item.session, item.since_ns, item.tty, ordered=item.polled):
            c.reads.publish()
            c.follower.restart()  # it asked from later than the lines still needed

    def _ended(self, item: Ended, touched: set[str]) -> None:
        c = self._containers.get(item.container_id)
        if c is None:
            return
        if c.reads.finish():
            touched.add(item.container_id)
        c.follower = None
        c.removed = c.removed or item.gone
        touched.add(item.container_id)
        CONTAINERS_FOLLOWED.labels(self.name).set(self._followed())

    def _forget_if_done(self, c: _Container, updates: list[PositionsUpdate]) -> None:
        if c.removed and c.follower is None and c.reads.settled:
            del self._containers[c.info.id]
            self._stored.pop(c.info.id, None)
            updates.append(ForgetContainers((c.info.id,)))

    def _followed(self) -> int:
        return sum(1 for c in self._containers.values() if c.follower is not None)

    def _seen(self, info: ContainerInfo, started: list[ContainerPosition]) -> None:
        """Follow ``info`` if it is to be (the module docstring); the starting positions of
        containers followed for the first time go on ``started``."""
        follows = self.settings.filter.follows(info.name, info.labels)
        c = self._containers.get(info.id)
        if not info.running:
            # stopped while logcap was down, with lines not shipped: read its log to the end
            if c is None and follows and info.id in self._stored:
                self._add(info, started)
            return
        if c is not None:
            if c.info.name != info.name or c.info.labels != info.labels:
                c.info = ContainerInfo(info.id, info.name, info.image, info.labels,
                                       c.info.tty, info.running)
                c.labels = stream_labels(self.settings.labels, info)
                if c.reads.set_rules(self.rules.of(info.id, c.labels)):
                    self._ready.add(info.id)
            if not follows:
                if c.follower is not None:
                    log.info("%s: %s no longer matches the filters; not followed",
                             self.name, info.name)
                    c.follower.stop()
                    c.follower = None
                    CONTAINERS_FOLLOWED.labels(self.name).set(self._followed())
                return
            if c.follower is None and not c.removed:
                c.died_at = None
                self._follow(c)
            return
        if follows:
            self._add(info, started)

    def _add(self, info: ContainerInfo, started: list[ContainerPosition]) -> None:
        cursor = self._stored.get(info.id)
        if cursor is None:
            cursor = ContainerCursor()
            if not self._listed_once and self.settings.start_at == "end":
                now = self.clock_ns()
                cursor = ContainerCursor(floor_ns=now - now % _NS_PER_S)
            # written before its first line is read (RecordContainers): should logcap be
            # killed and the container exit before a line is committed, the next start still
            # knows to read its log to the end
            self._stored[info.id] = cursor
            started.append(ContainerPosition(info.id, info.name, cursor.resume_ns(),
                                             encode_cursor(cursor), 0.0))
        labels = stream_labels(self.settings.labels, info)
        reads = ContainerReads(self.name, info.id, self.run_id, cursor,
                               max_line_bytes=self.settings.max_line_bytes,
                               clock_ns=self.clock_ns, rules=self.rules.of(info.id, labels),
                               counts=self.joined, clock=self.clock)
        c = _Container(info, reads, labels=labels)
        self._containers[info.id] = c
        log.info("%s: following %s (%s, %s)", self.name, info.name, info.id[:12], info.image)
        self._follow(c)

    def _follow(self, c: _Container) -> None:
        url = self.settings.socket
        reads = c.reads
        c.follower = Follower(c.info, lambda: self._engine_factory(url), self.inbox, self._wake,
                              lambda: reads.published_since_ns, max_frame_bytes=max(MAX_FRAME_BYTES,
                                                                  reads.max_line_bytes + 64))
        c.follower.start()
        CONTAINERS_FOLLOWED.labels(self.name).set(self._followed())

    def _engine_status(self, status: EngineStatus) -> None:
        was = self._engine_ok
        self._engine_ok = status.ok
        self._engine_reason = status.reason
        CONTAINER_ENGINE_UP.labels(self.name).set(1 if status.ok else 0)
        if status.ok:
            self.errors.pop("engine", None)
            return
        self.errors["engine"] = status.reason
        if was is not False:  # became unreachable: do not wait on a hung daemon
            for c in self._containers.values():
                if c.follower is not None:
                    c.follower.restart()

    # -- acks, rewind, ticks ---------------------------------------------------------------

    def ack(self, tokens: Sequence[ReadToken]) -> list[PositionsUpdate]:
        moved: dict[str, _Container] = {}
        for token in tokens:
            if token.kind != CONTAINER_KIND or token.source != self.name:
                continue
            c = self._containers.get(token.generation)
            if c is not None and c.reads.ack(token):
                moved[token.generation] = c
        updates: list[PositionsUpdate] = []
        if moved:
            positions = []
            for cid, c in moved.items():
                cursor = c.reads.commit_cursor()
                positions.append(ContainerPosition(cid, c.info.name, cursor.resume_ns(),
                                                   encode_cursor(cursor), 0.0))
                self._stored[cid] = cursor
            updates.append(CommitContainers(tuple(positions)))
        for c in list(self._containers.values()):
            self._forget_if_done(c, updates)
        return updates

    def take_updates(self) -> list[PositionsUpdate]:
        """None: a container resumes by its cursor, never past the disk buffer's ranges."""
        return []

    def rewind(self, selects: Callable[[str], bool], buffered: Buffered | None = None) -> int:
        """Re-read the selected containers' streams from their committed cursors. ``buffered``
        is not used: a container resumes by its cursor and the resume filter, which skip what
        was shipped (the disk buffer's ranges are byte ranges of files)."""
        dropped = 0
        for c in self._containers.values():
            cid = c.info.id
            if not any(selects(f"{cid}/{s.label}") for s in Stream):
                continue
            dropped += c.reads.rewind()
            if c.follower is not None:
                c.follower.restart()
            elif not c.removed:
                self._follow(c)
        return dropped

    def on_wake(self) -> None:
        """Nothing to look at: :meth:`read` takes what the threads put on the inbox."""

    def on_tick(self) -> None:
        now = self.clock()
        for c in self._containers.values():
            f = c.follower
            if f is None or not f.streaming:
                continue
            if c.died_at is not None and now - c.died_at > DIE_GRACE_S:
                c.died_at = None
                f.restart()
            elif now - f.last_data_at > IDLE_RESTART_S:
                f.last_data_at = now
                f.restart()

    def status(self) -> dict[str, Any]:
        containers = []
        for c in sorted(self._containers.values(), key=lambda c: c.info.name):
            reads, nbytes = c.reads.unacked()
            containers.append({
                "id": c.info.id[:12], "name": c.info.name, "image": c.info.image,
                "followed": c.follower is not None, "lines": c.reads.lines,
                "bytes": c.reads.bytes, "reconnects": c.reconnects,
                "reassembled_lines": c.reads.reassembled_lines,
                "truncated_lines": c.reads.truncated_lines,
                "skipped_on_resume": c.reads.skipped,
                "unacked_reads": reads, "unacked_bytes": nbytes,
                **({"trouble": c.trouble} if c.trouble else {}),
            })
        engine = {"socket": self.settings.socket,
                  "status": "ok" if self._engine_ok else "unreachable",
                  **({} if self._engine_ok else {"reason": self._engine_reason})}
        out: dict[str, Any] = {
            "errors": dict(self.errors), "engine": engine,
            "inflight_bytes": sum(c.reads.unacked()[1] for c in self._containers.values()),
            "stats": {"containers_followed": self._followed(),
                      "lines": sum(c.reads.lines for c in self._containers.values()),
                      "bytes": sum(c.reads.bytes for c in self._containers.values()),
                      "reconnects": sum(c.reconnects for c in self._containers.values()),
                      **({"multiline": dict(self.joined.total)} if self.joined.total else {}),
                      "containers": containers},
        }
        if not self._engine_ok:
            out["degraded"] = f"container engine {self.settings.socket} unreachable: " \
                              f"{self._engine_reason}"
        return out


def _docker_engine(url: str) -> Engine:
    from logcap.sources.containers.engine import DockerEngine

    return DockerEngine(url)
