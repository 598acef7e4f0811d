"""Valid configurations: defaults, value grammars, variables, overrides, rendering."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import attrs
import pytest
import yaml

from logcap.components.registry import summary
from logcap.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    load_config,
    parse_config,
    resolve_config_path,
    schema,
)
from logcap.config.sources import FileSourceConfig
from logcap.config.values import (
    expand_vars,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / DEFAULT_CONFIG_PATH


def _parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(textwrap.dedent(text), env or {})


# --- defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_document_gives_all_defaults(text: str) -> None:
    assert parse_config(text, {}) == Config()


def test_defaults_are_the_named_constants() -> None:
    config = Config()
    assert config.server.host == schema.DEFAULT_SERVER_HOST == "127.0.0.1"
    assert config.server.port == schema.DEFAULT_ADMIN_PORT == 8401
    assert config.server.metrics_port == schema.DEFAULT_METRICS_PORT == 8001
    assert config.server.admin_token == ""
    assert config.sources.files == ()
    assert config.sources.containers.socket == "unix:///var/run/docker.sock"
    assert config.dispatcher.shards == 2
    assert config.dispatcher.queue_size == 64
    assert config.dispatcher.batch_timeout == schema.DEFAULT_DISPATCH_BATCH_TIMEOUT_S == 0.2
    assert config.dispatcher.retry_max_delay == 30.0
    assert config.sinks.loki.enabled is False
    assert config.sinks.loki.encoding == "protobuf"
    assert config.sinks.loki.batch_bytes == schema.DEFAULT_LOKI_BATCH_BYTES == 1024 * 1024
    assert config.sinks.loki.batch_wait == schema.DEFAULT_BATCH_WAIT_S == 1.0
    assert config.sinks.loki.max_labels_per_stream == 15
    assert config.sinks.loki.auth.type == "none"
    assert config.sinks.loki.tls.verify is True
    assert config.sinks.file.enabled is True
    assert config.sinks.file.directory == "var/out"
    assert config.sinks.file.format == "raw"
    assert config.positions.max_position_age == 168 * 3600.0
    assert config.disk_buffer.enabled is False
    assert config.disk_buffer.max_total_size == 1024**3
    assert config.disk_buffer.compression_level == 1
    assert config.disk_buffer.when_full == "block"
    assert config.batch_persistence.batch_ttl == 24 * 3600.0
    assert config.dlq.max_total_size == 256 * 1024**2
    assert config.deduplication.window == 300.0
    assert config.supervision.backoff_min == 0.1
    assert config.supervision.shutdown_timeout == 10.0
    assert config.logging.level == "info"
    assert config.logging.format == "text"


def test_file_source_defaults_apply_to_omitted_keys() -> None:
    config = _parse("sources: {files: [{name: app, include: ['/var/log/app/*.log']}]}")
    source = config.sources.files[0]
    assert source == FileSourceConfig(name="app", include=("/var/log/app/*.log",))
    assert source.start_at == "end"
    assert source.max_line_bytes == 256 * 1024
    assert source.encoding == "utf-8"
    assert source.multiline is None
    assert source.pipeline is None


def test_empty_sections_mean_their_defaults() -> None:
    assert _parse("server:\nsources:\n  files:\nsinks:\n  loki:\n") == Config()


def test_no_source_at_all_is_valid() -> None:
    assert _parse("sources: {files: [], containers: {enabled: false}}").sources.files == ()


def test_full_file_source_is_read() -> None:
    config = _parse(
        r"""
        sources:
          files:
            - name: opensips.main
              include: [/var/log/opensips/*.log, /var/log/opensips.log]
              exclude: ["*.gz"]
              labels: {job: opensips, env: prod}
              pipeline: null
              start_at: BEGINNING
              multiline: null
              max_line_bytes: 1MiB
              encoding: latin-1
        """
    )
    source = config.sources.files[0]
    assert source.include == ("/var/log/opensips/*.log", "/var/log/opensips.log")
    assert source.exclude == ("*.gz",)
    assert dict(source.labels) == {"job": "opensips", "env": "prod"}
    assert source.pipeline is None
    assert source.start_at == "beginning"
    assert source.multiline is None
    assert source.max_line_bytes == 1024 * 1024
    assert source.encoding == "latin-1"


def test_a_pipeline_name_is_accepted_by_the_config_and_checked_by_the_loader() -> None:
    """The name is checked against the pipelines by logcap.pipeline.loading
    (tests/test_pipeline_config.py)."""
    config = _parse(
        r"""
        sources:
          files:
            - name: opensips.main
              include: [/var/log/opensips/*.log]
              pipeline: sip
        """
    )
    assert config.sources.files[0].pipeline == "sip"


def test_an_encoding_that_does_not_write_newline_as_one_byte_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _parse("sources: {files: [{name: a, include: [x], encoding: utf-16}]}")
    assert "sources.files[0].encoding" in str(err.value) and "0x0A" in str(err.value)


def test_enum_values_are_matched_case_insensitively() -> None:
    config = _parse("logging: {level: WARNING, format: Json}")
    assert (config.logging.level, config.logging.format) == ("warning", "json")


def test_yaml_anchors_and_merge_keys_work() -> None:
    config = _parse(
        """
        sources:
          files:
            - &base {name: a, include: [a.log], labels: {job: x}}
            - <<: *base
              name: b
        """
    )
    assert [source.name for source in config.sources.files] == ["a", "b"]
    assert config.sources.files[1].labels == config.sources.files[0].labels


def test_relative_directories_stay_relative() -> None:
    config = _parse("positions: {directory: state/pos}\ndlq: {directory: ./dlq}")
    assert config.positions.directory == "state/pos"
    assert config.dlq.directory == "./dlq"


# --- durations and sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("168h", 604800.0),
        ("7d", 604800.0),
        ("1.5s", 1.5),
        ("2m30s500ms", 150.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("30", 30.0),
        ("0.25", 0.25),
        (" 10s ", 10.0),
        ("0s", 0.0),
    ],
)
def test_duration_forms_parse_to_float_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "invalid duration 'abc' (expected e.g. 500ms, 10s, 5m)"),
        ("", "invalid duration ''"),
        ("5x", "unknown unit 'x'"),
        ("10S", "unknown unit 'S'"),
        ("-1s", "must not be negative"),
        ("1h 30m", "invalid duration '1h 30m'"),
        ("ms", "invalid duration 'ms'"),
    ],
)
def test_bad_durations_raise_value_error_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("text", "num_bytes"),
    [
        ("64MiB", 64 * 1024**2),
        ("1GiB", 1024**3),
        ("512KiB", 512 * 1024),
        ("2TiB", 2 * 1024**4),
        ("10MB", 10_000_000),
        ("1KB", 1000),
        ("3GB", 3_000_000_000),
        ("100", 100),
        ("100B", 100),
        ("1.5KiB", 1536),
        ("64 mib", 64 * 1024**2),
        ("0", 0),
    ],
)
def test_size_forms_parse_to_int_bytes(text: str, num_bytes: int) -> None:
    assert parse_size(text) == num_bytes
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lots", "invalid size 'lots' (expected e.g. 512KiB, 64MiB, 1GiB)"),
        ("5XB", "unknown unit 'XB'"),
        ("-5MiB", "must not be negative"),
        ("1.5B", "not a whole number of bytes"),
        ("", "invalid size ''"),
    ],
)
def test_bad_sizes_raise_value_error_with_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.2, 1.5, 59.0, 90.0, 5400.0, 604800.0, 1e-5])
def test_durations_render_to_text_that_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [(64 * 1024**2, "64MiB"), (10_000_000, "10MB"), (1536, "1536B"), (0, "0B"), (1024, "1KiB")],
)
def test_sizes_render_in_the_unit_with_the_smallest_exact_count(num_bytes: int, text: str) -> None:
    assert format_size(num_bytes) == text
    assert parse_size(text) == num_bytes


def test_bare_numbers_in_yaml_are_seconds_and_bytes() -> None:
    config = _parse("sinks: {loki: {batch_wait: 2, timeout: 0.5, batch_bytes: 4096}}")
    assert config.sinks.loki.batch_wait == 2.0
    assert isinstance(config.sinks.loki.batch_wait, float)
    assert config.sinks.loki.timeout == 0.5
    assert config.sinks.loki.batch_bytes == 4096


def test_zero_fsync_interval_means_fsync_every_append_and_is_allowed() -> None:
    assert _parse("disk_buffer: {fsync_interval: 0}").disk_buffer.fsync_interval == 0.0


# --- variables ----------------------------------------------------------------------------


def test_variable_is_replaced_by_its_value() -> None:
    config = _parse("server:\n  host: ${BIND}\n", {"BIND": "0.0.0.0"})
    assert config.server.host == "0.0.0.0"


def test_variable_default_is_used_when_unset() -> None:
    assert _parse("server:\n  port: ${ADMIN_PORT:-8500}\n").server.port == 8500


def test_variable_default_is_used_when_empty() -> None:
    assert _parse("server:\n  port: ${ADMIN_PORT:-8500}\n", {"ADMIN_PORT": ""}).server.port == 8500


def test_variable_value_beats_its_default() -> None:
    config = _parse("server:\n  port: ${ADMIN_PORT:-8500}\n", {"ADMIN_PORT": "9100"})
    assert config.server.port == 9100


def test_double_dollar_is_a_literal_dollar() -> None:
    config = _parse("server:\n  admin_token: pa$$word-$${NOT_A_VAR}\n")
    assert config.server.admin_token == "pa$word-${NOT_A_VAR}"


def test_lone_dollar_is_kept() -> None:
    assert _parse("server: {admin_token: 'cost $5'}").server.admin_token == "cost $5"


def test_expanded_values_are_typed_by_their_field() -> None:
    env = {"PORT": "9100", "ON": "yes", "WAIT": "250ms", "TOKEN": "0123"}
    config = _parse(
        """
        server: {port: "${PORT}", admin_token: "${TOKEN}"}
        sinks:
          loki:
            enabled: ${ON}
            url: http://loki:3100
            batch_wait: ${WAIT}
        """,
        env,
    )
    assert config.server.port == 9100
    assert config.server.admin_token == "0123"
    assert config.sinks.loki.enabled is True
    assert config.sinks.loki.batch_wait == 0.25


def test_expanded_empty_value_means_null_for_optional_keys() -> None:
    config = _parse(
        """
        sources:
          files:
            - {name: app, include: ["${LOG_DIR:-/var/log}/*.log"], pipeline: "${PIPE:-}"}
        """
    )
    assert config.sources.files[0].include == ("/var/log/*.log",)
    assert config.sources.files[0].pipeline is None


def test_variables_in_a_string_are_all_expanded() -> None:
    assert expand_vars("${A}:${B:-2}/${C}", {"A": "1", "C": "3"}) == "1:2/3"


def test_variables_in_comments_are_ignored() -> None:
    assert _parse("# port: ${NEVER_SET}\nserver: {port: 8402}\n").server.port == 8402


# --- environment overrides ----------------------------------------------------------------


def test_loki_url_override_sets_url_and_enables_loki() -> None:
    config = _parse("", {"LOKI_URL": "https://loki.example:3100"})
    assert config.sinks.loki.enabled is True
    assert config.sinks.loki.url == "https://loki.example:3100"


def test_loki_url_override_beats_the_file() -> None:
    text = "sinks: {loki: {enabled: false, url: 'http://old:3100'}}"
    config = _parse(text, {"LOKI_URL": "http://new:3100"})
    assert (config.sinks.loki.enabled, config.sinks.loki.url) == (True, "http://new:3100")


def test_log_level_override() -> None:
    config = _parse("logging: {level: info}", {"LOGCAP_LOG_LEVEL": "DEBUG"})
    assert config.logging.level == "debug"


def test_log_format_override() -> None:
    assert _parse("", {"LOGCAP_LOG_FORMAT": "json"}).logging.format == "json"


def test_admin_token_override() -> None:
    config = _parse("server: {admin_token: from-file}", {"LOGCAP_ADMIN_TOKEN": "from-env"})
    assert config.server.admin_token == "from-env"


def test_empty_override_variables_are_ignored() -> None:
    env = {"LOKI_URL": "", "LOGCAP_LOG_LEVEL": "", "LOGCAP_ADMIN_TOKEN": ""}
    assert _parse("server: {admin_token: keep}", env).server.admin_token == "keep"
    assert _parse("", env) == Config()


def test_config_path_comes_from_the_command_line_first() -> None:
    assert resolve_config_path("cli.yaml", {"LOGCAP_CONFIG": "env.yaml"}) == "cli.yaml"
    assert resolve_config_path(Path("cli.yaml"), {}) == "cli.yaml"


def test_config_path_comes_from_logcap_config_without_command_line() -> None:
    assert resolve_config_path(None, {"LOGCAP_CONFIG": "env.yaml"}) == "env.yaml"


def test_config_path_falls_back_to_the_default() -> None:
    assert resolve_config_path(None, {}) == DEFAULT_CONFIG_PATH == "configs/config.yaml"


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  port: ${LOGCAP_TEST_PORT}\n", encoding="utf-8")
    monkeypatch.setenv("LOGCAP_TEST_PORT", "8555")
    monkeypatch.delenv("LOKI_URL", raising=False)
    assert load_config(path).server.port == 8555
    assert load_config(str(path), {"LOGCAP_TEST_PORT": "8556"}).server.port == 8556


# --- rendering ----------------------------------------------------------------------------

SECRETS = """
server: {admin_token: hunter2}
sinks:
  loki:
    enabled: true
    url: https://bob:pw@loki:3100
    labels: {api_token: abc, job: x}
    auth: {type: basic, username: bob, password: s3cret}
    tls: {cert_file: /c.pem, key_file: /k.pem}
disk_buffer:
  encryption: {enabled: true, key_file: /etc/logcap/key}
"""


def test_to_dict_redacts_secrets() -> None:
    data = _parse(SECRETS).to_dict()
    assert data["server"]["admin_token"] == "***"
    assert data["sinks"]["loki"]["auth"]["password"] == "***"
    assert data["sinks"]["loki"]["auth"]["username"] == "bob"
    assert data["sinks"]["loki"]["labels"] == {"api_token": "***", "job": "x"}
    assert data["sinks"]["loki"]["url"] == "https://bob:***@loki:3100"
    assert "hunter2" not in json.dumps(data) and "s3cret" not in json.dumps(data)


def test_to_dict_keeps_paths_to_secrets_and_unset_secrets_visible() -> None:
    data = _parse(SECRETS).to_dict()
    assert data["sinks"]["loki"]["auth"]["password_file"] == ""
    assert data["sinks"]["loki"]["auth"]["token"] == ""
    assert data["sinks"]["loki"]["tls"]["key_file"] == "/k.pem"
    assert data["disk_buffer"]["encryption"]["key_file"] == "/etc/logcap/key"


def test_to_dict_without_redaction_shows_everything() -> None:
    data = _parse(SECRETS).to_dict(redact=False)
    assert data["server"]["admin_token"] == "hunter2"
    assert data["sinks"]["loki"]["auth"]["password"] == "s3cret"
    assert data["sinks"]["loki"]["url"] == "https://bob:pw@loki:3100"


def test_to_dict_is_plain_data_with_readable_durations_and_sizes() -> None:
    data = Config().to_dict()
    json.dumps(data)
    assert data["dispatcher"]["batch_timeout"] == "200ms"
    assert data["positions"]["max_position_age"] == "168h"
    assert data["disk_buffer"]["max_total_size"] == "1GiB"
    assert data["sources"]["files"] == []
    assert list(data) == [field.name for field in attrs.fields(Config)]


def test_to_dict_loads_back_into_an_equal_config() -> None:
    config = _parse(SECRETS)
    assert parse_config(yaml.safe_dump(config.to_dict(redact=False)), {}) == config
    shipped = load_config(SHIPPED_CONFIG, {})
    assert parse_config(yaml.safe_dump(shipped.to_dict(redact=False)), {}) == shipped


def test_summary_is_one_line_without_secrets() -> None:
    line = summary(_parse(SECRETS))
    assert "\n" not in line
    assert "hunter2" not in line and "s3cret" not in line and ":pw@" not in line
    assert "0 file sources" in line
    assert "loki (https://bob:***@loki:3100, protobuf)" in line
    assert "file (var/out, raw)" in line
    assert "shards: 2" in line
    assert "buffer: memory" in line
    assert "admin: http://127.0.0.1:8401 (token set)" in line


def test_summary_names_sources_and_the_disk_buffer() -> None:
    line = summary(
        _parse(
            """
            sources: {files: [{name: a, include: [x]}, {name: b, include: [y]}]}
            disk_buffer: {enabled: true, directory: /data/buf}
            dispatcher: {shards: 4}
            """
        )
    )
    assert "2 file sources (a, b), containers off" in line
    assert "buffer: disk (/data/buf)" in line
    assert "shards: 4" in line


# --- the shipped config and immutability --------------------------------------------------


def test_shipped_config_loads_and_runs_without_loki() -> None:
    config = load_config(SHIPPED_CONFIG, {})
    (demo,) = config.sources.files
    assert demo.name == "demo"
    assert demo.include == ("demo/logs/*.log",)
    assert demo.start_at == "beginning"
    assert dict(demo.labels) == {"job": "demo"}
    assert config.sinks.file.enabled is True
    assert config.sinks.file.directory == "var/out"
    assert config.sinks.file.format == "json"
    assert config.sinks.loki.enabled is False
    assert config.sinks.loki.url == "http://127.0.0.1:3100"
    assert config.positions.directory == "var/positions"


def test_shipped_config_ships_to_loki_when_loki_url_is_set() -> None:
    config = load_config(SHIPPED_CONFIG, {"LOKI_URL": "http://loki:3100"})
    assert config.sinks.loki.enabled is True
    assert config.sinks.loki.url == "http://loki:3100"


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.server = schema.ServerConfig()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.sinks.loki.url = "http://x"  # type: ignore[misc]


def test_config_collections_are_read_only() -> None:
    config = _parse("sources: {files: [{name: a, include: [x], labels: {job: y}}]}")
    source = config.sources.files[0]
    assert isinstance(config.sources.files, tuple)
    assert isinstance(source.include, tuple)
    with pytest.raises(TypeError):
        source.labels["job"] = "z"  # type: ignore[index]


def test_config_sections_are_slotted() -> None:
    assert not hasattr(Config(), "__dict__")
    assert not hasattr(schema.LokiConfig(), "__dict__")


def test_configs_compare_by_value() -> None:
    assert load_config(SHIPPED_CONFIG, {}) == load_config(SHIPPED_CONFIG, {})
    assert load_config(SHIPPED_CONFIG, {}) != Config()


def test_disk_buffer_max_files_reaches_the_segment_store(tmp_path: Path) -> None:
    from logcap.components.registry import make_segment_store

    config = _parse(f"disk_buffer: {{enabled: true, directory: {tmp_path}, max_files: 3}}")
    assert config.disk_buffer.max_files == 3
    assert make_segment_store(config)._max_files == 3
    unbounded = _parse(f"disk_buffer: {{enabled: true, directory: {tmp_path}}}")
    assert make_segment_store(unbounded)._max_files is None
