"""Invalid configurations: each is refused with the key path and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from logcap.config import ConfigError, ConfigIssue, load_config, parse_config


def _issues(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), env or {})
    return caught.value.issues


def _one_file_source(extra: str) -> str:
    return f"sources: {{files: [{{name: app, include: ['/var/log/app/*.log'], {extra}}}]}}"


CASES = [
    # unknown keys and sections
    pytest.param("sinkz: {}", {}, "sinkz", "unknown section (did you mean 'sinks'?)",
                 id="unknown-section-suggests-closest"),
    pytest.param("loki: {url: 'http://x:3100'}", {}, "loki", "did you mean 'sinks.loki'?",
                 id="section-at-wrong-level-suggests-its-home"),
    pytest.param("sinks: {loki: {batch_wiat: 1s}}", {}, "sinks.loki.batch_wiat",
                 "unknown key (did you mean 'batch_wait'?)", id="typo-in-nested-key"),
    pytest.param("sinks: {loki: {auth: {usrname: bob}}}", {}, "sinks.loki.auth.usrname",
                 "did you mean 'username'?", id="typo-three-levels-deep"),
    pytest.param(_one_file_source("exclud: []"), {}, "sources.files[0].exclud",
                 "did you mean 'exclude'?", id="typo-in-file-source"),
    pytest.param("server: {zzz: 1}", {}, "server.zzz", "valid: host, port, metrics_port",
                 id="unknown-key-without-close-match-lists-valid-keys"),
    pytest.param("server: {1: x}", {}, "server.1", "key is not a string",
                 id="non-string-key"),
    # durations
    pytest.param("sinks: {loki: {batch_wait: abc}}", {}, "sinks.loki.batch_wait",
                 "invalid duration 'abc' (expected e.g. 500ms, 10s, 5m)", id="bad-duration"),
    pytest.param("dispatcher: {batch_timeout: 5x}", {}, "dispatcher.batch_timeout",
                 "unknown unit 'x'", id="duration-with-unknown-unit"),
    pytest.param("positions: {flush_interval: -1s}", {}, "positions.flush_interval",
                 "must not be negative", id="negative-duration"),
    pytest.param("deduplication: {window: 0}", {}, "deduplication.window",
                 "must be greater than 0", id="zero-duration"),
    pytest.param("supervision: {period: true}", {}, "supervision.period",
                 "got a boolean", id="boolean-as-duration"),
    pytest.param("supervision: {shutdown_timeout: .inf}", {}, "supervision.shutdown_timeout",
                 "finite", id="infinite-duration"),
    # sizes
    pytest.param("dlq: {max_total_size: lots}", {}, "dlq.max_total_size",
                 "invalid size 'lots'", id="bad-size"),
    pytest.param("disk_buffer: {max_total_size: -5MiB}", {}, "disk_buffer.max_total_size",
                 "must not be negative", id="negative-size"),
    pytest.param("sinks: {file: {max_file_size: 0}}", {}, "sinks.file.max_file_size",
                 "must be greater than 0", id="zero-size"),
    pytest.param("sinks: {loki: {batch_bytes: 1.5}}", {}, "sinks.loki.batch_bytes",
                 "whole number of bytes", id="fractional-bytes"),
    # integers, booleans, ports
    pytest.param("server: {port: true}", {}, "server.port",
                 "expected an integer, got a boolean (true)", id="boolean-is-not-an-integer"),
    pytest.param("dispatcher: {shards: two}", {}, "dispatcher.shards",
                 "expected an integer, got a string 'two'", id="string-is-not-an-integer"),
    pytest.param("server: {port: 70000}", {}, "server.port",
                 "out of range (expected 1..65535)", id="port-above-range"),
    pytest.param("server: {metrics_port: 0}", {}, "server.metrics_port",
                 "out of range", id="port-zero"),
    pytest.param("server: {port: 9000, metrics_port: 9000}", {}, "server.metrics_port",
                 "must differ from port", id="admin-and-metrics-ports-clash"),
    pytest.param("dispatcher: {shards: 0}", {}, "dispatcher.shards",
                 "out of range (expected 1..256)", id="zero-shards"),
    pytest.param("disk_buffer: {compression_level: 23}", {}, "disk_buffer.compression_level",
                 "expected 1..22", id="compression-level-out-of-range"),
    pytest.param("dispatcher: {max_retries: 10}", {}, "dispatcher.max_retries",
                 "removed: a transient failure (5xx, 429, timeout, connection error) is retried "
                 "until it is delivered, with backoff capped at dispatcher.retry_max_delay; to "
                 "dead-letter after a budget, enable batch_persistence (with the disk buffer) "
                 "and set its max_recovery_retries",
                 id="removed-max-retries"),
    pytest.param("positions: {enabled: 1}", {}, "positions.enabled",
                 "expected true or false, got an integer", id="integer-is-not-a-boolean"),
    pytest.param("logging: {level: null}", {}, "logging.level",
                 "expected one of debug, info, warning, error, got null",
                 id="null-scalar"),
    pytest.param("server: 5", {}, "server", "expected a mapping, got an integer",
                 id="section-is-not-a-mapping"),
    # strings, lists, maps
    pytest.param("sinks: {loki: {tenant_id: 42}}", {}, "sinks.loki.tenant_id",
                 "quote it", id="number-where-string-expected"),
    pytest.param("sources: {files: [{name: app, include: '*.log'}]}", {},
                 "sources.files[0].include", "expected a list of strings, got a string",
                 id="string-where-list-expected"),
    pytest.param("sources: {files: [{name: app, include: []}]}", {},
                 "sources.files[0].include", "at least one entry", id="empty-include"),
    pytest.param("sources: {files: [{name: app, include: [1]}]}", {},
                 "sources.files[0].include[0]", "expected a string", id="list-item-not-a-string"),
    pytest.param("sources: {files: [{include: ['*.log']}]}", {}, "sources.files[0].name",
                 "required but missing", id="missing-source-name"),
    pytest.param("sources: {files: [{name: 'my app', include: ['*.log']}]}", {},
                 "sources.files[0].name", "invalid name 'my app'", id="source-name-with-space"),
    pytest.param(
        "sources: {files: [{name: a, include: [x]}, {name: b, include: [y]},"
        " {name: a, include: [z]}]}",
        {}, "sources.files[2].name", "duplicate source name 'a' (also used by files[0])",
        id="duplicate-source-names"),
    pytest.param("sources: {files: {name: a}}", {}, "sources.files",
                 "expected a list of mappings", id="files-not-a-list"),
    pytest.param(_one_file_source("labels: {'bad-name': x}"), {},
                 "sources.files[0].labels.bad-name", "invalid label name", id="bad-label-name"),
    pytest.param("sinks: {loki: {labels: {__name__: x}}}", {}, "sinks.loki.labels.__name__",
                 "reserved", id="reserved-label-name"),
    pytest.param(_one_file_source("labels: {port: 5060}"), {},
                 "sources.files[0].labels.port", "expected a string, got an integer",
                 id="label-value-not-a-string"),
    pytest.param(_one_file_source("encoding: utf-99"), {}, "sources.files[0].encoding",
                 "unknown text encoding", id="unknown-text-encoding"),
    pytest.param("sources: {containers: {socket: 'ftp://docker'}}", {},
                 "sources.containers.socket", "invalid Docker address", id="bad-docker-socket"),
    # enums and regexes
    pytest.param("logging: {level: verbose}", {}, "logging.level",
                 "invalid value 'verbose' (expected one of debug, info, warning, error)",
                 id="bad-log-level"),
    pytest.param("sinks: {file: {format: jsn}}", {}, "sinks.file.format",
                 "did you mean 'json'?", id="enum-typo-suggests-closest"),
    pytest.param(_one_file_source("start_at: middle"), {}, "sources.files[0].start_at",
                 "expected one of end, beginning", id="bad-start-at"),
    pytest.param("disk_buffer: {when_full: false}", {}, "disk_buffer.when_full",
                 "got a boolean", id="boolean-as-enum"),
    pytest.param(_one_file_source("multiline: {pattern: '('}"), {},
                 "sources.files[0].multiline.pattern", "invalid regex '('", id="bad-regex"),
    pytest.param(_one_file_source("multiline: {negate: true}"), {},
                 "sources.files[0].multiline.pattern", "required", id="multiline-without-pattern"),
    # impossible combinations
    pytest.param("sinks: {loki: {enabled: true}}", {}, "sinks.loki.url",
                 "required when loki is enabled", id="loki-enabled-without-url"),
    pytest.param("sinks: {loki: {url: 'ftp://loki:3100'}}", {}, "sinks.loki.url",
                 "invalid URL 'ftp://loki:3100'", id="loki-url-not-http"),
    pytest.param("sinks: {file: {enabled: false}}", {}, "sinks", "no sink is enabled",
                 id="no-sink-enabled"),
    pytest.param("supervision: {backoff_min: 1m, backoff_max: 1s}", {},
                 "supervision.backoff_min", "1m must not exceed backoff_max (1s)",
                 id="backoff-min-above-max"),
    pytest.param("supervision: {ping_interval: 30s, ping_timeout: 10s}", {},
                 "supervision.ping_interval", "must be shorter than ping_timeout",
                 id="ping-interval-not-below-timeout"),
    pytest.param("dispatcher: {retry_base_delay: 1m, retry_max_delay: 10s}", {},
                 "dispatcher.retry_base_delay", "must not exceed retry_max_delay",
                 id="retry-base-delay-above-max"),
    pytest.param("disk_buffer: {max_file_size: 2GiB, max_total_size: 1GiB}", {},
                 "disk_buffer.max_file_size", "must not exceed max_total_size (1GiB)",
                 id="segment-larger-than-buffer"),
    pytest.param("disk_buffer: {encryption: {enabled: true}}", {}, "disk_buffer.encryption",
                 "enabled without a key", id="encryption-without-key"),
    pytest.param("disk_buffer: {encryption: {enabled: true, key_env: LOGCAP_KEY}}", {},
                 "disk_buffer.encryption.key_env", "'LOGCAP_KEY' is not set",
                 id="encryption-key-variable-unset"),
    pytest.param("batch_persistence: {batch_timeout: 1h, batch_ttl: 10m}", {},
                 "batch_persistence.batch_ttl", "must not be shorter than batch_timeout",
                 id="batch-ttl-shorter-than-timeout"),
    pytest.param("sinks: {loki: {auth: {type: basic, password: pw}}}", {},
                 "sinks.loki.auth.username", "required when auth type is 'basic'",
                 id="basic-auth-without-username"),
    pytest.param("sinks: {loki: {auth: {type: bearer}}}", {}, "sinks.loki.auth.token",
                 "bearer auth needs token or token_file", id="bearer-auth-without-token"),
    pytest.param("sinks: {loki: {auth: {username: bob, password: pw}}}", {},
                 "sinks.loki.auth.type", "is 'none' but username, password are set",
                 id="credentials-with-auth-type-none"),
    pytest.param("sinks: {loki: {tls: {cert_file: /etc/c.pem}}}", {},
                 "sinks.loki.tls.key_file", "must be set together", id="client-cert-without-key"),
    pytest.param("sinks: {loki: {max_labels_per_stream: 1, labels: {a: x, b: y}}}", {},
                 "sinks.loki.labels", "2 static labels exceed max_labels_per_stream (1)",
                 id="too-many-static-labels"),
    # variables and environment overrides
    pytest.param("server:\n  port: ${ADMIN_PORT}\n", {}, "server.port",
                 "environment variable 'ADMIN_PORT' is not set",
                 id="unset-variable-without-default"),
    pytest.param("server:\n  port: ${ADMIN_PORT}\n", {"ADMIN_PORT": "abc"}, "server.port",
                 "got a string 'abc' (from '${ADMIN_PORT}')", id="expanded-value-of-wrong-type"),
    pytest.param("server: {admin_token: '${1X}'}", {}, "server.admin_token",
                 "invalid variable reference '${1X}'", id="malformed-variable-reference"),
    pytest.param("", {"LOGCAP_LOG_LEVEL": "verbose"}, "logging.level",
                 "(set by $LOGCAP_LOG_LEVEL)", id="bad-log-level-override"),
    pytest.param("", {"LOGCAP_LOG_FORMAT": "xml"}, "logging.format",
                 "expected one of text, json", id="bad-log-format-override"),
    pytest.param("", {"LOKI_URL": "loki:3100"}, "sinks.loki.url",
                 "invalid URL 'loki:3100' (expected http:// or https:// and a host)",
                 id="bad-loki-url-override"),
    # the document itself
    pytest.param("- server\n- sinks\n", {}, "<root>",
                 "expected a mapping of sections at the top level, got a list",
                 id="top-level-is-a-list"),
    pytest.param("just some text\n", {}, "<root>", "got a string", id="top-level-is-a-string"),
    pytest.param("server:\n  port: 1\n host: x\n", {}, "<yaml>", "syntax error at line 3",
                 id="yaml-syntax-error"),
    pytest.param("server: {port: 1, port: 2}", {}, "server.port", "duplicate key",
                 id="duplicate-key"),
    pytest.param("server: {}\n---\nsinks: {}\n", {}, "<yaml>",
                 "expected a single document", id="several-documents"),
    pytest.param("server: !env PORT\n", {}, "<yaml>", "unsupported YAML at line 1",
                 id="unknown-yaml-tag"),
]


@pytest.mark.parametrize(("text", "env", "path", "fragment"), CASES)
def test_invalid_config_is_refused_with_key_path_and_reason(
    text: str, env: dict[str, str], path: str, fragment: str
) -> None:
    issues = _issues(text, env)
    matching = [issue for issue in issues if issue.path == path]
    assert matching, f"no issue at {path!r}: {issues}"
    assert any(fragment in issue.reason for issue in matching), matching


@pytest.mark.parametrize(("text", "env", "path", "fragment"), CASES)
def test_error_message_names_the_key_path_and_the_reason(
    text: str, env: dict[str, str], path: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), env)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(f"config error: {path}: ") and fragment in line for line in lines)


def test_every_problem_is_reported_at_once() -> None:
    issues = _issues(
        """
        server: {port: 0, hots: x}
        sinks:
          loki: {batch_wait: abc}
        logging: {level: loud}
        dlq: {max_total_size: -1}
        """
    )
    assert [issue.path for issue in issues] == [
        "server.hots",
        "server.port",
        "sinks.loki.batch_wait",
        "dlq.max_total_size",
        "logging.level",
    ]


def test_variable_and_duplicate_key_errors_do_not_hide_other_problems() -> None:
    issues = _issues(
        """
        server:
          port: ${ADMIN_PORT}
          port: 5
        logging: {level: loud}
        sources:
          files:
            - name: app
              include: ["${LOG_DIR}/*.log", "/var/log/*.log"]
        """
    )
    assert [issue.path for issue in issues] == [
        "server.port",
        "server.port",
        "sources.files[0].include[0]",
        "logging.level",
    ]
    assert "'ADMIN_PORT' is not set" in issues[0].reason
    assert "duplicate key at line 4 (first at line 3)" in issues[1].reason


def test_error_string_has_one_prefixed_line_per_issue() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("sinks: {loki: {batch_wait: abc}}\nlogging: {level: loud}\n", {})
    assert str(caught.value).splitlines() == [
        "config error: sinks.loki.batch_wait: "
        "invalid duration 'abc' (expected e.g. 500ms, 10s, 5m)",
        "config error: logging.level: invalid value 'loud' "
        "(expected one of debug, info, warning, error)",
    ]


def test_a_broken_key_is_not_reported_again_by_the_invariants_that_use_it() -> None:
    issues = _issues("sinks: {loki: {enabled: true, url: 42}}")
    assert [issue.path for issue in issues] == ["sinks.loki.url"]


def test_unset_variables_are_all_named_in_one_issue() -> None:
    issues = _issues("server:\n  admin_token: ${USER_PART}-${HOST_PART}\n")
    assert issues == [
        ConfigIssue(
            "server.admin_token",
            "environment variables 'USER_PART', 'HOST_PART' are not set "
            "(give a default with ${USER_PART:-default})",
        )
    ]


def test_variable_inside_flow_mapping_gets_a_quoting_hint() -> None:
    issues = _issues("server: {port: ${ADMIN_PORT}}\n", {"ADMIN_PORT": "1"})
    assert issues[0].path == "<yaml>"
    assert "quote values that use ${...}" in issues[0].reason


def test_secret_values_are_not_echoed_in_errors() -> None:
    issues = _issues("server: {admin_token: 123456}")
    assert issues[0].path == "server.admin_token"
    assert "123456" not in issues[0].reason


def test_missing_file_is_reported_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, {})
    assert caught.value.issues == [ConfigIssue("<file>", f"not found: {missing}")]
    assert str(caught.value) == f"config error: <file>: not found: {missing}"


def test_unreadable_path_is_reported_as_a_file_issue(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert caught.value.issues[0].path == "<file>"
    assert str(tmp_path) in caught.value.issues[0].reason


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"server: {host: \xff}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.issues[0].path == "<file>"
    assert "not valid UTF-8" in caught.value.issues[0].reason


def test_yaml_errors_name_the_source_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\n  port: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.issues[0].path == "<yaml>"
    assert str(path) in caught.value.issues[0].reason
