"""Config sections for reading lines and handing them to the sinks: sources and the dispatcher.

- ``sources.files[]`` (:class:`FileSourceConfig`): named groups of files to tail, chosen by
  ``include`` globs minus ``exclude`` globs, with static labels, an optional pipeline, where a
  new file starts (``end`` or ``beginning``), optional multiline joining
  (:class:`MultilineConfig`), the longest line kept whole and the text encoding (any codec
  Python knows), the bounds on descriptors (``rotate_wait``, ``close_inactive``,
  ``max_open_files``) and how long after a file's event it is read (``read_delay``). Names
  are unique among the file sources.
- ``sources.containers`` (:class:`ContainersConfig`): container logs read through the Docker
  Engine API at ``socket`` (``unix://``, ``tcp://``, ``http(s)://`` or ``ssh://``), filtered by
  labels and names, with static labels, where containers already running at the first start
  begin (``start_at``) and the longest line kept whole.
- ``processing`` (:class:`ProcessingConfig`): where the pipelines file and the routing file
  are (loaded and checked by :mod:`logcap.pipeline.loading`).
- ``dispatcher`` (:class:`DispatcherConfig`): the shards that batch, process and route lines,
  and the retries of failed deliveries (``retry_base_delay <= retry_max_delay``).

Sections and their invariants follow :mod:`logcap.config.section`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import attrs

from logcap.config.section import Problem, Section, check_name
from logcap.config.values import (
    choice,
    duration,
    flag,
    format_duration,
    integer,
    optional_text,
    regex,
    section_list,
    size,
    str_list,
    str_map,
    text,
)
from logcap.dispatch.retry import DEFAULT_RETRY_BASE_DELAY_S, DEFAULT_RETRY_MAX_DELAY_S
from logcap.runtime.mailbox import DEFAULT_MAILBOX_CAPACITY as DEFAULT_QUEUE_SIZE_BATCHES
from logcap.sources.files.generation import (
    DEFAULT_CLOSE_INACTIVE_S,
    DEFAULT_DRAIN_GRACE_S,
    DEFAULT_MAX_OPEN_FILES,
)
from logcap.sources.files.reader import DEFAULT_ENCODING
from logcap.sources.files.reader import MAX_LINE_BYTES as DEFAULT_MAX_LINE_BYTES
from logcap.sources.files.watcher import DEFAULT_READ_DELAY_S

__all__ = [
    "DEFAULT_DISPATCH_BATCH_LINES",
    "DEFAULT_DISPATCH_BATCH_TIMEOUT_S",
    "DEFAULT_DOCKER_SOCKET",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MULTILINE_MAX_BYTES",
    "DEFAULT_MULTILINE_MAX_LINES",
    "DEFAULT_MULTILINE_TIMEOUT_S",
    "DEFAULT_QUEUE_SIZE_BATCHES",
    "DEFAULT_RETRY_BASE_DELAY_S",
    "DEFAULT_RETRY_MAX_DELAY_S",
    "DEFAULT_SHARDS",
    "MAX_SHARDS",
    "MULTILINE_MATCH_CHOICES",
    "START_AT_CHOICES",
    "ContainersConfig",
    "DispatcherConfig",
    "FileSourceConfig",
    "MultilineConfig",
    "ProcessingConfig",
    "SourcesConfig",
]

START_AT_CHOICES = ("end", "beginning")
MULTILINE_MATCH_CHOICES = ("after", "before")
DEFAULT_MULTILINE_MAX_LINES = 500
DEFAULT_MULTILINE_TIMEOUT_S = 5.0
DEFAULT_MULTILINE_MAX_BYTES = DEFAULT_MAX_LINE_BYTES
"""An entry is cut before it passes this (Loki's default line limit: a longer entry would be
refused)."""
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

DEFAULT_SHARDS = 2
MAX_SHARDS = 256
DEFAULT_DISPATCH_BATCH_LINES = 5000
"""A shard's batch: with Loki, one push (5,000 lines of 200 bytes is about the 1 MiB of
Promtail's and Alloy's batches; each push costs a fixed ~1 ms of CPU, so small pushes are
dear)."""
DEFAULT_DISPATCH_BATCH_TIMEOUT_S = 0.2

_SOCKET_SCHEMES = ("unix", "tcp", "http", "https", "ssh")


def _check_socket(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in _SOCKET_SCHEMES or not (parts.netloc or parts.path):
        return (
            f"invalid Docker address {value!r} "
            "(expected e.g. unix:///var/run/docker.sock or tcp://host:2375)"
        )
    return None


def _check_encoding(value: str) -> str | None:
    try:
        codecs.lookup(value)
    except LookupError:
        return f"unknown text encoding {value!r} (e.g. utf-8, latin-1)"
    if "\n".encode(value) != b"\n":  # lines are split at the byte 0x0A
        return (f"text encoding {value!r} does not write a newline as the byte 0x0A "
                "(UTF-16 and UTF-32 files are not supported)")
    return None


@attrs.frozen
class MultilineConfig(Section):
    """Joins a file's lines into multi-line entries at the source, so positions commit only
    whole entries (semantics in :mod:`logcap.sources.multiline`): either ``firstline`` (a
    line that matches starts an entry) or ``pattern`` with ``negate`` and ``match`` (a line
    that matches, or not with ``negate``, continues the entry before it with ``match:
    after``, or is followed by the next line in its entry with ``before``). An entry is cut
    (nothing dropped) before it passes ``max_lines`` lines or ``max_bytes`` bytes, and an
    open entry is closed after ``timeout`` without a new line."""

    firstline: str = regex()
    pattern: str = regex()
    negate: bool = flag(False)
    match: str = choice("after", MULTILINE_MATCH_CHOICES)
    max_lines: int = integer(DEFAULT_MULTILINE_MAX_LINES, minimum=1)
    max_bytes: int = size(DEFAULT_MULTILINE_MAX_BYTES)
    timeout: float = duration(DEFAULT_MULTILINE_TIMEOUT_S)

    def problems(self) -> Iterator[Problem]:
        if self.firstline and self.pattern:
            yield Problem("firstline", "set firstline or pattern, not both",
                          ("firstline", "pattern"))
        elif not self.firstline and not self.pattern:
            yield Problem("pattern", "required but missing (or set firstline instead)",
                          ("pattern", "firstline"))
        elif self.firstline and (self.negate or self.match != "after"):
            yield Problem("firstline", "negate and match apply to pattern only (firstline "
                          "always starts an entry: use pattern to choose them)",
                          ("firstline", "negate", "match"))


@attrs.frozen
class FileSourceConfig(Section):
    """One named group of files (``include`` globs minus ``exclude`` globs) to tail."""

    name: str = text(required=True, check=check_name)
    include: tuple[str, ...] = str_list(required=True)
    exclude: tuple[str, ...] = str_list()
    labels: Mapping[str, str] = str_map(label_names=True)
    pipeline: str | None = optional_text(check=check_name)
    start_at: str = choice("end", START_AT_CHOICES)
    multiline: MultilineConfig | None = None
    max_line_bytes: int = size(DEFAULT_MAX_LINE_BYTES)
    encoding: str = text(DEFAULT_ENCODING, check=_check_encoding)
    rotate_wait: float = duration(DEFAULT_DRAIN_GRACE_S)
    """A rotated (renamed, deleted) file is read until it has not grown for this long, then
    closed."""
    close_inactive: float = duration(DEFAULT_CLOSE_INACTIVE_S)
    """A file with no new data for this long is closed; reopened when ``stat`` shows a change."""
    max_open_files: int = integer(DEFAULT_MAX_OPEN_FILES, minimum=1)
    """Descriptors this source keeps open at most: the least recently active fully read files
    are closed first (reopened when they change)."""
    decompress: bool = flag(False)
    """Compressed files (gzip, bzip2, xz, zstd, by magic) the globs match are read
    decompressed (a rotated ``.gz`` that is the tail of a followed file continues from that
    file's offset); false: they are skipped and counted."""
    read_delay: float = duration(DEFAULT_READ_DELAY_S, allow_zero=True)
    """How long after a file's first event (inotify) the source reads it (0: at once): one
    read per delay instead of one per write. Spent inside the batch timeout (the shard's
    deadline counts from the event), so a line is sent at most ``max(read_delay,
    dispatcher.batch_timeout)`` after its write, plus the time to read and push it."""


@attrs.frozen
class ContainersConfig(Section):
    """Container logs read through the Docker Engine API (the source named ``containers``).

    ``start_at``: where a container that is already running when logcap first sees it, and
    has no stored position, begins (``end``: its lines from now on; ``beginning``: its whole
    log). A container that starts while logcap runs is always read from its first line."""

    enabled: bool = flag(False)
    socket: str = text(DEFAULT_DOCKER_SOCKET, check=_check_socket)
    include_labels: Mapping[str, str] = str_map()
    include_names: tuple[str, ...] = str_list()
    exclude_names: tuple[str, ...] = str_list()
    labels: Mapping[str, str] = str_map(label_names=True)
    pipeline: str | None = optional_text(check=check_name)
    start_at: str = choice("end", START_AT_CHOICES)
    max_line_bytes: int = size(DEFAULT_MAX_LINE_BYTES)
    multiline: MultilineConfig | None = None
    """Joins each container stream's lines (stdout and stderr apart) into multi-line entries
    at the source; without it, the ``multiline`` stage of the pipeline a stream is routed to."""

    def problems(self) -> Iterator[Problem]:
        if self.enabled and not self.socket:
            yield Problem("socket", "required when containers are enabled", ("enabled", "socket"))


@attrs.frozen
class SourcesConfig(Section):
    """Where lines come from. No source at all is valid (the agent then idles)."""

    files: tuple[FileSourceConfig, ...] = section_list(FileSourceConfig)
    containers: ContainersConfig = attrs.field(factory=ContainersConfig)

    def problems(self) -> Iterator[Problem]:
        first_index: dict[str, int] = {}
        for index, source in enumerate(self.files):
            if not source.name:
                continue
            if source.name in first_index:
                other = first_index[source.name]
                yield Problem(
                    f"files[{index}].name",
                    f"duplicate source name {source.name!r} (also used by files[{other}])",
                    (f"files[{index}].name", f"files[{other}].name"),
                )
            else:
                first_index[source.name] = index


@attrs.frozen
class ProcessingConfig(Section):
    """Where the pipelines file (named pipelines) and the routing file (which pipeline for
    which source, path, container or labels) are; empty: none (the built-in pipelines can
    still be named by a source's ``pipeline``)."""

    pipelines_file: str = text("")
    routing_file: str = text("")


@attrs.frozen
class DispatcherConfig(Section):
    """The shards that batch, process and route lines; retries of failed deliveries."""

    shards: int = integer(DEFAULT_SHARDS, minimum=1, maximum=MAX_SHARDS)
    queue_size: int = integer(DEFAULT_QUEUE_SIZE_BATCHES, minimum=1)
    batch_size: int = integer(DEFAULT_DISPATCH_BATCH_LINES, minimum=1)
    batch_timeout: float = duration(DEFAULT_DISPATCH_BATCH_TIMEOUT_S)
    retry_base_delay: float = duration(DEFAULT_RETRY_BASE_DELAY_S)
    retry_max_delay: float = duration(DEFAULT_RETRY_MAX_DELAY_S)
    dlq_enabled: bool = flag(True)

    def problems(self) -> Iterator[Problem]:
        if self.retry_base_delay > self.retry_max_delay:
            yield Problem(
                "retry_base_delay",
                f"{format_duration(self.retry_base_delay)} must not exceed retry_max_delay "
                f"({format_duration(self.retry_max_delay)})",
                ("retry_base_delay", "retry_max_delay"),
            )
