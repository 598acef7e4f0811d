"""A live private MariaDB (tests/mariadb_server.py) while logcap tails its slow-query and
error logs: every statement, single- or multi-line, arrives in Loki as one entry with its
structured metadata and the time of its ``SET timestamp``; passwords arrive masked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import DecodedEntry, LokiReceiver, parse_label_string
from tests.mariadb_server import PrivateMariaDB, available

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not available(), reason="mariadbd (Debian's mariadb-server) "
                                 "is not installed")]

NS = 1_000_000_000
STATEMENTS = 12


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(tmp_path / "db")
    db.start()
    yield db
    db.stop()


def test_a_live_mariadb_slow_log_arrives_one_entry_per_statement(
        tmp_path: Path, receiver: LokiReceiver, mariadb: PrivateMariaDB) -> None:
    config = make_config(
        tmp_path, [],
        sources={"files": [
            {"name": "slow", "include": [str(mariadb.slow_log)], "start_at": "beginning",
             "labels": {"job": "mysql_slow"}, "pipeline": "mysql_slow"},
            {"name": "errors", "include": [str(mariadb.error_log)], "start_at": "beginning",
             "labels": {"job": "mysql_error"}, "pipeline": "mysql_error"}]},
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "timeout": "2s"}})
    proc = LogcapProcess(config).start()
    try:
        mariadb.query("CREATE DATABASE live;\n"
                      "CREATE TABLE live.t (id INT PRIMARY KEY, v VARCHAR(20));")
        for i in range(STATEMENTS):
            mariadb.query(f"INSERT INTO live.t\n  VALUES ({i}, 'marker-{i}');")
        mariadb.query("CREATE USER 'u'@'localhost' IDENTIFIED BY 'hunter2-secret';")
        mariadb.query("SELECT * FROM live.nope;", check=False)

        def slow_entries() -> list[tuple[str, DecodedEntry]]:
            return [(labels, e) for labels, entries in receiver.stream_entries().items()
                    if 'job="mysql_slow"' in labels for e in entries]

        def markers() -> set[int]:
            return {i for _, e in slow_entries() for i in range(STATEMENTS)
                    if f"'marker-{i}')" in e.line}

        # the newest entry is closed by the multiline timeout (no next entry follows it)
        wait_until(lambda: len(markers()) == STATEMENTS and any(
            "IDENTIFIED BY" in e.line for _, e in slow_entries()),
            timeout=60, what="every statement in Loki")
        for _, entry in slow_entries():
            line = entry.line
            if "marker-" not in line:
                continue
            assert line.startswith("# User@Host: root[root] @ localhost []")
            assert line.count("marker-") == 1  # one statement per entry
            assert line.endswith("INSERT INTO live.t\n  VALUES (" + line.split("VALUES (")[1])
            md = dict(entry.metadata)
            assert md["user"] == "root" and md["host"] == "localhost"
            assert float(md["query_time"]) >= 0 and md["rows_examined"].isdigit()
            stamp = int(line.split("SET timestamp=")[1].split(";")[0])
            assert entry.ts_ns == stamp * NS
        lines = [e.line for _, e in slow_entries()]
        assert sum(line.count("'marker-") for line in lines) == STATEMENTS  # exactly once
        assert not any("hunter2-secret" in line for line in lines)
        wait_until(lambda: any('level="Note"' in labels and 'job="mysql_error"' in labels
                               for labels in receiver.streams()), timeout=30,
                   what="the error log's entries")
        errors = [dict(parse_label_string(labels)) for labels in receiver.streams()
                  if 'job="mysql_error"' in labels]
        assert {"job": "mysql_error", "level": "Note"} in [
            {k: v for k, v in s.items() if k in ("job", "level")} for s in errors]
    finally:
        proc.stop()
