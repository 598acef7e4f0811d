"""``POST /config/reload``: the token (401 without it, 403 when none is configured), an invalid
config refused with check-config's errors and no effect, a valid one applied as a diff with
the generation counted, what needs a restart named and not applied, the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from logcap.agent import Agent
from logcap.api.app import create_app
from logcap.config import load_config
from tests.harness import make_config

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingBackend:
    def __init__(self, token: str) -> None:
        self.admin_token = token
        self.calls: list[str] = []

    def reload_config(self, trigger: str) -> tuple[int, dict[str, Any]]:
        self.calls.append(trigger)
        return 200, {"result": "applied", "generation": 2}


def test_a_reload_without_the_token_is_401_and_reaches_no_backend() -> None:
    backend = RecordingBackend(TOKEN)
    client = create_app(backend).test_client()  # type: ignore[arg-type]
    assert client.post("/config/reload").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/config/reload", headers=wrong).status_code == 401
    assert backend.calls == []
    resp = client.post("/config/reload", headers=AUTH)
    assert resp.status_code == 200 and backend.calls == ["POST /config/reload"]


def test_a_reload_with_no_token_configured_is_403() -> None:
    backend = RecordingBackend("")
    resp = create_app(backend).test_client().post(  # type: ignore[arg-type]
        "/config/reload", headers=AUTH)
    assert resp.status_code == 403 and backend.calls == []


def _reloads(metrics_port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "logcap_config_reloads_total":
                out[sample.labels["result"]] = sample.value
            if sample.name == "logcap_config_generation":
                out["generation"] = sample.value
    return out


def test_an_invalid_config_is_refused_and_a_valid_one_is_applied_as_a_diff(
        tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = make_config(tmp_path, [str(tmp_path / "logs" / "a.log")],
                       server={"admin_token": TOKEN})
    config = load_config(path, {})
    agent = Agent(config, str(path))
    agent.start()
    base = f"http://127.0.0.1:{config.server.port}"
    before = _reloads(config.server.metrics_port)
    try:
        assert requests.get(f"{base}/config", timeout=5).json()["generation"] == 1
        data = yaml.safe_load(path.read_text())
        good = yaml.safe_dump(data)
        data["sources"]["files"][0]["inclde"] = ["x"]
        path.write_text(yaml.safe_dump(data))
        resp = requests.post(f"{base}/config/reload", headers=AUTH, timeout=30)
        assert resp.status_code == 400
        body = resp.json()
        assert body["result"] == "invalid" and body["generation"] == 1
        assert any("sources.files[0].inclde: unknown key" in e for e in body["errors"])
        assert requests.get(f"{base}/config", timeout=5).json()["generation"] == 1

        data = yaml.safe_load(good)
        data["sources"]["files"].append({"name": "b", "include": [str(tmp_path / "b.log")]})
        data["dispatcher"]["shards"] = 3
        path.write_text(yaml.safe_dump(data))
        resp = requests.post(f"{base}/config/reload", headers=AUTH, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["result"] == "applied" and body["generation"] == 2
        assert body["needs_restart"] == ["dispatcher: changed"]
        assert {"kind": "file_source", "group": "sources", "added": ["b"], "removed": [],
                "changed": [], "unchanged": ["app"]} in body["components"]
        shown = requests.get(f"{base}/config", timeout=5).json()
        assert shown["generation"] == 2 and shown["last_reload"]["generation"] == 2
        assert shown["config"]["dispatcher"]["shards"] == 2  # needs a restart: not applied
        assert [s["name"] for s in shown["config"]["sources"]["files"]] == ["app", "b"]
        names = set(requests.get(f"{base}/health", timeout=5).json()["components"])
        assert "root/sources/b" in names and "root/dispatchers/shard-2" not in names
        after = _reloads(config.server.metrics_port)
        assert after["generation"] == 2
        assert after.get("applied", 0) - before.get("applied", 0) == 1
        assert after.get("invalid", 0) - before.get("invalid", 0) == 1
    finally:
        agent.stop(5)
