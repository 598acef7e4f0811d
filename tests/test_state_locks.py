"""One agent per state directory: the lock module, and a second real process refused with exit 2
naming the first one's PID (positions, DLQ and disk-buffer directories)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from logcap.state.dirlock import DirectoryInUse, DirectoryUnusable, lock_directory, lock_holder
from tests.harness import LogcapProcess, free_port, make_config


def test_a_second_lock_of_a_directory_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    fd = lock_directory(str(tmp_path / "state"), "x.lock", "state directory")
    try:
        assert lock_holder(str(tmp_path / "state" / "x.lock")) == os.getpid()
        with pytest.raises(DirectoryInUse) as refused:
            lock_directory(str(tmp_path / "state"), "x.lock", "state directory")
        assert refused.value.pid == os.getpid()
        assert f"PID {os.getpid()}" in str(refused.value)
        other = lock_directory(str(tmp_path / "state"), "y.lock", "state directory")
        os.close(other)  # another lock name in the same directory is another lock
    finally:
        os.close(fd)
    os.close(lock_directory(str(tmp_path / "state"), "x.lock", "state directory"))


def test_a_directory_that_cannot_be_written_is_unusable_not_in_use(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DirectoryUnusable, match="is unusable"):
        lock_directory(str(blocker / "state"), "x.lock", "state directory")


def _second_agent(first: Path, tmp: Path, **override: object) -> subprocess.CompletedProcess[str]:
    """Run ``logcap run`` on ``first``'s config with other ports, other output, and the state
    sections of ``override``."""
    data = yaml.safe_load(first.read_text())
    data["server"].update(port=free_port(), metrics_port=free_port())
    data["sinks"]["file"]["directory"] = str(tmp / "out2")
    for key, value in override.items():
        data[key] = value
    second = tmp / "second.yaml"
    second.write_text(yaml.safe_dump(data))
    return subprocess.run([sys.executable, "-m", "logcap", "run", "-c", str(second)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shared", ["positions", "dlq", "disk_buffer"])
def test_a_second_agent_on_a_state_directory_exits_2_naming_the_first_ones_pid(
        tmp_path: Path, shared: str) -> None:
    (tmp_path / "logs").mkdir()
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")],
                         dlq={"directory": str(tmp_path / "dlq")},
                         disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")})
    first = LogcapProcess(config).start()
    try:
        own = {"positions": {"directory": str(tmp_path / "positions2")},
               "dlq": {"directory": str(tmp_path / "dlq2")},
               "disk_buffer": {"enabled": True, "directory": str(tmp_path / "buffer2")}}
        del own[shared]
        result = _second_agent(config, tmp_path, **own)
        assert first.proc is not None
        assert result.returncode == 2, result.stderr
        assert f"PID {first.proc.pid}" in result.stderr, result.stderr
        key = {"positions": "positions.directory", "dlq": "dlq.directory",
               "disk_buffer": "disk_buffer.directory"}[shared]
        assert key in result.stderr and "Traceback" not in result.stderr
        assert first.healthy()
    finally:
        assert first.stop() == 0
