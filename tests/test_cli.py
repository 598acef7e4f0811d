"""The logcap command: exit codes and one-line errors for bad input, clean stops on signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from logcap.cli import main
from tests.harness import LogcapProcess, make_config


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logcap", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_version_prints_the_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0 and result.stdout.startswith("logcap ")


def test_the_version_option_prints_what_the_version_command_prints() -> None:
    option, command = run_cli("--version"), run_cli("version")
    assert option.returncode == 0 and option.stdout == command.stdout


def test_check_config_accepts_the_shipped_default() -> None:
    assert main(["check-config", "-c", "configs/config.yaml"]) == 0


def test_check_config_refuses_a_bad_file_with_exit_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dispatcher:\n  batch_sise: 10\n")
    result = run_cli("check-config", "-c", str(bad))
    assert result.returncode == 2
    assert "dispatcher.batch_sise" in result.stderr and "batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_missing_config_file_in_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "not found" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_refuses_a_port_already_in_use(tmp_path: Path) -> None:
    config = make_config(tmp_path, [str(tmp_path / "*.log")])
    port = yaml.safe_load(config.read_text())["server"]["port"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run_cli("run", "-c", str(config))
    assert result.returncode == 2
    assert f"server.port 127.0.0.1:{port}: already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_directory_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = make_config(tmp_path, [str(tmp_path / "*.log")],
                         positions={"directory": str(blocker / "positions")})
    result = run_cli("run", "-c", str(config))
    assert result.returncode == 2
    assert "positions.directory" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_the_agent_cleanly_with_exit_0(tmp_path: Path) -> None:
    proc = LogcapProcess(make_config(tmp_path, [str(tmp_path / "*.log")])).start()
    assert proc.stop(timeout=30) == 0
    assert "logcap stopped" in proc.tail_log()


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    proc = LogcapProcess(make_config(tmp_path, [str(tmp_path / "*.log")])).start()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    proc.proc.send_signal(signal.SIGINT)
    code = proc.proc.wait(30)
    assert code in (0, 128 + signal.SIGINT)


@pytest.mark.parametrize("text, key, reason", [
    ("sources:\n  containers:\n    enabled: true\n    pipeline: p\n",
     "sources.containers.pipeline", "no pipeline named 'p'"),
    ("sources:\n  containers:\n    enabled: true\n    multiline: {max_lines: 3}\n",
     "sources.containers.multiline.pattern", "required but missing"),
    ("batch_persistence:\n  enabled: true\n", "batch_persistence.enabled",
     "needs disk_buffer.enabled"),
    ("batch_persistence:\n  enabled: true\ndisk_buffer:\n  enabled: true\n"
     "dispatcher:\n  dlq_enabled: false\n", "batch_persistence.enabled",
     "needs dispatcher.dlq_enabled"),
])
def test_a_feature_this_version_lacks_or_an_impossible_combination_is_refused_by_name(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(text)
    result = run_cli("check-config", "-c", str(bad))
    assert result.returncode == 2 and key in result.stderr and reason in result.stderr


def test_a_buffer_written_with_another_key_is_refused_naming_the_file(tmp_path: Path) -> None:
    import base64
    import os

    from logcap.components.registry import make_segment_store
    from logcap.config import load_config
    from logcap.messages import Entries
    from logcap.origin import FILE_KIND, ReadToken

    key_a = tmp_path / "a.key"
    key_a.write_text(base64.b64encode(os.urandom(32)).decode())
    key_b = tmp_path / "b.key"
    key_b.write_text(base64.b64encode(os.urandom(32)).decode())

    def config_with(key: Path) -> Path:
        return make_config(tmp_path, [str(tmp_path / "*.log")], disk_buffer={
            "enabled": True, "directory": str(tmp_path / "buffer"),
            "encryption": {"enabled": True, "key_file": str(key)}})

    store = make_segment_store(load_config(config_with(key_a), {}))
    store.open()
    store.append([Entries("app", "/x", (), ["a line"], 1,
                          ReadToken("app", FILE_KIND, None, 0, 7, "g1", 0))])
    store.sync()
    store.close()
    result = run_cli("run", "-c", str(config_with(key_b)))
    assert result.returncode == 2
    assert "disk_buffer.encryption" in result.stderr and ".seg" in result.stderr
    assert "Traceback" not in result.stderr
