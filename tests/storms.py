"""File-rotation storms run against the real process, counted at the Loki test receiver.

Shared by the default-suite tests (short forms, ``tests/test_e2e_storms.py``) and the chaos
scenario (``chaos/rotation_storm.py``, the 30 s forms of issue 9). Lines are numbered across
all files (``seq=<n>``); a storm returns what arrived (Loki's exact-duplicate rule applied:
what a query would return) and the most descriptors logcap held while it ran.

- :func:`rename_storm`: ``files`` logs written at ``rate`` lines/s in total, each renamed away
  every ``period`` s as logrotate's ``create`` mode does (``app.log`` -> ``app.log.1`` ->
  ... -> ``app.log.<keep>``, the oldest deleted), the writer reopening its log by name.
- :func:`recreate_storm`: ``app.log`` written ``lines`` lines in ``chunks`` pieces, deleted
  and created again ``times`` times with ``pause`` s before each recreation (0: none). The
  file system here (ext4) gives a new file the inode number just freed; the result says how
  many generations reused one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import LokiReceiver

PAD = "x" * 60


@dataclass
class StormResult:
    total: int
    missing: list[int]
    duplicates_kept: int
    max_fds: int
    inode_reuses: int = 0
    elapsed_s: float = 0.0
    rotations: dict[str, int] | None = None
    """The source's rotation counts from /health at the end."""

    def summary(self) -> str:
        return (f"{self.total} lines, {len(self.missing)} lost, {self.duplicates_kept} "
                f"duplicates kept, max {self.max_fds} fds, {self.inode_reuses} inode reuses, "
                f"{self.elapsed_s:.1f} s, rotations seen {self.rotations}")


class FdSampler:
    """Samples a process's open descriptors on a thread; ``peak`` is the most seen."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self._process = psutil.Process(pid)
        self._every = every_s
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.peak = max(self.peak, self._process.num_fds())
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _config(tmp: Path, receiver: LokiReceiver, include: str, **source: Any) -> Path:
    return make_config(
        tmp, [include],
        sources={"files": [{"name": "app", "include": [include], "start_at": "beginning",
                            "labels": {"job": "storm"}, **source}]},
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        logging={"level": os.environ.get("STORM_LOG_LEVEL", "warning")},
    )


def _collect(receiver: LokiReceiver, total: int, deadline_s: float) -> tuple[list[int], int]:
    def arrived() -> bool:
        counts = receiver.received_seq_numbers(dedupe=True)
        return all(counts.get(n) for n in range(total))

    try:
        wait_until(arrived, timeout=deadline_s, what=f"{total} lines at the receiver")
    except AssertionError:
        pass
    counts = receiver.received_seq_numbers(dedupe=True)
    missing = [n for n in range(total) if not counts.get(n)]
    return missing, sum(c - 1 for c in counts.values() if c > 1)


def _finish(proc: LogcapProcess, sampler: FdSampler, receiver: LokiReceiver, total: int,
            deadline_s: float) -> tuple[list[int], int, dict[str, int]]:
    """Wait for the lines, stop sampling, stop logcap (SIGTERM, exit 0): (missing, dups,
    the rotations /health counted)."""
    try:
        missing, dups = _collect(receiver, total, deadline_s)
        sampler.stop()
        rotations = proc.api("/health")["components"]["root/sources/app"]["rotations"]
        assert proc.stop() == 0, proc.tail_log()
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()
    return missing, dups, rotations


def _rotate(path: Path, keep: int) -> None:
    oldest = path.with_name(f"{path.name}.{keep}")
    if oldest.exists():
        oldest.unlink()
    for k in range(keep - 1, 0, -1):
        src = path.with_name(f"{path.name}.{k}")
        if src.exists():
            src.rename(path.with_name(f"{path.name}.{k + 1}"))
    if path.exists():
        path.rename(path.with_name(f"{path.name}.1"))


def rename_storm(tmp: Path, include: str, seconds: float, rate: float = 5000, files: int = 5,
                 period: float = 0.1, keep: int = 5, deadline_s: float = 90) -> StormResult:
    """See the module docstring; ``include`` is a glob under ``tmp/logs`` (``*.log``...)."""
    logs = tmp / "logs"
    logs.mkdir()
    paths = [logs / f"app{i}.log" for i in range(files)]
    for path in paths:
        path.touch()
    with LokiReceiver() as receiver:
        proc = LogcapProcess(_config(tmp, receiver, str(logs / include))).start()
        assert proc.proc is not None
        sampler = FdSampler(proc.proc.pid)
        seq = 0
        start = time.monotonic()
        next_rotation = start + period
        tick = 0.01
        per_tick = rate * tick / files
        carry = 0.0
        while time.monotonic() - start < seconds:
            carry += per_tick
            n = int(carry)
            carry -= n
            for path in paths:
                with open(path, "a") as fh:
                    fh.write("".join(f"seq={seq + i} {PAD}\n" for i in range(n)))
                seq += n
            now = time.monotonic()
            if now >= next_rotation:
                for path in paths:
                    _rotate(path, keep)
                    path.touch()
                next_rotation += period
            ahead = start + (seq / rate) - time.monotonic()
            time.sleep(max(0.0, min(ahead, tick)))
        elapsed = time.monotonic() - start
        missing, dups, rotations = _finish(proc, sampler, receiver, seq, deadline_s)
    return StormResult(seq, missing, dups, sampler.peak, elapsed_s=elapsed,
                       rotations=rotations)


def recreate_storm(tmp: Path, pause: float, times: int = 20, lines: int = 500,
                   chunks: int = 5, chunk_gap: float = 0.01, rotate_wait: str = "100ms",
                   deadline_s: float = 60) -> StormResult:
    """See the module docstring; a short ``rotate_wait`` makes logcap close a deleted file
    soon, so that its inode number is free for the next one (inode reuse)."""
    logs = tmp / "logs"
    logs.mkdir()
    path = logs / "app.log"
    with LokiReceiver() as receiver:
        config = _config(tmp, receiver, str(logs / "*.log"), rotate_wait=rotate_wait)
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        sampler = FdSampler(proc.proc.pid)
        seq = 0
        seen_inodes: set[int] = set()
        reuses = 0
        start = time.monotonic()
        for _ in range(times):
            with open(path, "a") as fh:
                ino = os.fstat(fh.fileno()).st_ino
                reuses += ino in seen_inodes
                seen_inodes.add(ino)
                per = lines // chunks
                for _ in range(chunks):
                    fh.write("".join(f"seq={seq + i} {PAD}\n" for i in range(per)))
                    fh.flush()
                    seq += per
                    time.sleep(chunk_gap)
            path.unlink()
            if pause:
                time.sleep(pause)
        path.touch()
        elapsed = time.monotonic() - start
        missing, dups, rotations = _finish(proc, sampler, receiver, seq, deadline_s)
    return StormResult(seq, missing, dups, sampler.peak, reuses, elapsed, rotations)
