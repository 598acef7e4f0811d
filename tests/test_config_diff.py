"""The reload's config diff, as a pure function: what is added, removed, changed, unchanged per
kind of component, what needs a restart (and is kept as it was in the effective config)."""

from __future__ import annotations

from pathlib import Path

import yaml

from logcap.components.diff import ConfigDiff, diff_configs
from logcap.config import Config, parse_config
from logcap.pipeline.loading import load_routing
from logcap.pipeline.routing import Routing

BASE = {
    "sources": {"files": [{"name": "a", "include": ["/logs/a*.log"], "labels": {"job": "a"}},
                          {"name": "b", "include": ["/logs/b*.log"]}]},
    "sinks": {"loki": {"enabled": True, "url": "http://one:3100"}},
    "dispatcher": {"shards": 2},
}


def _config(data: dict) -> Config:  # type: ignore[type-arg]
    return parse_config(yaml.safe_dump(data), {})


def _with(**sections: object) -> Config:
    return _config({**BASE, **sections})


def _diff(old: Config, new: Config, old_routing: Routing | None = None,
          new_routing: Routing | None = None) -> ConfigDiff:
    return diff_configs(old, old_routing, new, new_routing)


def _sources(*entries: dict) -> dict:  # type: ignore[type-arg]
    return {"files": list(entries)}


A = BASE["sources"]["files"][0]  # type: ignore[index]
B = BASE["sources"]["files"][1]  # type: ignore[index]


def test_the_same_config_gives_nothing_to_apply_and_nothing_to_restart() -> None:
    diff = _diff(_config(BASE), _config(BASE))
    assert diff.empty and not diff.needs_restart
    assert diff.of("file_source").unchanged == ("a", "b")
    assert diff.summary() == "nothing to apply"


def test_a_source_added_removed_and_one_with_new_labels_are_each_named() -> None:
    new = _with(sources=_sources({**A, "labels": {"job": "a2"}},
                                 {"name": "c", "include": ["/logs/c.log"]}))
    diff = _diff(_config(BASE), new)
    files = diff.of("file_source")
    assert files.added == ("c",) and files.removed == ("b",) and files.changed == ("a",)
    assert not diff.needs_restart and diff.effective.sources.files == new.sources.files
    assert "file_source added: c" in diff.summary()


def test_a_sink_url_change_is_applied_and_its_batch_size_needs_a_restart() -> None:
    url = _with(sinks={"loki": {"enabled": True, "url": "http://two:3100"}})
    diff = _diff(_config(BASE), url)
    assert diff.of("loki").changed == ("loki",) and not diff.needs_restart
    assert diff.effective.sinks.loki.url == "http://two:3100"
    batch = _with(sinks={"loki": {"enabled": True, "url": "http://two:3100",
                                  "batch_size": 10}})
    diff = _diff(_config(BASE), batch)
    assert diff.needs_restart == (
        "sinks.loki.batch_size: the shards' batch size changes (5000 -> 10)",)
    # no sink change is applied then: the effective config keeps the running sinks
    assert not diff.of("loki").touched and diff.effective.sinks == _config(BASE).sinks


def test_a_sink_added_or_removed_is_applied_live() -> None:
    added = _with(sinks={"loki": {"enabled": True, "url": "http://one:3100"},
                         "loki_endpoints": [{"name": "audit", "url": "http://two:3100"}]})
    diff = _diff(_config(BASE), added)
    assert not diff.needs_restart
    assert diff.of("loki").added == ("audit",) and diff.effective.sinks == added.sinks
    back = _diff(added, _config(BASE))
    assert not back.needs_restart and back.of("loki").removed == ("audit",)


def test_a_sink_added_with_a_tighter_batch_needs_a_restart_and_nothing_of_it_applies() -> None:
    added = _with(sinks={"loki": {"enabled": True, "url": "http://one:3100"},
                         "loki_endpoints": [{"name": "audit", "url": "http://two:3100",
                                             "batch_size": 10, "batch_wait": "50ms"}]})
    diff = _diff(_config(BASE), added)
    assert diff.needs_restart == (
        "sinks.loki_endpoints[0].batch_size: the shards' batch size changes (5000 -> 10)",
        "sinks.loki_endpoints[0].batch_wait: the shards' batch timeout changes (0.2 -> 0.05)")
    assert not diff.of("loki").touched and diff.effective.sinks == _config(BASE).sinks
    # removing it again loosens the caps: a restart too
    assert _diff(added, _config(BASE)).needs_restart[0].startswith(
        "sinks.loki_endpoints[0].batch_size: the shards' batch size changes (10 -> 5000)")


def test_state_shards_and_ports_need_a_restart_and_are_kept_as_they_were() -> None:
    new = _with(dispatcher={"shards": 4}, server={"port": 9999},
                positions={"directory": "/elsewhere"}, logging={"level": "debug"},
                sources=_sources(A))
    diff = _diff(_config(BASE), new)
    assert diff.needs_restart == ("server: changed", "dispatcher: changed",
                                  "positions: changed", "logging: changed")
    assert diff.effective.dispatcher.shards == 2
    assert diff.effective.server.port == _config(BASE).server.port
    assert diff.of("shard").unchanged == ("shard-0", "shard-1")
    assert diff.of("file_source").removed == ("b",)  # the live part is applied
    assert "needs a restart (not applied): server: changed" in diff.summary()


def _routing(tmp: Path, config: Config, pipelines: dict, routes: list) -> Routing:  # type: ignore[type-arg]
    (tmp / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": pipelines}))
    (tmp / "routing.yaml").write_text(yaml.safe_dump({"routes": routes}))
    processed = _config({**BASE, "processing": {"pipelines_file": str(tmp / "pipelines.yaml"),
                                                "routing_file": str(tmp / "routing.yaml")}})
    assert processed.sources == config.sources
    return load_routing(processed, {}, config_file=str(tmp / "config.yaml"))


LEVEL = {"stages": [{"regex": {"expression": "^(?P<level>[A-Z]+) "}}, {"labels": {"level": None}}]}
JOINED = {"stages": [{"multiline": {"firstline": "^[A-Z]"}}, *LEVEL["stages"]]}


def test_a_changed_pipeline_is_applied_without_touching_the_sources(tmp_path: Path) -> None:
    config = _config(BASE)
    old = _routing(tmp_path, config, {"app": LEVEL}, [{"source": "a", "pipeline": "app"}])
    new = _routing(tmp_path, config, {"app": {"stages": LEVEL["stages"][:1]}},
                   [{"source": "a", "pipeline": "app"}])
    diff = _diff(config, config, old, new)
    assert diff.routing_changed and diff.pipelines.changed == ("app",)
    assert not diff.of("file_source").touched and not diff.empty
    assert not _diff(config, config, old, old).routing_changed


def test_a_pipelines_multiline_change_restarts_the_sources_without_their_own(
        tmp_path: Path) -> None:
    own = {**B, "multiline": {"firstline": "^x"}}
    config = _with(sources=_sources(A, own))
    old = _routing(tmp_path, _config(BASE), {"app": LEVEL}, [{"path": "*", "pipeline": "app"}])
    new = _routing(tmp_path, _config(BASE), {"app": JOINED}, [{"path": "*", "pipeline": "app"}])
    diff = _diff(config, config, old, new)
    assert diff.of("file_source").changed == ("a",)  # b joins by its own multiline key
    assert diff.of("file_source").unchanged == ("b",)
    rules = _routing(tmp_path, _config(BASE), {"app": LEVEL}, [])
    assert _diff(config, config, old, rules).of("file_source").changed == ("a",)


def test_the_diff_renders_as_the_answer_of_a_reload() -> None:
    new = _with(sources=_sources(A), dispatcher={"shards": 3})
    body = _diff(_config(BASE), new).to_dict()
    assert body["components"] == [{"kind": "file_source", "group": "sources", "added": [],
                                   "removed": ["b"], "changed": [], "unchanged": ["a"]}]
    assert body["needs_restart"] == ["dispatcher: changed"]
    assert body["routing_changed"] is False


def test_the_container_source_is_added_changed_and_removed_live() -> None:
    on = {**BASE["sources"], "containers": {"enabled": True,  # type: ignore[dict-item]
                                            "socket": "unix:///run/docker.sock"}}
    relabelled = {**on, "containers": {**on["containers"], "labels": {"job": "c"}}}
    added = _diff(_config(BASE), _with(sources=on))
    assert added.of("container_source").added == ("containers",) and not added.needs_restart
    changed = _diff(_with(sources=on), _with(sources=relabelled))
    assert changed.of("container_source").changed == ("containers",)
    assert not changed.needs_restart
    assert changed.effective.sources.containers.labels == {"job": "c"}
    removed = _diff(_with(sources=on), _config(BASE))
    assert removed.of("container_source").removed == ("containers",)
