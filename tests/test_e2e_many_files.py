"""Thousands of files through the real process: the admin API keeps answering, descriptors
stay under ``max_open_files``, every line arrives (issue 9; the 5,000-file form and idle CPU:
``bench/many_files.py``)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.actor_kit import wait_until
from tests.harness import ApiProbe, LogcapProcess, file_sink_counts, make_config

pytestmark = pytest.mark.integration

FILES = 2000
CAP = 256
BASE_FDS = 64
"""Descriptors logcap holds besides the files: sockets, inotify, positions, its log, ..."""
API_DEADLINE_S = 2.5
"""Generous for a loaded 2-core machine; bench/many_files.py measures it (under 1 s idle)."""


def test_2000_files_under_a_cap_of_256_descriptors_all_arrive_and_the_api_answers(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = [logs / f"f{i:05d}.log" for i in range(FILES)]
    for i, path in enumerate(paths):
        path.write_text(f"seq={i} first\n")
    config = make_config(tmp_path, [str(logs / "*.log")], logging={"level": "warning"},
                         sources={"files": [{"name": "app", "include": [str(logs / "*.log")],
                                             "start_at": "beginning", "max_open_files": CAP}]})
    proc = LogcapProcess(config).start()
    assert proc.proc is not None
    process = psutil.Process(proc.proc.pid)
    probe = ApiProbe(proc.port)
    peak = 0

    def arrived(n: int) -> bool:
        nonlocal peak
        peak = max(peak, process.num_fds())
        return len(file_sink_counts(tmp_path / "out")) >= n

    try:
        wait_until(lambda: arrived(FILES), timeout=120, what="the first line of every file")
        for i, path in enumerate(paths):
            with open(path, "a") as fh:
                fh.write(f"seq={FILES + i} second\n")
        wait_until(lambda: arrived(2 * FILES), timeout=120, what="the second line of each")
        counts = file_sink_counts(tmp_path / "out")
        assert all(counts.get(n) == 1 for n in range(2 * FILES))
        source = proc.api("/health")["components"]["root/sources/app"]
        assert source["files"] == FILES and source["open_files"] <= CAP, source
        assert source["closed_files"] + source["waiting_files"] >= FILES - CAP, source
        assert 'logcap_source_files_closed_total{reason="max_open_files",source="app"}' \
            in proc.api_text("/metrics")
    finally:
        probe.stop()
        assert proc.stop() == 0
    assert not probe.failures, probe.failures[:3]
    assert probe.slowest < API_DEADLINE_S, \
        f"slowest admin answer {probe.slowest:.2f} s ({probe.slowest_path})"
    assert peak < CAP + BASE_FDS, f"{peak} descriptors"
