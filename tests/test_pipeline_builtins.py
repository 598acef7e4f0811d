"""The built-in pipelines against their fixtures: real MariaDB logs (tests/fixtures/mariadb,
written by generate.py), MySQL 8 and OpenSIPS logs written from their documented formats.
Multi-line entries are joined by the built-in's own multiline spec (tests/pipeline_kit)."""

from __future__ import annotations

import json

from logcap.cli.pipeline_test import join_all
from logcap.pipeline.builtins import builtin_pipelines
from logcap.pipeline.timeformats import parse_time
from tests.pipeline_kit import (
    builtin,
    entries,
    line_labels,
    metadata,
    run_builtin,
)

NS = 1_000_000_000


def ts(text: str) -> int:
    return parse_time("rfc3339", text, 0)


def test_every_builtin_decodes_and_the_multiline_ones_say_how_to_join() -> None:
    specs = builtin_pipelines()
    assert set(specs) == {"opensips", "mysql_error", "mysql_slow", "docker_json", "cri",
                          "json", "logfmt"}
    assert {n for n, s in specs.items() if s.multiline} == {"opensips", "mysql_error",
                                                            "mysql_slow", "docker_json", "cri"}


def test_opensips_stderr_entries_labels_metadata_and_the_new_year() -> None:
    read = ts("2027-01-01T00:01:40Z")
    result = run_builtin("opensips", "opensips/stderr.log", read)
    out = result.entries
    assert len(out.lines) == 10  # the banner, 9 OpenSIPS entries (two with a SIP dump)
    assert out.lines[0].startswith("Listening on")
    assert out.timestamp(0) == read  # the banner keeps its read time (counted)
    assert result.failures == {("1:opensips", "no_match"): 1}
    assert out.timestamp(1) == ts("2026-12-31T23:59:58Z")  # last year's
    assert out.timestamp(3) == ts("2027-01-01T00:00:01Z")
    assert line_labels(result, 1) == {"level": "NOTICE", "module": "core"}
    assert line_labels(result, 3) == {"level": "NOTICE"}  # xlog: no module
    invite = out.lines[3]
    assert invite.count("\n") == 13 and "Call-ID: a84b4c76e66710@pc33.example.com" in invite
    assert metadata(result, 3) == {"pid": "2315", "call_id": "a84b4c76e66710@pc33.example.com",
                                   "from_tag": "1928301774", "method": "INVITE",
                                   "src_ip": "192.0.2.10"}
    assert metadata(result, 4) == {"pid": "2315", "function": "t_relay", "method": "INVITE",
                                   "status": "408"}
    assert metadata(result, 5)["to_tag"] == "a6c85cf"
    assert metadata(result, 5)["status"] == "200"
    assert line_labels(result, 9) == {"level": "CRITICAL", "module": "core"}
    assert out.lines[9].endswith("Thank you for running opensips")


def test_opensips_through_syslog_unescapes_the_sip_message_and_keeps_offsets() -> None:
    result = run_builtin("opensips", "opensips/syslog.log")
    out = result.entries
    assert result.failures == {}
    assert out.timestamps == [ts("2026-12-01T20:34:47.146887Z"),
                              ts("2026-12-01T20:34:48.000001Z"),
                              ts("2026-12-01T19:34:49.5Z")]
    assert "\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\n" in out.lines[1]
    assert "#015#012" not in out.lines[1]
    assert metadata(result, 1)["call_id"] == "a84b4c76e66710@pc33.example.com"
    assert line_labels(result, 2) == {"level": "ERROR", "module": "tm"}


def test_opensips_traditional_syslog_with_a_process_path() -> None:
    result = run_builtin("opensips", "opensips/syslog_traditional.log")
    assert result.failures == {}
    assert line_labels(result, 1) == {"level": "WARNING", "module": "tm"}
    assert metadata(result, 1) == {"pid": "2311", "function": "t_reply",
                                   "call_id": "a80001@10.0.0.5", "status": "486"}
    assert result.entries.timestamp(1) == ts("2026-12-01T20:34:48Z")


def test_mysql_slow_from_mariadb_one_entry_per_statement() -> None:
    result = run_builtin("mysql_slow", "mariadb/slow.log")
    out = result.entries
    statements = out.lines[1:]
    assert out.lines[0].startswith("/usr/sbin/mariadbd, Version:")  # the header, counted
    assert result.failures == {("3:regex", "no_match"): 1, ("5:timestamp", "missing_field"): 1}
    assert len(statements) == 14
    assert all(s.startswith("# User@Host: root[root] @ localhost []") for s in statements)
    assert not any("# Time:" in s for s in out.lines)
    multi = next(s for s in statements if "CREATE TABLE" in s)
    assert multi.endswith("CREATE TABLE shop.items (\n  id INT PRIMARY KEY,\n"
                          "  name VARCHAR(40) NOT NULL,\n  price DECIMAL(8,2)\n);")
    sleep = next(i for i, s in enumerate(out.lines) if "SLEEP(1.2)" in s)
    sm = metadata(result, sleep)
    assert sm["user"] == "root" and sm["host"] == "localhost"
    assert float(sm["query_time"]) >= 1.2
    assert set(sm) == {"user", "host", "query_time", "lock_time", "rows_sent",
                       "rows_examined"}
    stamp = int(out.lines[sleep].split("SET timestamp=")[1].split(";")[0])
    assert out.timestamp(sleep) == stamp * NS
    password = next(s for s in statements if "CREATE USER" in s)
    assert "s3cret-pass" not in password and "IDENTIFIED BY '***'" in password
    assert metadata(result, len(out.lines) - 2)["schema"] == "shop"


def test_mysql_slow_from_mysql8() -> None:
    result = run_builtin("mysql_slow", "mysql8/slow.log")
    out = result.entries
    assert len(out.lines) == 3
    assert metadata(result, 1) == {"user": "app", "ip": "192.0.2.7", "query_time": "2.000123",
                                   "lock_time": "0.000002", "rows_sent": "1",
                                   "rows_examined": "100000"}
    assert out.timestamp(1) == 1733085287 * NS
    assert out.lines[1].endswith("SELECT COUNT(*)\n  FROM orders\n WHERE total > 10;")
    assert "n3w-s3cret" not in out.lines[2]
    assert "IDENTIFIED WITH caching_sha2_password BY '***'" in out.lines[2]


def test_mysql_error_from_mariadb() -> None:
    result = run_builtin("mysql_error", "mariadb/error.log")
    out = result.entries
    assert result.failures == {}
    ready = next(i for i, s in enumerate(out.lines) if "ready for connections" in s)
    assert "\nVersion: '10.11" in out.lines[ready]  # the continuation line joined
    warning = next(i for i, s in enumerate(out.lines) if "Access denied" in s)
    assert line_labels(result, warning) == {"level": "Warning"}
    assert metadata(result, warning) == {"thread": str(int(out.lines[warning].split()[2]))}
    first = out.lines[0].split(" 0 [")[0]
    assert out.timestamp(0) == parse_time("mysql", first, 0)


def test_mysql_error_from_mysql8_with_error_codes() -> None:
    result = run_builtin("mysql_error", "mysql8/error.log")
    assert result.failures == {}
    assert line_labels(result, 1) == {"level": "ERROR"}
    assert metadata(result, 1) == {"thread": "1", "error_code": "MY-012592",
                                   "subsystem": "InnoDB"}
    assert result.entries.timestamps == [ts("2024-12-01T20:34:47.123456Z"),
                                         ts("2024-12-01T20:34:48.000001Z"),
                                         ts("2024-12-01T19:34:48.5Z")]


def test_docker_json_lines() -> None:
    lines = [json.dumps({"log": "hello\n", "stream": "stdout",
                         "time": "2026-12-01T20:34:47.123456789Z"}),
             json.dumps({"log": "oops\r\n", "stream": "stderr",
                         "time": "2026-12-01T20:34:48Z"}), "not json"]
    result = builtin("docker_json").run(entries(lines))
    out = result.entries
    assert out.lines == ["hello", "oops", "not json"]
    assert out.timestamps[:2] == [ts("2026-12-01T20:34:47.123456789Z"),
                                  ts("2026-12-01T20:34:48Z")]
    assert [dict(x) for x in out.line_labels] == [{"stream": "stdout"}, {"stream": "stderr"}, {}]
    assert ("2:json", "invalid_json") in result.failures


def test_docker_json_partial_records_are_joined_into_one_line() -> None:
    def record(log: str, stream: str = "stdout", t: str = "2026-12-01T20:00:00Z",
               **more: object) -> str:  # the key order of Docker's json-file
        return json.dumps({"log": log, "stream": stream, **more, "time": t},
                          separators=(",", ":"))
    raw = [record("one ", t="2026-12-01T20:00:01Z"), record('"quoted" \\', attrs={"a": "}"}),
           record("end\n", t="2026-12-01T20:00:03Z"),
           record("whole\n", "stderr", "2026-12-01T20:00:04Z"),
           record("ends in a backslash and n: \\n"), record("rest\n"),
           record("tab\t"), record("\u00e9\n")]
    lines = join_all(raw, builtin("docker_json").multiline)
    result = builtin("docker_json").run(entries(lines))
    out = result.entries
    assert out.lines == ['one "quoted" \\end', "whole", "ends in a backslash and n: \\nrest",
                         "tab\t\u00e9"]
    assert out.timestamp(0) == ts("2026-12-01T20:00:03Z")  # the last record's
    assert [dict(x) for x in out.line_labels][:2] == [{"stream": "stdout"}, {"stream": "stderr"}]
    assert result.failures == {}


def test_cri_lines() -> None:
    result = builtin("cri").run(entries([
        "2026-12-01T20:34:47.123456789+00:00 stdout F hello world",
        "2026-12-01T20:34:48.000000000Z stderr P partial "]))
    out = result.entries
    assert out.lines == ["hello world", "partial "]
    assert out.timestamp(0) == ts("2026-12-01T20:34:47.123456789Z")
    assert [dict(x) for x in out.line_labels] == [{"stream": "stdout"}, {"stream": "stderr"}]


def test_cri_partial_records_are_joined_into_one_line() -> None:
    raw = ["2026-12-01T20:00:01Z stdout P one ", "2026-12-01T20:00:02Z stdout P two ",
           "2026-12-01T20:00:03Z stdout F end", "2026-12-01T20:00:04Z stderr F whole",
           "2026-12-01T20:00:05Z stdout P  spaced ", "2026-12-01T20:00:06Z stdout F  P x"]
    pipeline = builtin("cri")
    result = pipeline.run(entries(join_all(raw, pipeline.multiline)))
    out = result.entries
    assert out.lines == ["one two end", "whole", " spaced  P x"]
    assert out.timestamp(0) == ts("2026-12-01T20:00:01Z")  # the first record's
    assert [dict(x) for x in out.line_labels] == [{"stream": "stdout"}, {"stream": "stderr"},
                                                  {"stream": "stdout"}]
    assert result.failures == {}


def test_json_and_logfmt_generics_label_the_level() -> None:
    result = builtin("json").run(entries(['{"level":"warn","msg":"x"}', '{"msg":"y"}']))
    assert [dict(x) for x in result.entries.line_labels] == [{"level": "warn"}, {}]
    result = builtin("logfmt").run(entries(["level=error msg=boom", "msg=calm"]))
    assert [dict(x) for x in result.entries.line_labels] == [{"level": "error"}, {}]


def test_opensips_call_id_forms_in_xlog_text_and_in_sip_headers() -> None:
    head = "Dec  1 20:34:05 [2311] NOTICE:"
    texts = {
        f"{head}callid=a1@h": "a1@h",
        f"{head}call-id=a2@h; more": "a2@h",
        f"{head}Call_ID: a3@h, x": "a3@h",
        f"{head}CALLID=a4": "a4",
        f"{head}a SIP dump\nINVITE sip:b@x SIP/2.0\ncall-id:  b1@h\nCSeq: 1 INVITE": "b1@h",
        f"{head}compact form\nACK sip:b@x SIP/2.0\ni: b2@h\n": "b2@h",
        f"{head}recall id=zz and no call id": None,  # 'recall id' is not a Call-ID
    }
    result = builtin("opensips").run(entries(list(texts)))
    for i, expected in enumerate(texts.values()):
        assert metadata(result, i).get("call_id") == expected, list(texts)[i]
