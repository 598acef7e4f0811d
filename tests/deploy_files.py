"""The deployment files under test, and the metric names their PromQL uses.

Shared by the compose-stack, alert and exposition tests: where the files are, how to read a
dashboard's and an alert file's expressions, and which ``logcap_*``/``process_*`` metric
names those expressions name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.harness import REPO

COMPOSE = REPO / "docker-compose.yml"
PRODUCTION_CONFIG = REPO / "configs" / "production.yaml"
EXAMPLES = REPO / "configs" / "examples"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "rules" / "logcap-alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "rules" / "logcap-alerts.test.yml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
OPERATIONS = REPO / "docs" / "OPERATIONS.md"

_METRIC = re.compile(r"\b((?:logcap|process)_[a-z0-9_]+)\b")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]
            if "alert" in rule]


def _panel_targets(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield from panel.get("targets", [])
        yield from _panel_targets(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of every dashboard JSON (panels, nested rows, variables)."""
    out: list[str] = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        out += [t["expr"] for t in _panel_targets(doc["panels"]) if "expr" in t]
        for var in doc.get("templating", {}).get("list", []):
            query = var.get("query")
            out.append(query["query"] if isinstance(query, dict) else str(query or ""))
    return out


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in _METRIC.findall(expr)}
