"""The hardened systemd unit in packaging/: ``systemd-analyze verify`` accepts it, its offline
security exposure stays at most 2.0 ("OK"), and every system call a running logcap makes
(under ``strace -f -c``: start, tailing, shipping, the admin and metrics APIs, a SIGTERM stop)
is in the unit's ``SystemCallFilter`` (there is no systemd to run the unit itself here). The
unit's ``/opt/logcap`` virtualenv is pointed at this test's ``logcap`` (verify checks the
executables exist)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from tests.actor_kit import wait_until
from tests.harness import REPO, NumberedWriter, file_sink_counts, make_config

UNIT = REPO / "packaging" / "logcap.service"
INSTALLED = "/opt/logcap/bin/logcap"
MAX_EXPOSURE = 20  # systemd-analyze's threshold is ten times the shown level: 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing (Debian package systemd; .ci/run installs it)")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    logcap = Path(sys.executable).parent / "logcap"
    assert logcap.exists()
    text = UNIT.read_text()
    assert INSTALLED in text
    path = tmp_path / UNIT.name
    path.write_text(text.replace(INSTALLED, str(logcap)))
    return path


def test_systemd_analyze_verify_accepts_the_unit(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == ""


def test_the_unit_is_hardened_to_an_exposure_of_at_most_2(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                           f"--threshold={MAX_EXPOSURE}", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Overall exposure level for logcap.service" in done.stdout


def test_the_unit_runs_the_agent_unprivileged_with_its_state_in_var_lib_logcap() -> None:
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in
             UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert lines["User"] == "logcap" and lines["CapabilityBoundingSet"] == ""
    assert lines["StateDirectory"] == "logcap" and lines["ProtectSystem"] == "strict"
    assert lines["NoNewPrivileges"] == "yes" and lines["KillSignal"] == "SIGTERM"
    assert lines["RestartPreventExitStatus"] == "2"  # bad input: a restart does not help


def _syscall_set(name: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a ``@set``, nested sets expanded."""
    seen = set() if seen is None else seen
    listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if item.startswith("@") and item not in seen:
            seen.add(item)
            calls |= _syscall_set(item, seen)
        elif item and not item.startswith(("#", "@")):
            calls.add(item)
    return calls


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("strace") is None,
                    reason="strace missing (apt-get install -y strace; .ci/run installs it)")
def test_every_system_call_of_a_running_agent_is_allowed_by_the_units_filter(
        tmp_path: Path) -> None:
    [filter_line] = [line for line in UNIT.read_text().splitlines()
                     if line.startswith("SystemCallFilter=")]
    allowed = set().union(*(_syscall_set(g) for g in filter_line.split("=", 1)[1].split()))
    (tmp_path / "logs").mkdir()
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")],
                         disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")},
                         dlq={"directory": str(tmp_path / "dlq")})
    report = tmp_path / "syscalls.txt"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", str(report), sys.executable,
                               "-m", "logcap", "run", "-c", str(config)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = yaml.safe_load(config.read_text())["server"]
        base = f"http://127.0.0.1:{port['port']}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=60, what="logcap healthy under strace")
        NumberedWriter(tmp_path / "logs" / "app.log").write(2_000)
        wait_until(lambda: len(file_sink_counts(tmp_path / "out")) == 2_000, timeout=60,
                   what="every line in the file sink")
        for path in ("/", "/status.json", "/stats", "/positions", "/config"):
            assert requests.get(f"{base}{path}", timeout=5).ok, path
        assert requests.get(f"http://127.0.0.1:{port['metrics_port']}/metrics", timeout=5).ok
        [agent] = psutil.Process(tracer.pid).children()
        agent.send_signal(signal.SIGTERM)
        assert tracer.wait(60) == 0
    finally:
        if tracer.poll() is None:
            # killing strace detaches the agent, which would run on: kill the agent first
            for child in psutil.Process(tracer.pid).children(recursive=True):
                child.kill()
            tracer.kill()
            tracer.wait(10)
    used = {m.group(1) for m in re.finditer(r"^\s*[\d.]+\s+.*?\s([a-z_0-9]+)$",
                                             report.read_text(), re.MULTILINE)} - {"total"}
    assert len(used) > 30, report.read_text()
    assert sorted(used - allowed) == []
