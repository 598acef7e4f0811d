"""Long CLI work shows progress on a terminal and stays plain in a pipe: ``buffer verify``,
``dlq list`` of many entries, ``dlq reprocess --wait``; and :class:`Progress` itself."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from logcap.api.dlq_routes import register_dlq_routes
from logcap.cli.progress import Progress
from logcap.state.dlq import DeadLetterStore
from tests.harness import REPO
from tests.test_dlq_cli import TOKEN, letter, logcap, make_buffer

ERASE = "\r\x1b[K"
ENTRIES = 300


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_redraws_one_line_at_most_every_tenth_of_a_second_and_erases_it() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("checking", 200, unit="bytes", stream=out, clock=clock)
    progress.update(10)
    progress.update(20)  # too soon: not drawn
    clock.now = 0.2
    progress.update(100)
    progress.update(200)  # the end is always drawn
    progress.done()
    assert out.getvalue() == (f"{ERASE}checking: 10/200 bytes (5%){ERASE}checking: 100/200 "
                              f"bytes (50%){ERASE}checking: 200/200 bytes (100%){ERASE}")


def test_progress_writes_nothing_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress("checking", 10, stream=out)
    for _ in range(10):
        progress.advance()
    progress.done()
    assert progress.count == 10 and out.getvalue() == ""


@pytest.fixture
def many_letters(tmp_path: Path) -> Path:
    directory = tmp_path / "dlq"
    store = DeadLetterStore(directory, 1 << 30, 86_400.0 * 365 * 100)
    store.open()
    for n in range(ENTRIES):
        store.add(letter("loki", "bad_request", 1_700_000_000.0 + n))
    store.close()
    return directory


def test_dlq_list_shows_progress_on_a_terminal_while_its_listing_goes_to_a_pipe(
        many_letters: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err, out = Terminal(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert logcap("dlq", "list", "--dir", str(many_letters)) == 0
    assert len(out.getvalue().splitlines()) == ENTRIES
    assert ERASE not in out.getvalue()
    assert f"listing DLQ entries: {ENTRIES}/{ENTRIES} entries (100%)" in err.getvalue()
    assert err.getvalue().endswith(ERASE)


def test_dlq_list_stays_plain_when_stderr_is_a_pipe_or_stdout_the_terminal(
        many_letters: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for err, out in ((io.StringIO(), io.StringIO()), (Terminal(), Terminal())):
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setattr(sys, "stdout", out)
        assert logcap("dlq", "list", "--dir", str(many_letters)) == 0
        assert err.getvalue() == ""
        assert len(out.getvalue().splitlines()) == ENTRIES


def _verify(directory: Path, stderr_tty: bool) -> tuple[int, str, str]:
    """``logcap buffer verify`` as a process, stderr on a pseudo-terminal or a pipe."""
    argv = [sys.executable, "-m", "logcap", "buffer", "verify", str(directory)]
    if not stderr_tty:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, cwd=REPO)
    os.close(follower)
    err = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        err += chunk
    os.close(leader)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    return proc.wait(30), out, err.decode()


def test_buffer_verify_shows_progress_on_a_terminal_and_nothing_in_a_pipe(
        tmp_path: Path) -> None:
    segment = make_buffer(tmp_path / "buffer")
    size = segment.stat().st_size
    code, out, err = _verify(tmp_path / "buffer", stderr_tty=True)
    assert code == 0 and out.strip().endswith("OK")
    assert f"verifying {tmp_path / 'buffer'}: {size:,}/{size:,} bytes (100%)" in err
    assert err.endswith(ERASE)
    code, out_piped, err_piped = _verify(tmp_path / "buffer", stderr_tty=False)
    assert code == 0 and out_piped == out and err_piped == ""


class CountingDownAgent:
    """The DLQ routes over a backend whose reprocessing queue empties one entry per stats
    call."""

    def __init__(self, queued: int) -> None:
        self.left = queued
        self.queued = queued
        app = Flask("agent")
        register_dlq_routes(app, self, lambda: None)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def dlq_stats(self) -> dict[str, Any]:
        self.left = max(0, self.left - 1)
        return {"reprocessing": {"queued": max(0, self.left - 1), "in_flight": min(1, self.left)}}

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]:
        return {"dry_run": False, "matched": self.queued,
                "queued": [f"{n:032x}" for n in range(self.queued)],
                "skipped_already_reprocessed": [], "skipped_unknown_sink": [], "not_found": []}

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def agent() -> Iterator[CountingDownAgent]:
    agent = CountingDownAgent(queued=4)
    yield agent
    agent.stop()


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_dlq_reprocess_wait_follows_the_agent_until_every_entry_is_sent(
        agent: CountingDownAgent, monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    monkeypatch.setattr("logcap.cli.dlq.WAIT_POLL_S", 0.01)
    err, out = (Terminal() if terminal else io.StringIO()), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert logcap("dlq", "reprocess", "--url", agent.url, "--token", TOKEN, "--wait") == 0
    assert agent.left == 0
    assert "sent back: the agent's reprocessing queue is empty (4 entries queued)" in \
        out.getvalue()
    if terminal:
        assert "sending DLQ entries back: 4/4 entries (100%)" in err.getvalue()
        assert err.getvalue().endswith(ERASE)
    else:
        assert err.getvalue() == ""


def test_dlq_reprocess_wait_gives_up_after_its_timeout_with_exit_1(
        agent: CountingDownAgent, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(agent, "dlq_stats",
                        lambda: {"reprocessing": {"queued": 3, "in_flight": 1}})
    assert logcap("dlq", "reprocess", "--url", agent.url, "--token", TOKEN, "--wait",
                  "--wait-timeout", "0.2") == 1
    assert "4 entries still being sent after 0s" in capsys.readouterr().err
