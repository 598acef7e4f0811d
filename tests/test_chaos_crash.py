"""POST /chaos/crash: the request's rules, the route's answers, and a running agent crashed actor
by actor (each group's workers, each group supervisor, the admin server) coming back whole,
with every line delivered and no thread or descriptor left behind."""

from __future__ import annotations

import gc
import os
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from logcap.agent import Agent
from logcap.api.app import create_app
from logcap.api.chaos_routes import (
    CrashRequestError,
    actor_group,
    choose_target,
    parse_crash_request,
)
from logcap.config import load_config
from logcap.runtime.crash import CrashActor, InjectedCrash
from tests.actor_kit import wait_until
from tests.harness import NumberedWriter, file_sink_counts, make_config, missing_and_duplicates

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- the request ------------------------------------------------------------------------------


def test_a_crash_request_names_an_actor_or_asks_for_a_random_one_of_some_groups() -> None:
    named = parse_crash_request({"actor": "root/dispatchers/shard-0"})
    assert named.actor == "root/dispatchers/shard-0" and named.groups == ()
    anyone = parse_crash_request({"random": True})
    assert anyone.actor is None and "admin" not in anyone.groups
    assert set(anyone.groups) == {"state", "sinks", "dispatchers", "sources", "supervisors"}
    some = parse_crash_request({"random": True, "groups": ["sinks", "sinks", "admin"],
                                "reason": "test"})
    assert some.groups == ("sinks", "admin") and some.reason == "test"


@pytest.mark.parametrize(("body", "says"), [
    ([], "JSON object"),
    ({}, "say which actor"),
    ({"actor": "root/sinks/loki", "random": True}, "not both"),
    ({"actor": "root"}, "root cannot be crashed"),
    ({"actor": ""}, "actor: expected"),
    ({"actor": "root/sinks/loki", "groups": ["sinks"]}, "only with random"),
    ({"random": True, "groups": ["nope"]}, "unknown ['nope']"),
    ({"random": True, "groups": []}, "non-empty list"),
    ({"random": "yes"}, "random: expected true or false"),
    ({"random": True, "force": 1}, "unknown keys ['force']"),
    ({"random": True, "reason": ""}, "reason"),
])
def test_a_bad_crash_request_is_refused_with_the_reason(body: Any, says: str) -> None:
    with pytest.raises(CrashRequestError, match=None) as info:
        parse_crash_request(body)
    assert says in str(info.value)


def test_an_actors_group_is_the_second_part_of_its_name() -> None:
    assert actor_group("root/sinks/loki") == "sinks"
    assert actor_group("root/state/buffer") == "state"
    assert actor_group("root/sinks") == "supervisors"
    assert actor_group("root/admin") == "admin"


def test_a_random_pick_takes_only_running_actors_of_the_groups_asked() -> None:
    statuses = {"root/sinks": "running", "root/sinks/loki": "running",
                "root/sinks/file": "restarting", "root/dispatchers/shard-0": "running"}
    rng = random.Random(3)
    picks = {choose_target(statuses, ["sinks"], rng) for _ in range(50)}
    assert picks == {"root/sinks/loki"}
    assert choose_target(statuses, ["sources"], rng) is None
    assert {choose_target(statuses, ["sinks", "supervisors"], rng) for _ in range(50)} == {
        "root/sinks/loki", "root/sinks"}


# -- the route --------------------------------------------------------------------------------


class ChaosBackend:
    admin_token = TOKEN

    def __init__(self, enabled: bool = True) -> None:
        self.chaos_enabled = enabled
        self.crashed: list[tuple[str, str]] = []
        self.statuses = {"root/dispatchers": "running", "root/dispatchers/shard-0": "running",
                         "root/dispatchers/shard-1": "restarting", "root/admin": "running"}

    def actor_statuses(self) -> dict[str, str]:
        return dict(self.statuses)

    def crash_actor(self, name: str, reason: str) -> bool:
        self.crashed.append((name, reason))
        return True


def test_the_crash_endpoint_is_off_unless_server_chaos_is_true() -> None:
    backend = ChaosBackend(enabled=False)
    resp = create_app(backend).test_client().post(  # type: ignore[arg-type]
        "/chaos/crash", json={"random": True}, headers=AUTH)
    assert resp.status_code == 404 and "server.chaos: true" in resp.json["error"]
    assert backend.crashed == []


def test_the_crash_endpoint_needs_the_admin_token() -> None:
    backend = ChaosBackend()
    client = create_app(backend).test_client()  # type: ignore[arg-type]
    assert client.post("/chaos/crash", json={"random": True}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/chaos/crash", json={"random": True}, headers=wrong).status_code == 401
    assert backend.crashed == []


def test_the_crash_endpoint_crashes_the_actor_named_and_says_which() -> None:
    backend = ChaosBackend()
    client = create_app(backend).test_client()  # type: ignore[arg-type]
    resp = client.post("/chaos/crash", json={"actor": "root/dispatchers/shard-0"}, headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["crashed"] == "root/dispatchers/shard-0"
    assert resp.json["group"] == "dispatchers"
    assert backend.crashed[0][0] == "root/dispatchers/shard-0"
    unknown = client.post("/chaos/crash", json={"actor": "root/nope"}, headers=AUTH)
    assert unknown.status_code == 400 and "root/dispatchers/shard-0" in unknown.json["error"]
    down = client.post("/chaos/crash", json={"actor": "root/dispatchers/shard-1"}, headers=AUTH)
    assert down.status_code == 409 and "restarting" in down.json["error"]
    bad = client.post("/chaos/crash", data=b"{", headers=AUTH)
    assert bad.status_code == 400 and "not valid JSON" in bad.json["error"]
    assert len(backend.crashed) == 1


def test_a_random_crash_leaves_the_admin_server_out_unless_asked() -> None:
    backend = ChaosBackend()
    client = create_app(backend).test_client()  # type: ignore[arg-type]
    for _ in range(20):
        assert client.post("/chaos/crash", json={"random": True}, headers=AUTH).status_code \
            == 200
    assert {name for name, _ in backend.crashed} == {"root/dispatchers",
                                                     "root/dispatchers/shard-0"}
    none = client.post("/chaos/crash", json={"random": True, "groups": ["sources"]},
                       headers=AUTH)
    assert none.status_code == 409


def test_crash_actor_raises_in_the_actors_own_thread() -> None:
    with pytest.raises(InjectedCrash, match="on purpose"):
        raise InjectedCrash(CrashActor("on purpose").reason)


# -- a running agent --------------------------------------------------------------------------


def _fds() -> int:
    """Descriptors other than sockets: this process is also the HTTP client, and its own
    connections come and go (the chaos runner counts every descriptor of a real process)."""
    return sum(1 for target in _fd_targets() if not target.startswith("socket:"))


def _fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(out)


def _all_running(base: str) -> bool:
    try:
        resp = requests.get(f"{base}/health", timeout=5)
    except requests.RequestException:
        return False
    return resp.status_code == 200 and all(
        c["status"] == "running" for c in resp.json()["components"].values())


def test_every_actor_crashed_in_turn_comes_back_and_nothing_is_lost_or_leaked(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config_path = make_config(
        tmp_path, [str(logs / "*.log")], server={"admin_token": TOKEN, "chaos": True},
        disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")},
        dispatcher={"dlq_enabled": True},
        dlq={"directory": str(tmp_path / "dlq")},
        supervision={"intensity": 1000, "backoff_max": "200ms", "shutdown_timeout": "5s"})
    config = load_config(config_path, {})
    agent = Agent(config, str(config_path))
    writer = NumberedWriter(logs / "app.log")
    base = f"http://127.0.0.1:{config.server.port}"
    agent.start()
    try:
        wait_until(lambda: _all_running(base), timeout=30, what="the tree up")
        writer.write(500)
        wait_until(lambda: len(file_sink_counts(tmp_path / "out")) >= 500, timeout=30,
                   what="the first lines delivered")
        threads, fds, targets = threading.active_count(), _fds(), _fd_targets()
        names = sorted(requests.get(f"{base}/health", timeout=5).json()["components"])
        assert "root/state/buffer" in names and "root/state/dlq" in names
        for name in names:
            resp = requests.post(f"{base}/chaos/crash", json={"actor": name}, headers=AUTH,
                                 timeout=5)
            assert resp.status_code == 200, resp.text
            wait_until(lambda name=name: _restarted(base, name), timeout=30,
                       what=f"{name} restarted")
            wait_until(lambda: _all_running(base), timeout=30, what=f"the tree after {name}")
            writer.write(100)
        total = writer.next
        wait_until(lambda: len(file_sink_counts(tmp_path / "out")) >= total, timeout=60,
                   what="every line delivered")
        missing, _ = missing_and_duplicates(file_sink_counts(tmp_path / "out"), total)
        assert missing == []
        wait_until(lambda: gc.collect() >= 0 and threading.active_count() <= threads
                   and _fds() <= fds, timeout=30,
                   what=f"threads back to {threads} (now {threading.active_count()}) and "
                        f"fds back to {fds} (now {_fds()}: new "
                        f"{sorted((Counter(_fd_targets()) - Counter(targets)).elements())})")
    finally:
        assert agent.stop(30)


def _restarted(base: str, name: str) -> bool:
    try:
        rows = requests.get(f"{base}/stats", timeout=5).json().get("actors", [])
    except (requests.RequestException, ValueError):
        return False
    row = next((r for r in rows if r["name"] == name), None)
    return row is not None and row["crashes"] >= 1 and row["status"] == "running"
