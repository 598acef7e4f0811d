"""The admin API: health from the tree, stats, redacted config, metrics, and 503 on a hang."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from logcap.agent import Agent
from logcap.api.app import BackendTimeout, create_app
from logcap.config import load_config
from logcap.runtime.actor import LogcapActor
from logcap.runtime.childspec import WhichChildren
from tests.harness import make_config


class FakeBackend:
    admin_token = "s3cret"

    def __init__(self, state: str = "ok", hang: bool = False) -> None:
        self.state = state
        self.hang = hang

    def health(self) -> tuple[str, dict[str, Any]]:
        if self.hang:
            raise BackendTimeout("root did not answer in time")
        return self.state, {"root/x": {"status": "restarting" if self.state == "failing"
                                       else "running", "health": self.state}}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return self.state != "failing", {"ready": self.state != "failing"}

    def stats(self) -> dict[str, Any]:
        return {"actors": []}

    def effective_config(self) -> dict[str, Any]:
        return {"config": {"server": {"admin_token": "***"}}}

    def positions(self) -> dict[str, Any]:
        return {"files": []}


def test_health_is_200_when_ok_or_degraded_and_503_when_failing() -> None:
    assert create_app(FakeBackend()).test_client().get("/health").status_code == 200
    resp = create_app(FakeBackend("degraded")).test_client().get("/health")
    assert resp.status_code == 200 and resp.json["status"] == "degraded"
    resp = create_app(FakeBackend("failing")).test_client().get("/health")
    assert resp.status_code == 503 and resp.json["status"] == "failing"


def test_ready_is_200_when_ready_and_503_before() -> None:
    assert create_app(FakeBackend()).test_client().get("/ready").status_code == 200
    assert create_app(FakeBackend("failing")).test_client().get("/ready").status_code == 503


def test_a_backend_timeout_is_a_503_not_a_hung_request() -> None:
    resp = create_app(FakeBackend(hang=True)).test_client().get("/health")
    assert resp.status_code == 503 and resp.json["error"] == "timeout"


def test_unknown_endpoints_and_methods_get_json_errors() -> None:
    client = create_app(FakeBackend()).test_client()
    assert client.get("/nope").status_code == 404
    assert client.post("/health").status_code == 405


def test_metrics_is_a_valid_prometheus_exposition() -> None:
    resp = create_app(FakeBackend()).test_client().get("/metrics")
    assert resp.status_code == 200
    families = {f.name for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert "logcap_supervisor_restarts" in families
    assert "process_resident_memory_bytes" in families


class Hung(LogcapActor):
    """Stands in for a root supervisor that never answers."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def handle(self, message: Any) -> Any:
        if isinstance(message, WhichChildren):
            self.release.wait(30)
            return []
        return super().handle(message)


def test_a_hung_actor_makes_health_answer_503_within_the_deadline(tmp_path: Path) -> None:
    config = load_config(make_config(tmp_path, [str(tmp_path / "*.log")]), {})
    agent = Agent(config)
    release = threading.Event()
    agent.root = Hung.start(release)
    try:
        client = create_app(agent).test_client()
        started = time.monotonic()
        resp = client.get("/health")
        assert resp.status_code == 503
        assert time.monotonic() - started < 5
    finally:
        release.set()
        agent.stop(5)


def test_an_agent_is_not_ready_before_its_tree_has_started(tmp_path: Path) -> None:
    agent = Agent(load_config(make_config(tmp_path, [str(tmp_path / "*.log")]), {}))
    try:
        ready, body = agent.ready()
        assert not ready and body["started"] is False
        assert create_app(agent).test_client().get("/ready").status_code == 503
    finally:
        agent.stop(5)


def test_a_running_agent_reports_its_tree_stats_and_redacted_config(tmp_path: Path) -> None:
    config_path = make_config(tmp_path, [str(tmp_path / "*.log")],
                              server={"admin_token": "topsecret"})
    config = load_config(config_path, {})
    agent = Agent(config, str(config_path))
    agent.start()
    try:
        base = f"http://127.0.0.1:{config.server.port}"
        health = requests.get(f"{base}/health", timeout=5)
        assert health.status_code == 200
        ready = requests.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        names = set(health.json()["components"])
        for name in ("root/state/positions", "root/sinks/file", "root/dispatchers/shard-0",
                     "root/sources/app", "root/admin"):
            assert name in names
        stats = requests.get(f"{base}/stats", timeout=5).json()
        shard = next(a for a in stats["actors"] if a["name"] == "root/dispatchers/shard-0")
        assert {"data_depth", "capacity", "handled"} <= set(shard["mailbox"])
        assert shard["restarts"] == 0
        text = requests.get(f"{base}/config", timeout=5).text
        assert "topsecret" not in text and "***" in text
        metrics = requests.get(f"http://127.0.0.1:{config.server.metrics_port}/metrics",
                               timeout=5)
        assert "logcap_actor_mailbox_depth_messages" in metrics.text
        positions = requests.get(f"{base}/positions", timeout=5).json()
        assert positions["files"] == []
    finally:
        agent.stop(10)


def test_the_api_answers_when_the_process_holds_more_than_1024_descriptors() -> None:
    """select() cannot watch a descriptor above 1,023; the servers use poll."""
    from logcap.api.server import AdminServer
    from tests.harness import free_port

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    server = AdminServer.start(FakeBackend(), "127.0.0.1", free_port(), None)
    try:
        port = server.ask("ports", timeout=5)[0]
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        server.stop()
        for fd in held:
            os.close(fd)


def test_a_dead_server_thread_crashes_the_admin_actor_at_its_next_ping() -> None:
    """So the supervisor restarts it, instead of the API answering nothing for good."""
    from logcap.api.server import AdminServer
    from logcap.runtime.actor import ChildExited, ExitLink, Ping
    from tests.harness import free_port

    exits: list[ChildExited] = []

    class Watcher:
        def tell(self, message: Any) -> None:
            exits.append(message)

    started: list[AdminServer] = []

    class SeenServer(AdminServer):
        def handle_start(self) -> None:
            super().handle_start()
            started.append(self)

    server = SeenServer.start(FakeBackend(), "127.0.0.1", free_port(), None,
                              link=ExitLink(Watcher(), "admin", 1))
    assert server.ask(Ping(), timeout=5) == "pong"
    actor = started[0]
    for served in actor._servers:
        # the serving loop ends (closed in its own thread, which the trigger wakes): what a
        # crash of waitress's thread is
        served.server.trigger.pull_trigger(served.server.close)
    for served in actor._servers:
        served.thread.join(timeout=5)
        assert not served.thread.is_alive()
    assert server.ask(Ping(), timeout=5) == "pong"
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.02)
    assert exits and exits[0].crashed and "died" in exits[0].error
