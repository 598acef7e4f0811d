"""Numbered lines written round-robin to a few files at a set rate, on a thread.

Line *n* is ``seq=<n> <padding>``; numbers are global and increase in each file, 100 lines to
a file, then the next file. Each file is its own stream in Loki (its ``filename`` label).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

__all__ = ["CHUNK_LINES", "RoundRobinWriter"]

CHUNK_LINES = 100


class RoundRobinWriter:
    def __init__(self, directory: Path, files: int, line_bytes: int = 120) -> None:
        self.paths = [directory / f"app-{k}.log" for k in range(files)]
        self.pad = "x" * max(0, line_bytes - 20)
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, rate: float, duration_s: float) -> RoundRobinWriter:
        self._thread = threading.Thread(target=self._run, args=(rate, duration_s),
                                        name="chaos-writer", daemon=True)
        self._thread.start()
        return self

    def _run(self, rate: float, duration_s: float) -> None:
        handles = [open(path, "a", encoding="utf-8") for path in self.paths]  # noqa: SIM115
        try:
            started = time.monotonic()
            turn = 0
            while not self._stop.is_set():
                elapsed = time.monotonic() - started
                if elapsed >= duration_s:
                    break
                fh = handles[turn % len(handles)]
                turn += 1
                first = self.written
                fh.write("".join(f"seq={n} {self.pad}\n"
                                 for n in range(first, first + CHUNK_LINES)))
                fh.flush()
                self.written = first + CHUNK_LINES
                ahead = self.written / rate - (time.monotonic() - started)
                if ahead > 0:
                    self._stop.wait(ahead)
        finally:
            for fh in handles:
                fh.close()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(10)
