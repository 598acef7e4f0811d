"""``logcap check-config`` beyond the schema: directories creatable (nothing created), includes
that match nothing now (a warning), pipelines and routing resolved, and ``--connect``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from logcap.cli.check import directory_problem
from tests.harness import make_config
from tests.loki_receiver import LokiReceiver


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logcap", "check-config", "-c", str(config),
                           *extra], capture_output=True, text=True, timeout=60)


def test_a_directory_is_creatable_under_a_writable_ancestor_and_nothing_is_created(
        tmp_path: Path) -> None:
    assert directory_problem(str(tmp_path / "a" / "b" / "c")) is None
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in str(directory_problem(str(tmp_path / "file" / "sub")))
    assert "exists and is not a directory" in str(directory_problem(str(tmp_path / "file")))


def test_a_state_directory_that_cannot_be_created_is_refused_naming_its_key(
        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    config = make_config(tmp_path, [str(tmp_path / "*.log")],
                         positions={"directory": str(tmp_path / "file" / "positions")})
    result = _check(config)
    assert result.returncode == 2
    assert "positions.directory:" in result.stderr and "not a directory" in result.stderr
    assert not (tmp_path / "out").exists()  # the file sink's directory was not created


def test_an_include_matching_nothing_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_text("x\n")
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log"),
                                    str(tmp_path / "nowhere" / "*.log")])
    result = _check(config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: ok (")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"logcap: warning: sources.files[0].include: "
                        f"'{tmp_path / 'nowhere' / '*.log'}' matches no file now"]


def test_an_unknown_pipeline_is_refused_so_routing_is_resolved(tmp_path: Path) -> None:
    config = make_config(tmp_path, [str(tmp_path / "*.log")])
    data = yaml.safe_load(config.read_text())
    data["sources"]["files"][0]["pipeline"] = "no_such_pipeline"
    config.write_text(yaml.safe_dump(data))
    result = _check(config)
    assert result.returncode == 2 and "no_such_pipeline" in result.stderr


def test_connect_probes_each_loki_sink_once_and_reports_it(tmp_path: Path) -> None:
    receiver = LokiReceiver().start()
    url = receiver.url
    config = make_config(
        tmp_path, [str(tmp_path / "*.log")],
        sinks={"loki": {"enabled": True, "url": receiver.url},
               "loki_endpoints": [{"name": "audit", "url": "http://127.0.0.1:1"}]})
    try:
        result = _check(config, "--connect")
        assert receiver.line_count == 0  # nothing was pushed
    finally:
        receiver.stop()
    lines = result.stdout.splitlines()[1:]
    assert result.returncode == 1, result.stdout
    assert lines[0] == f"sinks.loki: reachable: GET {url}/ready: HTTP 200 ready"
    assert lines[1] == ("sinks.loki_endpoints[0]: NOT reachable: GET http://127.0.0.1:1/ready: "
                        "connection refused")
