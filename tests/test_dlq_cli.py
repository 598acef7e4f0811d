"""``logcap dlq stats|list|show|reprocess`` and ``logcap buffer verify``: output and exit codes."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

from logcap.api.dlq_routes import register_dlq_routes
from logcap.cli.dlq import add_subcommands, run
from logcap.messages import Entries
from logcap.origin import FILE_KIND, ReadToken
from logcap.state.buffer.segments import SegmentStore
from logcap.state.dlq import SEGMENT_SUFFIX, DeadLetter, DeadLetterStore
from tests.harness import make_config

TOKEN = "t0ken"


def logcap(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="logcap")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(list(argv)))


def letter(sink: str, reason: str, when: float, lines: int = 2) -> DeadLetter:
    part = Entries("mysql", "/var/log/e.log", (("job", "mysql"),),
                   [f"line {i}" for i in range(lines)], 1_000,
                   ReadToken("mysql", FILE_KIND, None, 0, 1, "k", 0))
    return DeadLetter.from_parts(sink, reason, 400, 1, when - 1, when, "entry too old", (part,))


@pytest.fixture
def dlq(tmp_path: Path) -> tuple[Path, list[DeadLetter]]:
    directory = tmp_path / "dlq"
    store = DeadLetterStore(directory, 1 << 30, 86_400.0)
    store.open()
    entries = [letter("loki", "bad_request", 1_700_000_000.0, 3),
               letter("loki", "too_large", 1_700_000_100.0),
               letter("file", "bad_request", 1_700_000_200.0)]
    for entry in entries:
        store.add(entry)
    store.close()
    return directory, entries


def test_stats_reads_the_directory_offline_and_prints_totals(
        dlq: tuple[Path, list[DeadLetter]], capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = dlq
    assert logcap("dlq", "stats", "--dir", str(directory)) == 0
    out = capsys.readouterr().out
    assert "3 entries, 7 lines" in out and "oldest 2023-11-14T22:13:20Z" in out
    assert "  loki: 2 entries, 5 lines" in out and "  bad_request: 2 entries, 5 lines" in out
    assert logcap("dlq", "stats", "--dir", str(directory), "--json") == 0
    assert json.loads(capsys.readouterr().out)["by_sink"]["file"]["entries"] == 1


def test_stats_finds_the_directory_through_the_config(
        dlq: tuple[Path, list[DeadLetter]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = dlq
    config = make_config(tmp_path, [str(tmp_path / "*.log")], dlq={"directory": str(directory)})
    assert logcap("dlq", "stats", "-c", str(config)) == 0
    assert "3 entries" in capsys.readouterr().out


def test_list_prints_one_line_per_matching_entry_oldest_first(
        dlq: tuple[Path, list[DeadLetter]], capsys: pytest.CaptureFixture[str]) -> None:
    directory, entries = dlq
    assert logcap("dlq", "list", "--dir", str(directory), "--sink", "loki") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [entries[0].id, entries[1].id]
    assert "reason=bad_request status=400 attempts=1 lines=3" in lines[0]
    assert logcap("dlq", "list", "--dir", str(directory), "--json",
                  "--since", "2023-11-14T22:14:00Z", "--until", "1700000150") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["id"] == entries[1].id and row["reason"] == "too_large"


def test_show_prints_the_whole_document_with_line_timestamps(
        dlq: tuple[Path, list[DeadLetter]], capsys: pytest.CaptureFixture[str]) -> None:
    directory, entries = dlq
    assert logcap("dlq", "show", "--dir", str(directory), entries[0].id) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["id"] == entries[0].id and doc["streams"][0]["lines"][2] == ["1002", "line 2"]


@pytest.mark.parametrize(("argv", "complaint"), [
    (("dlq", "show", "--dir", "{dir}", "not-an-id"), "'not-an-id' is not an entry id"),
    (("dlq", "show", "--dir", "{dir}", "f" * 32), "no entry ffff"),
    (("dlq", "stats", "--dir", "{dir}/missing"), "does not exist"),
    (("dlq", "list", "--dir", "{dir}", "--since", "soon"), "since: 'soon' is not an RFC 3339"),
    (("dlq", "stats", "-c", "{dir}/no-config.yaml"), "not found"),
    (("dlq", "reprocess", "--id", "xyz"), "--id: 'xyz' is not an entry id"),
    (("buffer", "verify", "{dir}/missing"), "does not exist"),
])
def test_bad_input_is_exit_2_with_one_clear_line(
        dlq: tuple[Path, list[DeadLetter]], capsys: pytest.CaptureFixture[str],
        argv: tuple[str, ...], complaint: str) -> None:
    directory, _ = dlq
    assert logcap(*(arg.replace("{dir}", str(directory)) for arg in argv)) == 2
    captured = capsys.readouterr()
    assert complaint in captured.err and len(captured.err.strip().splitlines()) == 1
    assert captured.out == ""


def test_damage_in_the_dlq_is_a_warning_and_the_rest_is_still_read(
        dlq: tuple[Path, list[DeadLetter]], capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = dlq
    [segment] = [p for p in directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX)]
    with open(segment, "r+b") as handle:
        handle.truncate(segment.stat().st_size - 10)
    assert logcap("dlq", "stats", "--dir", str(directory)) == 0
    captured = capsys.readouterr()
    assert "2 entries" in captured.out
    assert "warning" in captured.err and segment.name in captured.err


class FakeAgent:
    """The admin API's DLQ routes on a real HTTP port, over a fake backend."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        app = Flask("fake-agent")

        def authorized() -> Response | None:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return Response('{"error": "missing or wrong admin token"}', 401,
                                content_type="application/json")
            return None

        register_dlq_routes(app, self, authorized)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def dlq_stats(self) -> dict[str, Any]:
        return {}

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(filters)
        return {"dry_run": filters["dry_run"], "matched": 2, "queued": ["a" * 32],
                "skipped_already_reprocessed": ["b" * 32], "skipped_unknown_sink": [],
                "not_found": []}

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    agent = FakeAgent()
    yield agent
    agent.stop()


def test_reprocess_posts_the_filters_to_the_agent_and_prints_its_answer(
        agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    assert logcap("dlq", "reprocess", "--url", agent.url, "--token", TOKEN, "--sink", "loki",
                  "--id", "c" * 32, "--id", "d" * 32, "--dry-run") == 0
    assert agent.calls == [{"sink": "loki", "reason": None, "ids": ["c" * 32, "d" * 32],
                            "since": None, "until": None, "dry_run": True}]
    out = capsys.readouterr().out
    assert "2 entries matched; would queue 1; 1 already reprocessed" in out
    assert "a" * 32 in out


def test_reprocess_takes_the_token_from_the_environment(
        agent: FakeAgent, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOGCAP_ADMIN_TOKEN", TOKEN)
    assert logcap("dlq", "reprocess", "--url", agent.url, "--json") == 0
    assert json.loads(capsys.readouterr().out)["queued"] == ["a" * 32]


def test_reprocess_with_a_wrong_token_is_bad_input(
        agent: FakeAgent, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LOGCAP_ADMIN_TOKEN", raising=False)
    assert logcap("dlq", "reprocess", "--url", agent.url, "--token", "nope") == 2
    assert "refused the request (401): missing or wrong admin token" in capsys.readouterr().err
    assert agent.calls == []


def test_reprocess_with_no_agent_listening_fails_with_exit_1(
        agent: FakeAgent, capsys: pytest.CaptureFixture[str]) -> None:
    url = agent.url
    agent.stop()
    assert logcap("dlq", "reprocess", "--url", url, "--token", TOKEN) == 1
    assert f"cannot reach the agent at {url}" in capsys.readouterr().err


def make_buffer(directory: Path) -> Path:
    store = SegmentStore(directory, ["loki"])
    store.open()
    for n in range(3):
        store.append([Entries("s", "f", (), [f"line {n}"] * 50, n * 100,
                              ReadToken("s", FILE_KIND, None, n, n + 1, "k", 0))])
    store.close()
    [segment] = [p for p in directory.iterdir() if p.suffix == ".seg"]
    return segment


def test_buffer_verify_exits_0_for_a_sound_buffer_and_1_for_a_damaged_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = make_buffer(tmp_path / "buffer")
    assert logcap("buffer", "verify", str(tmp_path / "buffer")) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert logcap("buffer", "verify", str(tmp_path / "buffer")) == 1
    out = capsys.readouterr().out
    assert "PROBLEMS FOUND" in out and segment.name in out
