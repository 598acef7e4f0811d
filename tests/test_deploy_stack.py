"""The compose stack (docker-compose.yml and deploy/), checked by structure: no registry is
reachable here, so it is never started. Every service has a healthcheck and resource limits,
every file it mounts from the repo exists, logcap's production config and every example config
pass ``logcap check-config``, Prometheus' config passes ``promtool check config``, and Grafana
is provisioned with the datasources the dashboard uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_files import (
    COMPOSE,
    DASHBOARDS,
    EXAMPLES,
    PRODUCTION_CONFIG,
    PROMETHEUS_CONFIG,
    load_yaml,
)
from tests.harness import REPO

SERVICES = {"loki", "logcap", "prometheus", "grafana"}
CONFIGS = [PRODUCTION_CONFIG, *sorted(EXAMPLES.glob("*.yaml"))]


def _services() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE)["services"])


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host path, container path, mode) of each bind mount (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        host, container, *mode = volume.split(":")
        if host.startswith(("/", ".")):
            out.append((host, container, mode[0] if mode else "rw"))
    return out


def test_the_stack_has_loki_grafana_prometheus_and_logcap() -> None:
    assert set(_services()) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_resource_limits(name: str) -> None:
    service = _services()[name]
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert limits["memory"][-1] in "MG" and int(limits["memory"][:-1]) > 0
    assert service["restart"] == "unless-stopped"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose missing (Debian package docker-compose; .ci/run "
                           "installs it)")
def test_docker_compose_validates_the_stack_against_the_compose_schema() -> None:
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_file_the_stack_mounts_from_the_repo_exists() -> None:
    mounts = [m for service in _services().values() for m in _bind_mounts(service)]
    repo_mounts = [m for m in mounts if m[0].startswith(".")]
    assert len(repo_mounts) >= 7
    for host, _, mode in repo_mounts:
        assert (REPO / host).exists(), host
        assert mode == "ro", f"{host} is mounted read-write"


def test_logcap_runs_hardened_with_host_logs_and_the_docker_socket_read_only() -> None:
    logcap = _services()["logcap"]
    mounts = {container: (host, mode) for host, container, mode in _bind_mounts(logcap)}
    assert mounts["/var/log"] == ("/var/log", "ro")
    assert mounts["/var/run/docker.sock"] == ("/var/run/docker.sock", "ro")
    config_path = logcap["command"][logcap["command"].index("-c") + 1]
    assert (REPO / mounts[config_path][0]).resolve() == PRODUCTION_CONFIG
    assert logcap["read_only"] is True
    assert logcap["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in logcap["security_opt"]
    assert "4" in logcap["group_add"]  # adm: reads 0640 root:adm host logs
    assert any(v.endswith(":/var/lib/logcap") for v in logcap["volumes"])  # state volume


def test_the_production_config_binds_inside_the_container_and_keeps_lines_on_disk() -> None:
    config = load_yaml(PRODUCTION_CONFIG)
    assert config["server"]["host"] == "0.0.0.0"
    ports = {p.rsplit(":", 1)[-1] for p in _services()["logcap"]["ports"]}
    assert ports == {str(config["server"]["port"]), str(config["server"]["metrics_port"])}
    assert config["disk_buffer"]["enabled"] is True
    assert config["sources"]["containers"]["enabled"] is True
    assert config["sources"]["containers"]["socket"] == "unix:///var/run/docker.sock"
    includes = [g for source in config["sources"]["files"] for g in source["include"]]
    assert any("opensips" in g for g in includes) and any("mysql" in g for g in includes)
    assert all(g.startswith("/var/log/") for g in includes)
    for directory in (config["positions"]["directory"], config["disk_buffer"]["directory"],
                      config["dlq"]["directory"]):
        assert directory.startswith("/var/lib/logcap/")  # the state volume
    target = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"][0]["static_configs"][0]
    assert target["targets"] == [f"logcap:{config['server']['metrics_port']}"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_logcap_check_config_accepts_the_production_and_example_configs(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGCAP_", "LOKI_"))}
    done = subprocess.run([sys.executable, "-m", "logcap", "check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: ok (")


def test_the_examples_cover_the_host_containers_two_tenants_and_durable_mode() -> None:
    examples = {p.stem: load_yaml(p) for p in EXAMPLES.glob("*.yaml")}
    host = examples["opensips-mysql-host"]
    assert {s["pipeline"] for s in host["sources"]["files"]} == {
        "opensips", "mysql_error", "mysql_slow"}
    containers = examples["containers-only"]["sources"]
    assert containers["containers"]["enabled"] is True and containers["files"] == []
    tenants = examples["two-tenants"]["sinks"]
    assert tenants["loki"]["tenant_id"] != tenants["loki_endpoints"][0]["tenant_id"]
    durable = examples["durable"]
    assert durable["disk_buffer"]["enabled"] and durable["batch_persistence"]["enabled"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (Debian package prometheus; .ci/run installs it)")
def test_promtool_accepts_the_prometheus_config_and_finds_the_alert_rules() -> None:
    done = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr


def test_grafana_is_provisioned_with_the_datasources_and_dashboards_it_shows() -> None:
    grafana = _services()["grafana"]
    mounts = {container: REPO / host for host, container, _ in _bind_mounts(grafana)}
    sources = load_yaml(mounts["/etc/grafana/provisioning/datasources"] / "datasources.yml")
    uids = {d["uid"]: d["url"] for d in sources["datasources"]}
    assert uids == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100"}
    providers = load_yaml(mounts["/etc/grafana/provisioning/dashboards"] / "dashboards.yml")
    path = providers["providers"][0]["options"]["path"]
    assert mounts[path].resolve() == DASHBOARDS
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    for dashboard in dashboards:
        doc = json.loads(dashboard.read_text())
        panels = doc["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{dashboard.name}: duplicate panel ids"
        for panel in panels:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, panel["title"]
                assert panel["targets"], panel["title"]


def test_the_dashboard_shows_flow_lag_retries_dlq_buffer_restarts_mailboxes_cpu_rss() -> None:
    titles = " | ".join(p["title"].lower()
                        for d in DASHBOARDS.glob("*.json")
                        for p in json.loads(d.read_text())["panels"])
    for topic in ("lines in per source", "lines out per sink", "lag", "retries", "dlq",
                  "disk buffer size", "age", "restarts", "mailbox saturation", "cpu", "rss"):
        assert topic in titles, topic
