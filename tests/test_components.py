"""The component registry: instances by group, preflight and the start-up line from one list."""

from __future__ import annotations

from logcap.components.registry import (
    instances,
    preflight_directories,
    sink_names,
    summary,
)
from logcap.config import parse_config


def _config(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text, {})


TWO_LOKIS = """
sources: {files: [{name: a, include: [x]}]}
sinks:
  loki: {enabled: true, url: "http://one:3100"}
  loki_endpoints:
    - {name: audit, url: "http://two:3100", tenant_id: audit}
    - {name: spare, url: "http://three:3100", enabled: false}
disk_buffer: {enabled: true, directory: /tmp/buf}
batch_persistence: {enabled: true, directory: /tmp/batches}
"""


def test_every_enabled_instance_is_listed_in_its_group_in_start_order() -> None:
    groups = instances(_config(TWO_LOKIS))
    assert [i.name for i in groups["state"]] == ["positions", "buffer", "dlq"]
    assert [i.name for i in groups["sinks"]] == ["file", "loki", "audit"]
    assert [i.key for i in groups["sinks"]] == ["sinks.file", "sinks.loki",
                                                "sinks.loki_endpoints[0]"]
    assert [i.name for i in groups["dispatchers"]] == ["shard-0", "shard-1"]
    assert [i.name for i in groups["sources"]] == ["a"]
    assert sink_names(_config(TWO_LOKIS)) == ["file", "loki", "audit"]


def test_preflight_lists_each_enabled_components_directories_with_its_key() -> None:
    dirs = dict(preflight_directories(_config(TWO_LOKIS)))
    assert dirs["disk_buffer.directory"] == "/tmp/buf"
    assert dirs["batch_persistence.directory"] == "/tmp/batches"
    assert dirs["sinks.file.directory"] == "var/out"
    assert {"positions.directory", "dlq.directory"} <= set(dirs)
    plain = dict(preflight_directories(_config("dispatcher: {dlq_enabled: false}")))
    assert "dlq.directory" not in plain and "disk_buffer.directory" not in plain


def test_the_summary_names_every_sink_instance() -> None:
    line = summary(_config(TWO_LOKIS))
    assert "loki (http://one:3100, protobuf), audit (http://two:3100, protobuf)" in line
    assert "spare" not in line
    assert "buffer: disk (/tmp/buf)" in line
