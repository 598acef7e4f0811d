"""Multiline joining through the real process into the Loki receiver: a Java-style stack-trace
file arrives one entry per trace; with the disk buffer on or off, two ``kill -9`` while entries are
half written and a rename rotation (logrotate's ``create``) while the agent holds an open
entry: every entry arrives whole, and Loki's exact-duplicate rule keeps each exactly once."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import LokiReceiver

pytestmark = pytest.mark.integration

FIRSTLINE = r"^\d{4}-\d\d-\d\d "
SENTINEL = "2024-05-01 23:59:59.999 INFO [main] the writer is done"


def trace(n: int) -> list[str]:
    """Entry ``n``: a first line with ``seq=n`` and 1 to 6 continuation lines."""
    head = f"2024-05-01 12:00:{n % 60:02d}.{n % 1000:03d} ERROR [main] seq={n} request failed"
    frames = [f"java.lang.IllegalStateException: state {n}"]
    frames += [f"\tat com.example.Service{k}.call(Service{k}.java:{n % 97 + k})"
               for k in range(n % 6)]
    return [head, *frames]


def whole(n: int) -> str:
    return "\n".join(trace(n))


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    with LokiReceiver() as rec:
        yield rec


def config_for(tmp: Path, receiver: LokiReceiver, timeout: str, **sections: object) -> Path:
    """Loki on, the file sink off, the source joining traces by their first line."""
    (tmp / "logs").mkdir(exist_ok=True)
    path = make_config(
        tmp, [str(tmp / "logs" / "*.log")],
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
        **sections)
    config = yaml.safe_load(path.read_text())
    config["sources"]["files"][0]["multiline"] = {"firstline": FIRSTLINE, "timeout": timeout}
    path.write_text(yaml.safe_dump(config))
    return path


def entries_by_seq(receiver: LokiReceiver) -> dict[int, set[str]]:
    """The distinct texts received for each seq."""
    seen: dict[int, set[str]] = defaultdict(set)
    for entries in receiver.stream_entries().values():
        for entry in entries:
            head = entry.line.split("\n", 1)[0]
            seen[int(head.split("seq=")[1].split()[0])].add(entry.line)
    return seen


def test_a_stack_trace_file_arrives_one_entry_per_trace(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    config = config_for(tmp_path, receiver, "1s")
    total = 60
    (tmp_path / "logs" / "app.log").write_text("".join(whole(n) + "\n" for n in range(total)))
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: receiver.line_count >= total, timeout=60, what="every trace")
        metrics = requests.get(
            f"http://127.0.0.1:{proc.port}/metrics", timeout=5).text
    finally:
        proc.stop()
    assert receiver.line_count == total
    assert entries_by_seq(receiver) == {n: {whole(n)} for n in range(total)}
    assert ('logcap_source_multiline_entries_total{reason="complete",source="app"} '
            f"{total - 1}.0") in metrics
    assert 'logcap_source_multiline_entries_total{reason="timeout",source="app"} 1.0' in metrics


class TraceWriter:
    """Writes traces line by line (flushed after each line), pausing mid-entry at the entries
    in ``pause_at`` until told to go on, and renaming the file (then writing a new one) before
    the entry ``rotate_at``; a last first line (:data:`SENTINEL`) closes the last entry."""

    def __init__(self, path: Path, total: int, pause_at: tuple[int, ...], rotate_at: int
                 ) -> None:
        self.path = path
        self.total = total
        self.pause_at = pause_at
        self.rotate_at = rotate_at
        self.reached = {n: threading.Event() for n in pause_at}
        self.go_on = {n: threading.Event() for n in pause_at}
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            fh = open(self.path, "a")  # noqa: SIM115 - reopened at the rotation
            tick = threading.Event()
            for n in range(self.total):
                if n == self.rotate_at:
                    fh.close()
                    os.rename(self.path, self.path.with_name(self.path.name + ".1"))
                    fh = open(self.path, "a")  # noqa: SIM115
                lines = trace(n)
                for i, line in enumerate(lines):
                    fh.write(line + "\n")
                    fh.flush()
                    if n in self.pause_at and i == len(lines) // 2:
                        self.reached[n].set()
                        self.go_on[n].wait(120)
                    tick.wait(0.0005)
            fh.write(SENTINEL + "\n")  # closes the last entry; itself stays open, unsent
            fh.close()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.done.set()


@pytest.mark.parametrize("buffer", [True, False], ids=["buffer-on", "buffer-off"])
def test_kill_9_mid_entry_twice_and_a_rotation_mid_entry_deliver_every_entry_whole_once(
        tmp_path: Path, receiver: LokiReceiver, buffer: bool) -> None:
    """Without the buffer, entries read again after a kill carry the timestamps of their first
    read (the timestamp journal), so Loki keeps each once too."""
    config = config_for(tmp_path, receiver, "60s",  # a slow restart must not cut the half entry
                        disk_buffer={"enabled": buffer, "directory": str(tmp_path / "buffer"),
                                     "fsync_interval": "50ms"})
    total = 1_500
    writer = TraceWriter(tmp_path / "logs" / "app.log", total, pause_at=(400, 1_100),
                         rotate_at=700)
    thread = threading.Thread(target=writer.run, daemon=True)
    proc = LogcapProcess(config).start()
    thread.start()
    try:
        for n in writer.pause_at:
            assert writer.reached[n].wait(60), f"the writer did not reach entry {n}"
            proc.kill()  # half an entry is in the file: the agent holds it open
            proc = LogcapProcess(config).start()
            writer.go_on[n].set()
        assert writer.done.wait(120) and writer.error is None, writer.error
        wait_until(lambda: len(receiver.received_seq_numbers(dedupe=True)) >= total,
                   timeout=90, what="every entry")
    finally:
        for event in writer.go_on.values():
            event.set()
        proc.stop()
    seen = entries_by_seq(receiver)
    broken = {n: texts for n, texts in seen.items() if texts != {whole(n)}}
    assert not broken, f"entries not whole: {sorted(broken)[:5]}"
    assert sorted(seen) == list(range(total))
    kept = receiver.received_seq_numbers(dedupe=True)
    assert all(kept[n] == 1 for n in range(total)), "an entry was kept twice"
    sent = receiver.received_seq_numbers()
    print(f"\nmultiline, buffer {'on' if buffer else 'off'}, 2 x kill -9 mid-entry + rename "
          f"mid-entry: {total} entries "
          f"whole, {sum(sent.values()) - total} resent, 0 kept twice")


def test_a_sigterm_with_an_entry_open_neither_cuts_it_nor_sends_it_twice(
        tmp_path: Path, receiver: LokiReceiver) -> None:
    config = config_for(tmp_path, receiver, "30s")
    log = tmp_path / "logs" / "app.log"
    lines = trace(7)
    log.write_text(whole(6) + "\n" + "\n".join(lines[:2]) + "\n")
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: receiver.line_count >= 1, timeout=60, what="the first entry")
    finally:
        assert proc.stop() == 0  # entry 7 is open: the drain does not close it
    with open(log, "a") as fh:
        fh.write("\n".join(lines[2:]) + "\n" + whole(8) + "\n")
    proc = LogcapProcess(config).start()
    try:
        wait_until(lambda: receiver.line_count >= 2, timeout=60, what="the second entry")
    finally:
        proc.stop()
    assert entries_by_seq(receiver) == {6: {whole(6)}, 7: {whole(7)}}
    assert receiver.line_count == 2  # sent once each: entry 8 waits for its timeout
