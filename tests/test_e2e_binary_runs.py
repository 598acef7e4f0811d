"""NUL regions and sparse holes in log files through the real process (issue 9)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, file_sink_counts, make_config

pytestmark = pytest.mark.integration


def test_a_nul_region_and_a_sparse_hole_never_reach_the_sink_and_are_counted(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    crashed = logs / "crashed.log"
    crashed.write_bytes(b"seq=0 before\n" + b"\x00" * 65536 + b"seq=1 after the crash\n")
    live = logs / "live.log"
    writer = NumberedWriter(live)
    writer.next = 2
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "*.log")])).start()
    try:
        writer.write(100)
        with open(live, "r+b") as fh:  # a hole: the file extended past its end, then written
            fh.seek(0, os.SEEK_END)
            fh.seek(1 << 20, os.SEEK_CUR)
            fh.write(b"seq=102 after the hole\n")
        writer.next = 103
        writer.write(100)
        out = tmp_path / "out"
        wait_until(lambda: set(file_sink_counts(out)) >= set(range(203)), timeout=60,
                   what="every numbered line")
        assert all(count == 1 for count in file_sink_counts(out).values())
        shipped = [json.loads(raw)["line"] for p in out.glob("*.log*")
                   for raw in p.read_text().splitlines()]
        assert not any("\x00" in line for line in shipped)
        assert max(map(len, shipped)) < 200  # no line of NULs in front of the next one
        assert "seq=1 after the crash" in shipped and "seq=102 after the hole" in shipped
        metrics = [m for m in proc.api_text("/metrics").splitlines()
                   if m.startswith('logcap_source_binary_run_bytes_total{source="app"}')]
        assert [float(m.split()[-1]) for m in metrics] == [65536 + (1 << 20)], metrics
        health = proc.api("/health")["components"]["root/sources/app"]
        assert health["binary_bytes_dropped"] == 65536 + (1 << 20)
        assert proc.tail_log(200).count("runs of NUL or control bytes") == 2  # once per file
    finally:
        assert proc.stop() == 0
