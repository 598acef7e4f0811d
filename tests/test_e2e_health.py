"""Health that tells the truth, through the real process: Loki refusing connections turns
``/health`` degraded within ``server.sink_degraded_after`` and back to ok after it recovers,
with one log line (URL and reason) at the first failure and none lost; ``/ready``; positions
that cannot be written (a full tmpfs) degrade health; an include matching nothing too."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config, small_tmpfs
from tests.loki_receiver import LokiReceiver

SINK = "root/sinks/loki"
THRESHOLD_S = 1.0


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def _health(proc: LogcapProcess) -> tuple[int, dict]:  # type: ignore[type-arg]
    resp = requests.get(f"http://127.0.0.1:{proc.port}/health", timeout=5)
    return resp.status_code, resp.json()


def _write(path: Path, start: int, count: int) -> None:
    with open(path, "a") as fh:
        fh.writelines(f"seq={n} health\n" for n in range(start, start + count))


def test_loki_refusing_connections_degrades_health_then_it_recovers_with_nothing_lost(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = make_config(
        tmp_path, [str(logs / "*.log")],
        server={"sink_degraded_after": f"{THRESHOLD_S}s"},
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "timeout": "2s"}})
    app = logs / "app.log"
    _write(app, 0, 100)
    proc = LogcapProcess(config).start()
    try:
        assert requests.get(f"http://127.0.0.1:{proc.port}/ready", timeout=5).json()["ready"]
        wait_until(lambda: len(receiver.received_seq_numbers()) == 100, timeout=30,
                   what="the first lines")
        assert _health(proc)[1]["components"][SINK]["health"] == "ok"
        url = receiver.push_url
        receiver.stop()  # the port is closed: connections are refused
        stopped = time.monotonic()
        _write(app, 100, 100)

        def degraded() -> bool:
            code, body = _health(proc)
            sink = body["components"][SINK]
            return code == 200 and body["status"] == "degraded" \
                and sink["health"] == "degraded"

        wait_until(degraded, timeout=30, what="the sink degraded")
        print(f"\nLoki refusing: /health degraded {time.monotonic() - stopped:.1f}s after the "
              f"stop (threshold {THRESHOLD_S:.0f}s)")
        sink = _health(proc)[1]["components"][SINK]
        assert "connection refused" in sink["reason"] and url in sink["reason"]
        assert sink["since"] is not None
        first = [line for line in proc.log_path.read_text().splitlines()
                 if f"request to {url} failed" in line]
        assert len(first) == 1 and "connection refused" in first[0], first
        receiver.start()  # same port
        restarted = time.monotonic()
        wait_until(lambda: _health(proc)[1]["components"][SINK]["health"] == "ok",
                   timeout=30, what="the sink ok again")
        print(f"Loki back: /health ok {time.monotonic() - restarted:.1f}s after the restart")
        wait_until(lambda: len(receiver.received_seq_numbers()) == 200, timeout=30,
                   what="every line")
        assert set(receiver.received_seq_numbers()) == set(range(200))
        assert "succeed again" in proc.log_path.read_text()
    finally:
        assert proc.stop() == 0


def test_an_include_matching_nothing_degrades_the_source_but_not_the_status_code(
        tmp_path: Path) -> None:
    proc = LogcapProcess(make_config(tmp_path, [str(tmp_path / "nowhere" / "*.log")])).start()
    try:
        code, body = _health(proc)
        source = body["components"]["root/sources/app"]
        assert code == 200 and body["status"] == "degraded"
        assert source["health"] == "degraded" and "nowhere" in source["reason"]
        assert source["unmatched_includes"] == [str(tmp_path / "nowhere" / "*.log")]
    finally:
        proc.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", "256k") as mount:
        yield mount


def test_positions_that_cannot_be_written_degrade_health_until_the_disk_has_room(
        tmp_path: Path, small_fs: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = make_config(tmp_path, [str(logs / "*.log")],
                         positions={"directory": str(small_fs / "positions")})
    _write(logs / "app.log", 0, 10)
    proc = LogcapProcess(config).start()
    try:
        filler = small_fs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk: positions writes fail
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        _write(logs / "app.log", 10, 10)
        keeper = "root/state/positions"

        def positions_health() -> str:
            return str(_health(proc)[1]["components"][keeper]["health"])

        wait_until(lambda: positions_health() == "degraded", timeout=30,
                   what="positions degraded")
        reason = _health(proc)[1]["components"][keeper]["reason"]
        assert "No space left" in reason and str(small_fs / "positions") in reason
        failures = [line for line in proc.log_path.read_text().splitlines()
                    if "positions: writ" in line]
        assert len(failures) == 1, failures  # one line, not one per flush
        filler.unlink()
        wait_until(lambda: positions_health() == "ok", timeout=30, what="positions ok")
    finally:
        assert proc.stop() == 0
