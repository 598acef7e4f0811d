"""What the agent imports depends on what it is configured to do (issue 14: RSS at a steady
rate): a module a feature needs is imported when that feature is configured, and the feature
still works then. Each agent here is a real process; its ``sys.modules`` is read while it runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
import zstandard

from tests.harness import NumberedWriter, agent_modules, file_sink_counts, make_config

pytestmark = pytest.mark.integration

LINES = 200

NOT_IN_DEFAULT = frozenset({"zstandard", "zoneinfo"})
"""Modules an agent with the default config (file sources, no disk buffer, no zstd file, no
dead letter yet) does not import."""


def arrived(out: Path, total: int) -> Callable[[], bool]:
    return lambda: all(file_sink_counts(out).get(n) for n in range(total))


def test_an_agent_with_the_default_config_does_not_import_what_it_does_not_use(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")])
    (tmp_path / "logs").mkdir()
    NumberedWriter(tmp_path / "logs" / "app.log").write(LINES)
    loaded = agent_modules(config, arrived(tmp_path / "out", LINES), f"{LINES} lines")
    assert "logcap.sources.files.source" in loaded and "flask" in loaded
    assert not loaded & NOT_IN_DEFAULT, sorted(loaded & NOT_IN_DEFAULT)


def test_an_agent_with_the_disk_buffer_imports_zstandard_and_delivers(tmp_path: Path) -> None:
    config = make_config(tmp_path, [str(tmp_path / "logs" / "*.log")],
                         disk_buffer={"enabled": True, "directory": str(tmp_path / "buffer")})
    (tmp_path / "logs").mkdir()
    NumberedWriter(tmp_path / "logs" / "app.log").write(LINES)
    loaded = agent_modules(config, arrived(tmp_path / "out", LINES), f"{LINES} lines")
    assert "zstandard" in loaded
    assert list((tmp_path / "buffer").rglob("*")), "the buffer wrote nothing"


def test_an_agent_reading_a_zst_file_imports_zstandard_and_delivers_its_lines(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    text = "".join(f"seq={n} compressed\n" for n in range(LINES))
    (logs / "old.log.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    config = make_config(tmp_path, [str(logs / "*")])
    data = yaml.safe_load(config.read_text())
    data["sources"]["files"][0]["decompress"] = True
    config.write_text(yaml.safe_dump(data))
    loaded = agent_modules(config, arrived(tmp_path / "out", LINES), f"{LINES} lines")
    assert "zstandard" in loaded


def test_the_python_encoders_wide_tables_are_built_by_its_first_call_not_on_import() -> None:
    code = (
        "from logcap.sinks.loki import protobuf as p\n"
        "assert p._wide_tables.cache_info().currsize == 0\n"
        "class S:\n"
        "    labels = '{a=\"b\"}'\n"
        "    entries = [(1_500_000_000_123_456_789, 'x' * 300, (('k', 'v' * 200),))]\n"
        "python = p.encode_push_request_python([S()])\n"
        "assert not p.NATIVE or python == p.encode_push_request_native([S()])\n"
        "assert p._wide_tables.cache_info().currsize == 1\n"
        "assert p.encode_uvarint(2**34 + 5) == p._make_varint(2**34 + 5)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
