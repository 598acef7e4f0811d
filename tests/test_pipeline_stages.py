"""Each pipeline stage as a function over a LineBatch (no threads), and the runner."""

from __future__ import annotations

from datetime import UTC

import pytest

from logcap.config.errors import IssueCollector
from logcap.pipeline.batch import LineBatch
from logcap.pipeline.compiled import CompiledPipeline
from logcap.pipeline.decoding import decode_pipelines
from logcap.pipeline.stages.attach import (
    FieldMapConfig,
    LabelsStage,
    MetadataStage,
    OutputConfig,
    OutputStage,
)
from logcap.pipeline.stages.edit import (
    ReplaceConfig,
    ReplaceStage,
    TruncateConfig,
    TruncateStage,
    truncate_utf8,
)
from logcap.pipeline.stages.filter import DropConfig, DropStage, RateLimitConfig, RateLimitStage
from logcap.pipeline.stages.parse import (
    JsonConfig,
    JsonStage,
    LogfmtConfig,
    LogfmtStage,
    RegexConfig,
    RegexStage,
    parse_logfmt,
)
from logcap.pipeline.stages.timestamp import TimestampConfig, TimestampStage
from logcap.pipeline.timeformats import parse_time
from tests.pipeline_kit import READ_NS, entries

NS = 1_000_000_000


def batch(lines: list[str], now_s: float = 0.0) -> LineBatch:
    return LineBatch(list(lines), [READ_NS + i for i in range(len(lines))], READ_NS,
                     "/var/log/app.log", now_s)


def with_fields(rows: list[dict[str, str] | None]) -> LineBatch:
    b = batch([f"line {i}" for i in range(len(rows))])
    b.fields = [dict(r) if r is not None else None for r in rows]
    return b


def test_regex_named_groups_become_fields_and_misses_are_counted() -> None:
    b = batch(["ERROR: disk full", "no level here", "INFO: ok"])
    RegexStage(RegexConfig(r"^(?P<level>[A-Z]+): (?P<msg>.*)"), "0:regex")(b)
    assert b.fields == [{"level": "ERROR", "msg": "disk full"}, None,
                        {"level": "INFO", "msg": "ok"}]
    assert b.failures == {("0:regex", "no_match"): 1}
    assert b.lines == ["ERROR: disk full", "no level here", "INFO: ok"]  # unchanged


def test_regex_optional_does_not_count_misses_and_skips_unset_groups() -> None:
    b = batch(["a callid=x1", "nothing"])
    RegexStage(RegexConfig(r"callid=(?P<call_id>\w+)|(?P<other>zzz)", optional=True),
               "1:regex")(b)
    assert b.value(0, "call_id") == "x1"
    assert b.value(0, "other") is None  # did not take part: absent
    assert b.fields[1] is None
    assert b.failures == {}


def test_regex_group_that_did_not_take_part_keeps_an_earlier_value() -> None:
    b = batch(["a callid=x1 user=bob"])
    RegexStage(RegexConfig(r"user=(?P<user>\w+)"), "0:regex")(b)
    RegexStage(RegexConfig(r"callid=(?P<call_id>\w+)|(?P<user>zzz)"), "1:regex")(b)
    assert b.value(0, "call_id") == "x1" and b.value(0, "user") == "bob"


def test_regex_on_a_field_counts_lines_without_it() -> None:
    b = with_fields([{"msg": "user=bob"}, None])
    RegexStage(RegexConfig(r"user=(?P<user>\w+)", source="msg"), "0:regex")(b)
    assert b.fields == [{"msg": "user=bob", "user": "bob"}, None]
    assert b.failures == {("0:regex", "missing_field"): 1}


def test_json_takes_every_key_or_the_paths_given() -> None:
    b = batch(['{"level":"warn","n":3,"ctx":{"user":"bob"}}', "not json", "[1,2]"])
    JsonStage(JsonConfig(), "0:json")(b)
    assert b.fields[0] == {"level": "warn", "n": "3", "ctx": '{"user":"bob"}'}
    assert b.failures == {("0:json", "invalid_json"): 2}
    b = batch(['{"level":"warn","ctx":{"user":"bob"}}'])
    JsonStage(JsonConfig(fields={"who": "ctx.user", "gone": "ctx.nope"}), "0:json")(b)
    assert b.fields == [{"who": "bob"}]


def test_logfmt_pairs_quoted_values_and_bare_keys() -> None:
    assert parse_logfmt('level=info msg="a \\"quoted\\" text" dry') == {
        "level": "info", "msg": 'a "quoted" text', "dry": ""}
    b = batch(["level=info user=bob", "just words"])
    LogfmtStage(LogfmtConfig(fields={"who": "user"}), "0:logfmt")(b)
    assert b.fields == [{"who": "bob"}, None]
    assert b.failures == {("0:logfmt", "invalid_logfmt"): 1}


def test_timestamp_sets_the_log_time_and_keeps_the_read_time_when_it_cannot() -> None:
    b = with_fields([{"t": "2026-12-01T20:34:47.5Z"}, {"t": "yesterday"}, None])
    TimestampStage(TimestampConfig("t", "rfc3339"), "1:timestamp")(b)
    assert b.timestamps == [parse_time("rfc3339", "2026-12-01T20:34:47.5Z", 0),
                            READ_NS + 1, READ_NS + 2]
    assert b.failures == {("1:timestamp", "unparsable"): 1, ("1:timestamp", "missing_field"): 1}
    assert b.timestamped


def test_timestamp_fallback_formats_and_time_zones() -> None:
    b = with_fields([{"t": "Dec  1 20:34:47"}, {"t": "2026-12-01T20:34:47+01:00"}])
    TimestampStage(TimestampConfig("t", "syslog", ("rfc3339",), "Europe/Lisbon"), "0:ts")(b)
    winter_lisbon_is_utc = parse_time("rfc3339", "2026-12-01T20:34:47Z", 0)
    assert b.timestamps == [winter_lisbon_is_utc, winter_lisbon_is_utc - 3600 * NS]
    b = with_fields([{"t": "2026-07-01 12:00:00"}])
    TimestampStage(TimestampConfig("t", "mysql", (), "Europe/Lisbon"), "0:ts")(b)
    assert b.timestamps == [parse_time("rfc3339", "2026-07-01T11:00:00Z", 0)]  # summer: +1


def test_labels_and_structured_metadata_take_present_non_empty_fields() -> None:
    b = with_fields([{"level": "ERROR", "mod": "tm", "cid": "x"}, {"level": ""}, None])
    LabelsStage(FieldMapConfig((("level", "level"), ("module", "mod"))), "2:labels")(b)
    MetadataStage(FieldMapConfig((("call_id", "cid"),)), "3:structured_metadata")(b)
    assert b.labels == [(("level", "ERROR"), ("module", "tm")), None, None]
    assert b.metadata == [(("call_id", "x"),), None, None]
    assert b.failures == {}


def test_output_replaces_the_line_with_a_field() -> None:
    b = with_fields([{"log": "inner text"}, None])
    OutputStage(OutputConfig("log"), "0:output")(b)
    assert b.lines == ["inner text", "line 1"]
    assert b.failures == {("0:output", "missing_field"): 1}


def test_truncate_cuts_at_a_character_boundary_with_the_suffix_inside_the_limit() -> None:
    assert truncate_utf8("ééééé", 5, "") == "éé"  # 2 bytes each
    assert truncate_utf8("abcdefghij", 8, "...") == "abcde..."
    assert truncate_utf8("short", 8, "...") == "short"
    b = batch(["x" * 100, "ok"])
    TruncateStage(TruncateConfig(10, suffix="~"), "0:truncate")(b)
    assert b.lines == ["x" * 9 + "~", "ok"]


def test_replace_masks_with_a_template() -> None:
    b = batch(["CREATE USER 'app' IDENTIFIED BY 's3cret';", "SELECT 1;"])
    ReplaceStage(ReplaceConfig(r"(IDENTIFIED BY) '[^']*'", r"\1 '***'"), "0:replace")(b)
    assert b.lines == ["CREATE USER 'app' IDENTIFIED BY '***';", "SELECT 1;"]


def test_drop_needs_every_condition_and_counts_with_the_reason() -> None:
    b = batch(["DEBUG a", "INFO b", "DEBUG " + "c" * 50])
    DropStage(DropConfig(expression="^DEBUG", longer_than=20), "0:drop")(b)
    assert b.lines == ["DEBUG a", "INFO b"]
    assert b.drops == {("0:drop", "regex+size"): 1}
    assert len(b.timestamps) == len(b.fields) == len(b.labels) == len(b.metadata) == 2


def test_drop_by_field_value_and_by_age() -> None:
    b = with_fields([{"level": "debug"}, {"level": "info"}, None])
    DropStage(DropConfig(source="level", value="debug"), "0:drop")(b)
    assert b.lines == ["line 1", "line 2"]
    assert b.drops == {("0:drop", "value"): 1}
    b = batch(["old", "new"])
    b.timestamps[0] = READ_NS - 3600 * NS
    DropStage(DropConfig(older_than=60.0), "0:drop")(b)
    assert b.lines == ["new"]
    assert b.drops == {("0:drop", "age"): 1}


def test_rate_limit_is_a_token_bucket_per_stream() -> None:
    stage = RateLimitStage(RateLimitConfig(rate=10, burst=5), "0:rate_limit")
    first = batch([str(i) for i in range(8)], now_s=100.0)
    stage(first)
    assert first.lines == ["0", "1", "2", "3", "4"]  # the burst
    assert first.drops == {("0:rate_limit", "rate_limit"): 3}
    later = batch(["a", "b", "c", "d"], now_s=100.2)  # 0.2 s at 10/s: 2 tokens
    stage(later)
    assert later.lines == ["a", "b"]
    other = LineBatch(["x"] * 6, [0] * 6, 0, "/var/log/other.log", 100.2)
    stage(other)
    assert len(other.lines) == 5  # its own bucket


def _pipeline(text: str) -> CompiledPipeline:
    import yaml
    issues = IssueCollector()
    specs = decode_pipelines(yaml.safe_load(text), "test", issues)
    assert not issues.items, issues.items
    return next(iter(specs.values())).compile()


def test_the_runner_keeps_the_token_and_fills_the_per_line_fields() -> None:
    pipeline = _pipeline(r"""
        pipelines:
          p:
            stages:
              - regex: {expression: '^(?P<t>\S+) (?P<level>\w+) (?P<msg>.*)'}
              - timestamp: {source: t, format: unix}
              - drop: {source: level, value: DEBUG}
              - labels: {level: }
              - structured_metadata: {msg: }
    """)
    original = entries(["1796169000 INFO hello", "1796169001 DEBUG noise", "garbage"])
    result = pipeline.run(original)
    out = result.entries
    assert out.token == original.token and out.source == original.source
    assert out.stream == original.stream and out.labels == original.labels
    assert out.lines == ["1796169000 INFO hello", "garbage"]
    assert out.timestamps == [1796169000 * NS, READ_NS + 2]  # the garbage line keeps its own
    assert out.line_labels == [(("level", "INFO"),), ()]
    assert out.metadata == [(("msg", "hello"),), ()]
    assert result.drops == {("2:drop", "value"): 1}
    assert result.failures == {("0:regex", "no_match"): 1, ("1:timestamp", "missing_field"): 1}
    assert original.lines == ["1796169000 INFO hello", "1796169001 DEBUG noise", "garbage"]


def test_a_pipeline_without_per_line_results_leaves_the_fields_unset() -> None:
    pipeline = _pipeline("pipelines: {p: {stages: [{replace: {expression: 'a', replace: b}}]}}")
    out = pipeline.run(entries(["abc"])).entries
    assert out.lines == ["bbc"]
    assert out.timestamps is None and out.line_labels is None and out.metadata is None


def test_a_stage_that_raises_is_counted_and_the_batch_goes_on() -> None:
    class Broken:
        label = "0:broken"

        def __call__(self, batch: LineBatch) -> None:
            raise RuntimeError("bug")

    result = CompiledPipeline("p", [Broken()]).run(entries(["a", "b"]))
    assert result.entries.lines == ["a", "b"]
    assert result.failures == {("0:broken", "error"): 2}


@pytest.mark.parametrize("text, read, expected", [
    ("Dec 31 23:59:59", "2027-01-01T00:00:05Z", "2026-12-31T23:59:59Z"),  # across New Year
    ("Jan  1 00:00:01", "2026-12-31T23:59:58Z", "2027-01-01T00:00:01Z"),  # reader's clock late
    ("Jun 15 12:00:00", "2026-12-02T00:00:00Z", "2026-06-15T12:00:00Z"),
])
def test_syslog_times_take_the_year_closest_to_the_read_time(text: str, read: str,
                                                             expected: str) -> None:
    read_ns = parse_time("rfc3339", read, 0)
    assert parse_time("syslog", text, read_ns, UTC) == parse_time("rfc3339", expected, 0)


@pytest.mark.parametrize("fmt, text, expected", [
    ("mysql", "261201 23:46:41", "2026-12-01T23:46:41Z"),
    ("mysql", "261201  3:46:41", "2026-12-01T03:46:41Z"),
    ("mysql", "2026-12-01  9:01:01", "2026-12-01T09:01:01Z"),
    ("mysql", "2024-12-01T20:34:47.123456Z", "2024-12-01T20:34:47.123456Z"),
    ("rfc3339", "2026-12-01 20:34:47,5+0100", "2026-12-01T19:34:47.5Z"),
    ("unix", "1796168792", "2026-12-01T23:46:32Z"),
    ("unix", "1796168792.25", "2026-12-01T23:46:32.25Z"),
    ("unix_ms", "1796168792250", "2026-12-01T23:46:32.25Z"),
    ("unix_us", "1796168792250000", "2026-12-01T23:46:32.25Z"),
    ("unix_ns", "1796168792250000001", "2026-12-01T23:46:32.250000001Z"),
])
def test_time_formats(fmt: str, text: str, expected: str) -> None:
    assert parse_time(fmt, text, READ_NS) == parse_time("rfc3339", expected, 0)
