"""The file sink: lines per source into ``<directory>/<source>.log``, rotated by size.

``format: raw`` writes each line as read; ``format: json`` writes one JSON object per line:
``{"ts": "<RFC 3339 ns>", "ts_ns": <int>, "source": ..., "stream": ..., "labels": {...}, "line":
...}``, plus ``"metadata": {...}`` when the line has structured metadata. ``ts_ns`` is the
line's own timestamp (:meth:`~logcap.messages.Entries.timestamp`), ``labels`` its part's labels
plus its own ``line_labels`` (the line's value wins). When a file would pass ``max_file_size``
it is renamed to ``<name>.1`` (older ones shift up to ``<name>.<max_files-1>``, the oldest is
deleted) and a new file is started. Each batch is written and flushed to the OS before the batch
is reported delivered, so a crash of logcap (even kill -9) loses nothing the sink acknowledged;
a power loss may lose the last seconds (the OS writes them back), the usual trade-off of a log
file.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from typing import IO

from logcap.messages import Entries, Outcome
from logcap.sinks.base import Verdict

__all__ = ["FileSink"]


def _rfc3339_ns(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class FileSink:
    def __init__(self, directory: str, fmt: str, max_file_size: int, max_files: int) -> None:
        if fmt not in ("raw", "json"):
            raise ValueError(f"file sink format must be raw or json, got {fmt!r}")
        self.directory = directory
        self.fmt = fmt
        self.max_file_size = max_file_size
        self.max_files = max(1, max_files)
        self._files: dict[str, IO[bytes]] = {}
        self._sizes: dict[str, int] = {}
        os.makedirs(directory, exist_ok=True)

    def deliver(self, parts: tuple[Entries, ...]) -> Verdict:
        chunks: dict[str, list[bytes]] = defaultdict(list)
        for part in parts:
            chunks[part.source].append(self._render(part))
        try:
            for source, pieces in chunks.items():
                self._write(source, b"".join(pieces))
        except OSError as exc:
            return Verdict(Outcome.RETRY, "io_error", detail=str(exc))
        return Verdict(Outcome.DELIVERED)

    def _render(self, part: Entries) -> bytes:
        if self.fmt == "raw":
            return ("\n".join(part.lines) + "\n").encode("utf-8", "backslashreplace")
        labels = dict(part.labels)
        line_labels, metadata = part.line_labels, part.metadata
        out = []
        for i, line in enumerate(part.lines):
            ts = part.timestamp(i)
            doc: dict[str, object] = {
                "ts": _rfc3339_ns(ts), "ts_ns": ts, "source": part.source,
                "stream": part.stream,
                "labels": {**labels, **dict(line_labels[i])} if line_labels else labels,
                "line": line}
            if metadata is not None and metadata[i]:
                doc["metadata"] = dict(metadata[i])
            out.append(json.dumps(doc, ensure_ascii=False))
        return ("\n".join(out) + "\n").encode("utf-8", "backslashreplace")

    def _path(self, source: str) -> str:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in source)
        return os.path.join(self.directory, f"{safe}.log")

    def _write(self, source: str, data: bytes) -> None:
        handle = self._files.get(source)
        if handle is None:
            handle = self._open(source)
        if self._sizes[source] and self._sizes[source] + len(data) > self.max_file_size:
            handle.close()
            self._rotate(self._path(source))
            handle = self._open(source)
        handle.write(data)
        handle.flush()
        self._sizes[source] += len(data)

    def _open(self, source: str) -> IO[bytes]:
        path = self._path(source)
        handle = open(path, "ab")  # noqa: SIM115 - kept open across batches
        self._files[source] = handle
        self._sizes[source] = handle.tell()
        return handle

    def _rotate(self, path: str) -> None:
        oldest = f"{path}.{self.max_files - 1}" if self.max_files > 1 else path
        if self.max_files > 1:
            if os.path.exists(oldest):
                os.unlink(oldest)
            for n in range(self.max_files - 2, 0, -1):
                if os.path.exists(f"{path}.{n}"):
                    os.replace(f"{path}.{n}", f"{path}.{n + 1}")
            os.replace(path, f"{path}.1")
        else:
            os.unlink(path)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
