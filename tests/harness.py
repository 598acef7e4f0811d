"""Run logcap as a real process and count numbered lines where they arrive.

Lines written by :class:`NumberedWriter` look like ``seq=<n> <padding>``; the counters read
``seq=`` numbers back from the file sink's JSON lines or the Loki test receiver.
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.actor_kit import wait_until

SEQ = re.compile(r"seq=(\d+)")
REPO = Path(__file__).resolve().parent.parent


@functools.cache
def ensure_bytecode() -> None:
    """Compile logcap's modules into ``__pycache__`` (once per process; up-to-date files are
    skipped), as installing the wheel does. Where ``PYTHONDONTWRITEBYTECODE`` is set (these
    machines set it) nothing else writes them, and every logcap process would compile its ~150
    modules from source at start: 0.1 s of CPU, counted in a benchmark's start-up and CPU."""
    compileall.compile_dir(str(REPO / "logcap"), quiet=1)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root); the test is skipped where
    mounting is not allowed."""
    import pytest

    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(tmp: Path, include: Iterable[str], **sections: Any) -> Path:
    """A config for ``tmp``: file sink to tmp/out, positions in tmp/positions, free ports."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": free_port(), "metrics_port": free_port()},
        "sources": {"files": [{"name": "app", "include": list(include),
                               "start_at": "beginning", "labels": {"job": "test"}}]},
        "dispatcher": {"shards": 2, "batch_size": 500, "batch_timeout": "50ms",
                       "retry_base_delay": "50ms", "retry_max_delay": "1s"},
        "sinks": {"file": {"enabled": True, "directory": str(tmp / "out"), "format": "json",
                           "max_file_size": "1GiB"}},
        "positions": {"directory": str(tmp / "positions"), "flush_interval": "100ms"},
        "supervision": {"shutdown_timeout": "5s"},
        "logging": {"level": "info"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = dict(config[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            config[key] = merged
        else:
            config[key] = value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class LogcapProcess:
    """``python -m logcap run -c CONFIG`` as a child process, its log in ``log_path``;
    ``wrapper``: a command it runs under (``valgrind ...``), ``start_timeout``: how long it
    may take to become healthy."""

    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = (), start_timeout: float = 30) -> None:
        self.config = config
        self.wrapper = tuple(wrapper)
        self.start_timeout = start_timeout
        self.log_path = config.parent / "logcap.log"
        data = yaml.safe_load(config.read_text())
        self.port = data["server"]["port"]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_healthy: bool = True) -> LogcapProcess:
        ensure_bytecode()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "logcap", "run", "-c", str(self.config)],
            stdout=log, stderr=log, cwd=str(self.config.parent), env=self.env,
        )
        log.close()
        if wait_healthy:
            wait_until(self.healthy, timeout=self.start_timeout, what="logcap healthy")
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"logcap exited {self.proc.returncode}: {self.tail_log()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).ok
        except requests.RequestException:
            return False

    def api(self, path: str) -> Any:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5).json()

    def api_text(self, path: str) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5).text

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class NumberedWriter:
    """Appends ``seq=<n>`` lines to a file, optionally at a rate, on its own thread."""

    def __init__(self, path: Path, line_bytes: int = 100) -> None:
        self.path = path
        self.next = 0
        self.pad = "x" * max(0, line_bytes - 20)

    def write(self, count: int, flush_every: int = 100) -> None:
        with open(self.path, "a") as fh:
            for i in range(count):
                fh.write(f"seq={self.next} {self.pad}\n")
                self.next += 1
                if i % flush_every == 0:
                    fh.flush()

    def write_at_rate(self, count: int, per_second: float, stop: threading.Event | None = None,
                      chunk: int = 100) -> None:
        start = time.monotonic()
        written = 0
        pause = threading.Event()
        while written < count and not (stop and stop.is_set()):
            n = min(chunk, count - written)
            self.write(n, flush_every=n)
            written += n
            ahead = written / per_second - (time.monotonic() - start)
            if ahead > 0:
                pause.wait(ahead)


def file_sink_counts(out_dir: Path) -> Counter[int]:
    """seq numbers found in the file sink's JSON lines (all rotated files included)."""
    counts: Counter[int] = Counter()
    for path in sorted(out_dir.glob("*.log*")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                try:
                    line = json.loads(raw)["line"]
                except (ValueError, KeyError):
                    continue
                match = SEQ.search(line)
                if match:
                    counts[int(match.group(1))] += 1
    return counts


def missing_and_duplicates(counts: Counter[int], total: int) -> tuple[list[int], int]:
    missing = [n for n in range(total) if counts.get(n, 0) == 0]
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    return missing, duplicates


class ApiProbe:
    """Asks /health, /stats and /metrics in turn on a thread; records the slowest answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.slowest = 0.0
        self.slowest_path = ""
        self.failures: list[str] = []
        self.paused = threading.Event()
        """Set: ask nothing (e.g. while idle CPU is measured)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.paused.is_set():
                self._stop.wait(0.2)
                continue
            for path in ("/health", "/stats", "/metrics"):
                start = time.monotonic()
                try:
                    requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
                except requests.RequestException as exc:
                    self.failures.append(f"{path}: {exc}")
                took = time.monotonic() - start
                if took > self.slowest:
                    self.slowest, self.slowest_path = took, path
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


MODULES_PROBE = '''\
"""Loaded into the agent through PYTHONPATH: once the test creates $LOGCAP_TEST_ASK, write the
names of the loaded modules to $LOGCAP_TEST_MODULES."""
import os, sys, threading, time

def _answer():
    ask, out = os.environ["LOGCAP_TEST_ASK"], os.environ["LOGCAP_TEST_MODULES"]
    while not os.path.exists(ask):
        time.sleep(0.05)
    with open(out + ".tmp", "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
    os.rename(out + ".tmp", out)

threading.Thread(target=_answer, name="modules-probe", daemon=True).start()
'''


def agent_modules(config: Path, ready: Callable[[], bool], what: str,
                  timeout: float = 30) -> set[str]:
    """The names in ``sys.modules`` of an agent run on ``config``, read once ``ready()`` is
    true (a ``sitecustomize`` on its ``PYTHONPATH`` writes them when asked); the agent is
    stopped before this returns."""
    probe_dir = config.parent / "modules-probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(MODULES_PROBE)
    ask, modules = config.parent / "modules-ask", config.parent / "modules"
    path = os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")]))
    proc = LogcapProcess(config, env={"PYTHONPATH": path, "LOGCAP_TEST_ASK": str(ask),
                                      "LOGCAP_TEST_MODULES": str(modules)}).start()
    try:
        wait_until(ready, timeout=timeout, what=what)
        ask.touch()
        wait_until(modules.exists, timeout=10, what="the agent's module list")
        return set(modules.read_text().split())
    finally:
        proc.stop()
