"""logcap's Prometheus alert rules: valid for Prometheus, each one unit-tested with
``promtool test rules``, each with a runbook that exists in docs/OPERATIONS.md; and every
expression of the Grafana dashboard is valid PromQL."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    alert_rules,
    dashboard_expressions,
    load_yaml,
)

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing (Debian package prometheus; .ci/run installs it)")

REQUIRED_ALERTS = {"LogcapAgentDown", "LogcapLinesDropped", "LogcapSinkFailing",
                   "LogcapDlqGrowing", "LogcapBufferFilling", "LogcapLagGrowing",
                   "LogcapRestartLoop"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          cwd=ALERT_TESTS.parent)


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    done = _promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(load_yaml(ALERTS)['groups'][0]['rules'])} rules found" in done.stdout


@needs_promtool
def test_every_alert_passes_its_promtool_unit_tests() -> None:
    done = _promtool("test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


# Grafana's variables, as Grafana would substitute them for promtool
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


@needs_promtool
def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    expressions = []
    for expr in dashboard_expressions():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        expressions.append(expr)
    # label_values(...) is Grafana's variable query, not PromQL: its argument is
    queries = [re.fullmatch(r"label_values\((.+), \w+\)", e) for e in expressions]
    exprs = [q.group(1) if q else e for q, e in zip(queries, expressions, strict=True)]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{n}", "expr": e} for n, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    done = _promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_the_alerts_cover_loss_failure_dlq_buffer_lag_restarts_and_agent_down() -> None:
    assert {rule["alert"] for rule in alert_rules()} >= REQUIRED_ALERTS


def test_every_alert_links_a_runbook_section_of_the_operations_guide() -> None:
    headings = re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in headings}
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/OPERATIONS.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {OPERATIONS}"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
