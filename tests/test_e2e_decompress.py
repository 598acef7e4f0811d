"""``decompress: true`` through the real process into the Loki receiver (issue 9): a ``.gz``,
a ``.bz2``, a ``.xz`` and a ``.zst`` arrive once each, byte-exact; a file rotated and
compressed while logcap runs (logrotate ``compress`` without ``delaycompress``, and by hand:
rename, gzip, remove) delivers every line exactly once; a corrupt one is reported and
counted, and nothing binary is shipped."""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
import zstandard

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, make_config
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    with LokiReceiver() as rec:
        yield rec


def config_for(tmp: Path, receiver: LokiReceiver, include: str) -> Path:
    (tmp / "logs").mkdir(exist_ok=True)
    path = make_config(tmp, [str(tmp / "logs" / include)],
                       sinks={"file": {"enabled": False},
                              "loki": {"enabled": True, "url": receiver.url}})
    config = yaml.safe_load(path.read_text())
    config["sources"]["files"][0]["decompress"] = True
    config["sources"]["files"][0]["rotate_wait"] = "500ms"
    path.write_text(yaml.safe_dump(config))
    return path


def every_seq_once(receiver: LokiReceiver, total: int) -> bool:
    kept = receiver.received_seq_numbers(dedupe=True)
    return all(kept.get(n) for n in range(total))


def test_gz_bz2_xz_and_zst_files_arrive_once_each_byte_exact(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    config = config_for(tmp_path, receiver, "*")
    logs = tmp_path / "logs"
    formats = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
               "zst": zstandard.ZstdCompressor().compress}
    expected: dict[str, list[str]] = {}
    for k, (suffix, compress) in enumerate(sorted(formats.items())):
        lines = [f"seq={k * 5000 + i} {suffix} é {'x' * (i % 300)}" for i in range(5000)]
        (logs / f"old.log.{k}.{suffix}").write_bytes(compress("\n".join(lines).encode()))
        expected[f"old.log.{k}.{suffix}"] = lines  # the last line has no newline: still sent
    corrupt = bytearray(gzip.compress(b"".join(b"seq=%d bad\n" % i for i in range(50_000))))
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 100] = bytes(100)
    (logs / "broken.log.gz").write_bytes(bytes(corrupt))
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: every_seq_once(receiver, 20_000), timeout=60,
                   what="every line of the four compressed files")
        by_file: dict[str, list[str]] = {}
        for labels, entries in receiver.streams().items():
            name = next(n for n in [*expected, "broken.log.gz"] if n in labels)
            by_file.setdefault(name, []).extend(line for _, line in entries)
        for name, lines in expected.items():
            assert by_file[name] == lines, name  # byte-exact, in order, once
        raw = receiver.received_seq_numbers()
        assert all(raw[n] == 1 for n in range(20_000))
        broken = by_file.get("broken.log.gz", [])
        assert all(line.endswith(" bad") and "\x1f" not in line for line in broken)
        problems = proc.api("/health")["components"]["root/sources/app"]["problems"]
        assert any("broken.log.gz" in p and "corrupt compressed file" in p for p in problems)
        metrics = proc.api_text("/metrics")
        assert ('logcap_source_errors_total{reason="compressed_corrupt",source="app"} 1.0'
                in metrics)
        assert proc.tail_log(300).count("corrupt compressed file") == 1
    finally:
        assert proc.stop() == 0


def health(proc: LogcapProcess) -> dict[str, object]:
    component: dict[str, object] = proc.api("/health")["components"]["root/sources/app"]
    return component


def _rotate_by_hand(logs: Path) -> None:
    for n in range(4, 0, -1):  # app.log.N.gz -> app.log.N+1.gz, as logrotate shifts them
        older = logs / f"app.log.{n}.gz"
        if older.exists():
            older.rename(logs / f"app.log.{n + 1}.gz")
    (logs / "app.log").rename(logs / "app.log.1")
    subprocess.run(["gzip", str(logs / "app.log.1")], check=True)  # writes .gz, removes .1


def _logrotate(tmp: Path, logs: Path) -> None:
    conf = tmp / "logrotate.conf"
    conf.write_text(f"{logs}/app.log {{\n  rotate 5\n  create\n  compress\n  missingok\n}}\n")
    subprocess.run(["logrotate", "-f", "-s", str(tmp / "logrotate.state"), str(conf)],
                   check=True)


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip is not installed")
@pytest.mark.parametrize("how", ["by_hand", "logrotate"])
def test_a_file_rotated_and_compressed_while_running_delivers_every_line_once(
        tmp_path: Path, receiver: LokiReceiver, how: str) -> None:
    if how == "logrotate" and shutil.which("logrotate") is None:
        pytest.skip("logrotate is not installed")
    config = config_for(tmp_path, receiver, "app.log*")
    logs = tmp_path / "logs"
    writer = NumberedWriter(logs / "app.log")
    writer.write(1)
    proc = LogcapProcess(config).start()
    try:
        for _ in range(3):
            first = writer.next
            writer.write(1000, flush_every=50)
            wait_until(lambda first=first: receiver.received_seq_numbers().get(first, 0) > 0,
                       timeout=30, what=f"seq={first}")
            writer.write(1000, flush_every=50)  # not read yet, most of it, when it rotates
            if how == "logrotate":
                _logrotate(tmp_path, logs)
            else:
                _rotate_by_hand(logs)
        writer.write(999)
        total = writer.next
        wait_until(lambda: every_seq_once(receiver, total), timeout=90,
                   what=f"{total} lines")
        # Each .gz is looked at once its source file was drained and closed (the next scan):
        # it continues from that file's offset, so it sends nothing again.
        wait_until(lambda: proc.tail_log(2000).count("decompressed from offset") >= 3,
                   timeout=60, what="the three .gz files continuing their files")
        wait_until(lambda: health(proc)["rotated_files_draining"] == 0, timeout=30,
                   what="the .gz files read to their end")
        kept = receiver.received_seq_numbers(dedupe=True)
        assert {n: c for n, c in kept.items() if c != 1} == {}
        assert receiver.received_seq_numbers() == kept  # not even sent twice
        assert set(kept) == set(range(total))
        assert sorted(p.name for p in logs.iterdir())[:4] == [
            "app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz"]
        assert not any("\x1f\x8b" in line for line in receiver.lines())
    finally:
        assert proc.stop() == 0


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip is not installed")
@pytest.mark.parametrize("start_at", ["beginning", "end"])
def test_a_file_rotated_and_compressed_while_stopped_continues_from_its_stored_offset(
        tmp_path: Path, receiver: LokiReceiver, start_at: str) -> None:
    config = config_for(tmp_path, receiver, "app.log*")
    data = yaml.safe_load(config.read_text())
    data["sources"]["files"][0]["start_at"] = start_at
    config.write_text(yaml.safe_dump(data))
    logs = tmp_path / "logs"
    writer = NumberedWriter(logs / "app.log")
    proc = LogcapProcess(config).start()
    try:
        writer.write(3000)  # created after the start: read from 0 whatever start_at says
        wait_until(lambda: every_seq_once(receiver, 3000), timeout=30, what="3000 lines")
    finally:
        assert proc.stop() == 0
    writer.write(1000)  # written while stopped, then rotated and compressed
    _rotate_by_hand(logs)
    writer.write(500)
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: proc.tail_log(500).count("decompressed from offset") == 1,
                   timeout=30, what="app.log.1.gz continuing the stored app.log")
        # The new app.log is a file the last run never saw at a known path: read from 0
        # whatever start_at says.
        wait_until(lambda: every_seq_once(receiver, 4500), timeout=30, what="4500 lines")
        wait_until(lambda: health(proc)["rotated_files_draining"] == 0, timeout=30,
                   what="app.log.1.gz read to its end")
        kept = receiver.received_seq_numbers()
        assert {n: c for n, c in kept.items() if c != 1} == {}
    finally:
        assert proc.stop() == 0
