"""Conservation through the real process: numbered lines in, every one out, across faults."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tests.actor_kit import wait_until
from tests.harness import (
    LogcapProcess,
    NumberedWriter,
    file_sink_counts,
    make_config,
    missing_and_duplicates,
)

pytestmark = pytest.mark.integration


def delivered(out: Path, total: int) -> bool:
    counts = file_sink_counts(out)
    return all(counts.get(n) for n in range(total))


def delivered_one(out: Path, seq: int) -> bool:
    return file_sink_counts(out).get(seq, 0) > 0


def assert_conserved(out: Path, total: int, max_dup_ratio: float = 0.0) -> int:
    wait_until(lambda: delivered(out, total), timeout=60, what=f"{total} lines delivered")
    missing, dups = missing_and_duplicates(file_sink_counts(out), total)
    assert not missing
    assert dups <= max_dup_ratio * total, f"{dups} duplicates of {total}"
    return dups


def test_lines_written_before_and_after_start_all_arrive_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    writer.write(5000)
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "*.log")])).start()
    try:
        writer.write(5000)
        assert_conserved(tmp_path / "out", 10_000)
    finally:
        assert proc.stop() == 0


def test_a_restart_with_sigterm_resumes_from_the_committed_position(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    config = make_config(tmp_path, [str(logs / "*.log")])
    proc = LogcapProcess(config).start()
    writer.write(3000)
    wait_until(lambda: delivered(tmp_path / "out", 3000), timeout=30)
    assert proc.stop() == 0
    writer.write(3000)  # written while logcap is down
    proc = LogcapProcess(config).start()
    try:
        assert_conserved(tmp_path / "out", 6000)
    finally:
        proc.stop()


def _logrotate(tmp: Path, logs: Path, mode: str) -> None:
    conf = tmp / f"logrotate-{mode}.conf"
    conf.write_text(
        f"{logs}/app.log {{\n  rotate 5\n  {mode}\n  missingok\n  nocompress\n}}\n"
    )
    subprocess.run(["logrotate", "-f", "-s", str(tmp / "logrotate.state"), str(conf)],
                   check=True)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_lines_written_across_logrotate_rotations_all_arrive(tmp_path: Path, mode: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    config = make_config(tmp_path, [str(logs / "app.log")])
    writer.write(1)
    proc = LogcapProcess(config).start()
    try:
        for _ in range(4):
            first = writer.next
            writer.write(1000, flush_every=50)
            # Once logcap follows the new file, write more and rotate at once: the unread
            # tail must be drained from the rotated file (create) or its copy (copytruncate).
            wait_until(lambda first=first: delivered_one(tmp_path / "out", first), timeout=30)
            writer.write(1000, flush_every=50)
            _logrotate(tmp_path, logs, mode)
        writer.write(1999)
        dups = assert_conserved(tmp_path / "out", 10_000, max_dup_ratio=0.0)
        assert dups == 0
    finally:
        proc.stop()


def test_a_file_truncated_in_place_is_followed_from_its_new_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "*.log")])).start()
    try:
        writer.write(1000)
        wait_until(lambda: delivered(tmp_path / "out", 1000), timeout=30)
        (logs / "app.log").write_text("")
        writer.write(1000)
        # If the rewritten file outgrows the old read position before the cut is seen, the
        # lines past that position are read, then read again from 0 once the first bytes
        # are seen to differ: duplicates, never a loss.
        assert_conserved(tmp_path / "out", 2000, max_dup_ratio=0.05)
    finally:
        proc.stop()


def test_sigkill_at_random_moments_while_writing_loses_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    config = make_config(tmp_path, [str(logs / "*.log")])
    total = 40_000
    stop = threading.Event()
    thread = threading.Thread(target=writer.write_at_rate, args=(total, 10_000, stop))
    rng = random.Random(5)
    proc = LogcapProcess(config).start()
    thread.start()
    try:
        for _ in range(5):
            threading.Event().wait(rng.uniform(0.2, 0.7))
            proc.kill()
            proc = LogcapProcess(config).start()
        thread.join(60)
        dups = assert_conserved(tmp_path / "out", total, max_dup_ratio=0.2)
        print(f"\nSIGKILL x5 at 10k lines/s: {total} lines, 0 missing, {dups} duplicates "
              f"({dups / total:.3%})")
    finally:
        stop.set()
        proc.stop()


def test_unreadable_paths_are_reported_in_health_and_the_rest_flows(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dangling.log").symlink_to(tmp_path / "nowhere.log")
    writer = NumberedWriter(logs / "app.log")
    writer.write(100)
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "*.log")])).start()
    try:
        assert_conserved(tmp_path / "out", 100)
        health = proc.api("/health")
        problems = health["components"]["root/sources/app"]["problems"]
        assert any("dangling.log" in p for p in problems)
        assert "dangling.log" in proc.tail_log(50)
    finally:
        proc.stop()


def test_binary_data_and_a_50mb_line_do_not_stop_the_agent_or_blow_its_memory(
    tmp_path: Path,
) -> None:
    import psutil

    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    writer = NumberedWriter(path)
    writer.write(100)
    with open(path, "ab") as fh:
        fh.write(bytes(range(256)) * 64 + b"\n")  # binary, NULs, invalid UTF-8
        chunk = b"z" * (1 << 20)
        for _ in range(50):
            fh.write(chunk)  # one 50 MiB line
        fh.write(b"\n")
    writer.write(100)
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "*.log")])).start()
    assert proc.proc is not None
    try:
        assert_conserved(tmp_path / "out", 200)
        assert psutil.Process(proc.proc.pid).memory_info().rss < 200 * 2**20
        metrics = proc.api_text("/metrics")
        assert 'logcap_source_truncated_lines_total{source="app"} 1.0' in metrics
    finally:
        proc.stop()


def test_a_corrupt_positions_file_is_recovered_from_its_backup(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = NumberedWriter(logs / "app.log")
    config = make_config(tmp_path, [str(logs / "*.log")])
    proc = LogcapProcess(config).start()
    primary = tmp_path / "positions" / "file_positions.json"
    writer.write(1000)
    wait_until(lambda: delivered(tmp_path / "out", 1000) and primary.exists(), timeout=30)
    writer.write(1000)
    backup = tmp_path / "positions" / "file_positions.json.bak"
    wait_until(lambda: delivered(tmp_path / "out", 2000) and backup.exists(), timeout=30)
    assert proc.stop() == 0
    primary.write_bytes(primary.read_bytes()[:40])  # cut in half
    proc = LogcapProcess(config).start()
    try:
        writer.write(1000)
        dups = assert_conserved(tmp_path / "out", 3000, max_dup_ratio=0.7)
        assert dups < 2000  # the backup (one flush older) was used, not a start from zero
        assert "corrupt" in proc.tail_log(60).lower()
        assert list((tmp_path / "positions").glob("file_positions.json.corrupt-*"))
    finally:
        proc.stop()


def test_compressed_files_matching_the_glob_are_skipped_counted_and_reported(
    tmp_path: Path,
) -> None:
    """A rotated ``.gz`` (and bzip2, xz, zstd, recognised by magic, not by name) is never
    shipped as text; text files beside them flow."""
    import bz2
    import gzip
    import lzma

    import zstandard

    logs = tmp_path / "logs"
    logs.mkdir()
    text = b"".join(b"seq=%d old line\n" % i for i in range(1000, 1050))
    (logs / "app.log.2.gz").write_bytes(gzip.compress(text))
    (logs / "app.log.3.bz2").write_bytes(bz2.compress(text))
    (logs / "app.log.4.xz").write_bytes(lzma.compress(text))
    (logs / "app.log.5").write_bytes(zstandard.ZstdCompressor().compress(text))  # no suffix
    writer = NumberedWriter(logs / "app.log")
    writer.write(100)
    proc = LogcapProcess(make_config(tmp_path, [str(logs / "app.log*")])).start()
    try:
        assert_conserved(tmp_path / "out", 100)
        shipped = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").glob("*"))
        assert "\\u001f" not in shipped and "BZh" not in shipped and "7zXZ" not in shipped
        assert file_sink_counts(tmp_path / "out").keys() == set(range(100))
        problems = proc.api("/health")["components"]["root/sources/app"]["problems"]
        for name, kind in (("app.log.2.gz", "gzip"), ("app.log.3.bz2", "bzip2"),
                           ("app.log.4.xz", "xz"), ("app.log.5", "zstd")):
            assert any(name in p and f"compressed ({kind})" in p for p in problems), problems
        metrics = proc.api_text("/metrics")
        assert 'logcap_source_errors_total{reason="compressed",source="app"} 4.0' in metrics
        writer.write(50)  # later rescans neither re-report nor read them
        assert_conserved(tmp_path / "out", 150)
        assert proc.tail_log(200).count("app.log.2.gz: compressed") == 1
    finally:
        proc.stop()


def test_a_latin1_source_arrives_as_text_with_its_accents(tmp_path: Path) -> None:
    """``encoding: latin-1`` decodes with that codec (before, é arrived as ``\\xe9``)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes("seq=0 café crème\nseq=1 déjà vu\n".encode("latin-1"))
    config = make_config(tmp_path, [str(logs / "*.log")])
    data = yaml.safe_load(config.read_text())
    data["sources"]["files"][0]["encoding"] = "latin-1"
    config.write_text(yaml.safe_dump(data))
    proc = LogcapProcess(config).start()
    try:
        assert_conserved(tmp_path / "out", 2)
        lines = [json.loads(raw)["line"] for raw in (tmp_path / "out" / "app.log").read_text(
            encoding="utf-8").splitlines()]
        assert sorted(lines) == ["seq=0 café crème", "seq=1 déjà vu"]
    finally:
        proc.stop()
