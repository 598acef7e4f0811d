"""The pipelines file, the routing file and the sources' pipeline keys: bad input is exit 2
naming the file and the key path, every problem at once; good input routes as documented."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from logcap.cli.main import main
from logcap.components.sources import container_multiline_for, multiline_for
from logcap.config import ConfigError, parse_config
from logcap.messages import Entries
from logcap.origin import CONTAINER_KIND, ReadToken
from logcap.pipeline.loading import load_routing
from tests.pipeline_kit import entries


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def setup(tmp_path: Path, pipelines: str = "", routes: str = "",
          source_extra: str = "") -> Path:
    lines = ["processing:"]
    if pipelines:
        write(tmp_path / "pipelines.yaml", pipelines)
        lines.append(f"  pipelines_file: {tmp_path / 'pipelines.yaml'}")
    if routes:
        write(tmp_path / "routes.yml", routes)
        lines.append(f"  routing_file: {tmp_path / 'routes.yml'}")
    lines += ["sources:", "  files:",
              f"    - {{name: app, include: ['{tmp_path}/*.log'], labels: {{env: prod}}"
              f"{source_extra}}}",
              "sinks: {file: {directory: " + str(tmp_path / "out") + "}}",
              "positions: {directory: " + str(tmp_path / "pos") + "}"]
    return write(tmp_path / "config.yaml", "\n".join(lines) + "\n")


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", "-c", str(config)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_a_valid_pipelines_and_routing_file_pass_check_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, """
        pipelines:
          web:
            stages:
              - regex: {expression: '^(?P<level>\\w+) '}
              - labels: {level: }
        """, """
        routes:
          - {source: app, pipeline: web}
        """)
    code, out = check(config, capsys)
    assert code == 0, out
    assert "pipelines: 8" in out and "1 routing rule" in out


def test_every_problem_of_the_pipelines_file_is_reported_with_file_and_key_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, """
        pipelines:
          bad:
            stages:
              - regex: {expression: '(?P<x>[unclosed'}
              - timestmp: {source: t}
              - truncate: {max_bytes: [1]}
              - timestamp: {source: t, format: rfc3339, tz: UTC}
              - multiline: {pattern: '^x'}
              - labels: {"bad-name": x}
              - rate_limit: {rate: 10, mode: block}
              - rate_limit: {rate: 5, mode: block}
              - opensips: {timezone: Mars/Olympus}
              - opensips: {timezone: [UTC], year: 2026}
          opensips:
            stages: [{json: {}}]
        """)
    code, out = check(config, capsys)
    assert code == 2
    f = str(tmp_path / "pipelines.yaml")
    assert f"{f}: pipelines.bad.stages[0].regex.expression: invalid regex" in out
    assert f"{f}: pipelines.bad.stages[1].timestmp: unknown stage kind (did you mean " \
           "'timestamp'?)" in out
    assert f"{f}: pipelines.bad.stages[2].truncate.max_bytes: expected a size" in out
    assert f"{f}: pipelines.bad.stages[3].timestamp.tz: unknown key" in out
    assert f"{f}: pipelines.bad.stages[4].multiline: multiline runs at the source" in out
    assert f"{f}: pipelines.bad.stages[5].labels.bad-name: invalid name" in out
    assert f"{f}: pipelines.bad.stages[6].rate_limit" not in out  # one block stage is fine
    assert f"{f}: pipelines.bad.stages[7].rate_limit.mode: a pipeline has at most one " \
           "rate_limit in block mode (stages[6] is one)" in out
    assert f"{f}: pipelines.bad.stages[8].opensips.timezone: unknown time zone" in out
    assert f"{f}: pipelines.bad.stages[9].opensips.timezone: expected a string" in out
    assert f"{f}: pipelines.bad.stages[9].opensips.year: unknown key" in out
    assert f"{f}: pipelines.opensips: is the name of a built-in pipeline" in out
    assert "Traceback" not in out


def test_a_pipeline_that_does_not_exist_is_refused_where_it_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, routes="""
        routes:
          - {path: "*.log", pipeline: mysql-slow}
          - {source: nope, pipeline: json}
          - {pipeline: json}
        """, source_extra=", pipeline: jsn")
    code, out = check(config, capsys)
    assert code == 2
    r = str(tmp_path / "routes.yml")
    assert f"{r}: routes[0].pipeline: no pipeline named 'mysql-slow' (did you mean " \
           "'mysql_slow'?)" in out
    assert f"{r}: routes[1].source: no source named 'nope' (sources: app)" in out
    assert f"{r}: routes[2]: a rule must give at least one of source, path" in out
    assert f"{config}: sources.files[0].pipeline: no pipeline named 'jsn' (did you mean " \
           "'json'?)" in out


def test_the_file_source_joins_lines_by_the_routed_pipelines_multiline_stage(
        tmp_path: Path) -> None:
    write(tmp_path / "routes.yml", "routes: [{path: '*/slow.log', pipeline: mysql_slow}]\n")
    config = parse_config(textwrap.dedent(f"""
        processing: {{routing_file: {tmp_path / 'routes.yml'}}}
        sources:
          files:
            - {{name: db, include: [x]}}
            - {{name: sip, include: [y], pipeline: opensips}}
            - {{name: own, include: [z], pipeline: opensips, multiline: {{firstline: '^X'}}}}
        """), {})
    routing = load_routing(config, {})
    db, sip, own = (multiline_for(s, routing) for s in config.sources.files)
    slow = db("/var/log/mysql/slow.log")
    assert slow is not None and slow.firstline == "^# User@Host: "
    assert db("/var/log/mysql/error.log") is None
    opensips = sip("/var/log/opensips.log")
    assert opensips is not None and opensips == routing.pipelines["opensips"].multiline
    mine = own("/var/log/z.log")
    assert mine is not None and mine.firstline == "^X"  # the source's own key wins


def test_a_missing_processing_file_is_refused_and_env_overrides_the_paths(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path)
    monkeypatch.setenv("LOGCAP_PIPELINES_FILE", str(tmp_path / "absent.yaml"))
    code, out = check(config, capsys)
    assert code == 2
    assert f"{tmp_path / 'absent.yaml'}: <file>: not found" in out
    write(tmp_path / "other.yaml", "pipelines: {mine: {stages: [{json: {}}]}}\n")
    monkeypatch.setenv("LOGCAP_PIPELINES_FILE", str(tmp_path / "other.yaml"))
    code, out = check(config, capsys)
    assert code == 0, out


def test_routing_first_match_wins_and_a_sources_own_pipeline_wins_over_rules(
        tmp_path: Path) -> None:
    write(tmp_path / "routes.yml", """
        routes:
          - {path: "*/slow.log", pipeline: logfmt}
          - {labels: {env: prod}, pipeline: json}
          - {source: app, pipeline: cri}
        """)
    config = parse_config(textwrap.dedent(f"""
        processing: {{routing_file: {tmp_path / 'routes.yml'}}}
        sources:
          files:
            - {{name: app, include: [x], labels: {{env: prod}}}}
            - {{name: own, include: [y], labels: {{env: prod}}, pipeline: docker_json}}
        """), {})
    routing = load_routing(config, {})
    router = routing.router()
    prod = (("env", "prod"),)
    slow = router.route(entries(["x"], stream="/var/log/slow.log", labels=prod))
    other = router.route(entries(["x"], stream="/var/log/other.log", labels=prod))
    own = router.route(entries(["x"], source="own", stream="/var/log/slow.log", labels=prod))
    dev = router.route(entries(["x"], stream="/var/log/dev.log", labels=(("env", "dev"),)))
    assert slow is not None and slow.name == "logfmt"
    assert other is not None and other.name == "json"
    assert own is not None and own.name == "docker_json"
    assert dev is not None and dev.name == "cri"
    assert router.route(entries(["x"], source="elsewhere", labels=())) is None


def test_load_routing_raises_config_error_with_all_issues(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", "pipelines: {a: {stages: []}, b: {stagez: []}}\n")
    config = parse_config(f"processing: {{pipelines_file: {tmp_path / 'p.yaml'}}}\n", {})
    with pytest.raises(ConfigError) as err:
        load_routing(config, {})
    paths = [issue.path for issue in err.value.issues]
    assert paths == [f"{tmp_path / 'p.yaml'}: pipelines.a.stages",
                     f"{tmp_path / 'p.yaml'}: pipelines.b.stagez",
                     f"{tmp_path / 'p.yaml'}: pipelines.b.stages"]


def test_pipeline_test_prints_entries_and_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, """
        pipelines:
          web:
            stages:
              - regex: {expression: '^(?P<t>\\d+) (?P<level>\\w+) (?P<msg>.*)'}
              - timestamp: {source: t, format: unix}
              - drop: {source: level, value: DEBUG}
              - labels: {level: }
              - structured_metadata: {msg: }
        """, source_extra=", pipeline: web")
    sample = write(tmp_path / "sample.txt", "1796169000 INFO hello\n1796169001 DEBUG x\nzzz\n")
    code = main(["pipeline", "test", "-c", str(config), "--source", "app", str(sample)])
    out = capsys.readouterr().out
    assert code == 0
    assert "timestamp: 2026-12-01T23:50:00.000000000Z" in out
    assert 'labels:    {env="prod", level="INFO"}' in out
    assert "metadata:  msg='hello'" in out
    assert "dropped: stage 2:drop: value: 1 line" in out
    assert "failed: stage 0:regex: no_match: 1 line" in out
    assert "2 entries, 2 failures, 1 dropped" in out
    assert main(["pipeline", "test", "-c", str(config), "--pipeline", "nope",
                 str(sample)]) == 2
    assert "no pipeline named 'nope'" in capsys.readouterr().err


def test_pipeline_test_says_a_blocking_rate_limit_holds_lines_without_dropping(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = setup(tmp_path, """
        pipelines:
          slow:
            stages:
              - rate_limit: {rate: 2, mode: block}
        """, source_extra=", pipeline: slow")
    sample = write(tmp_path / "sample.txt", "a\nb\nc\n")
    assert main(["pipeline", "test", "-c", str(config), "--source", "app", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "rate limited: stage 0:rate_limit: the agent lets these entries out at 2 lines/s " \
           "per stream (burst 2), none dropped" in out
    assert "3 entries, 0 failures, 0 dropped" in out


def test_relative_processing_paths_are_beside_the_config_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc" / "p.yaml", "pipelines: {mine: {stages: [{json: {}}]}}\n")
    config = write(tmp_path / "etc" / "config.yaml",
                   "processing: {pipelines_file: p.yaml}\n"
                   "sources: {files: [{name: a, include: [x], pipeline: mine}]}\n")
    monkeypatch.chdir(tmp_path)
    code, out = check(config, capsys)
    assert code == 0, out


def _container_entries(name: str, source: str = "containers") -> Entries:
    token = ReadToken(source, CONTAINER_KIND, ("c0ffee", "stdout", 1), 0, 1, "g1", 1)
    labels = (("container", name), ("image", "busybox"), ("stream", "stdout"))
    return Entries(source, "c0ffee/stdout", labels, ["x"], 1, token)


def test_container_entries_route_by_the_container_name_first_match_wins(
        tmp_path: Path) -> None:
    """A ``container`` rule globs the container's name (its ``container`` label); a pipeline
    with a multiline stage routes container entries too (the source joins their lines)."""
    write(tmp_path / "routes.yml", """
        routes:
          - {container: "web-*", pipeline: json}
          - {labels: {image: busybox}, pipeline: opensips}
          - {labels: {image: busybox}, pipeline: logfmt}
        """)
    config = parse_config(f"processing: {{routing_file: {tmp_path / 'routes.yml'}}}\n", {})
    router = load_routing(config, {}).router()
    web = router.route(_container_entries("web-1"))
    db = router.route(_container_entries("db"))
    assert web is not None and web.name == "json"
    assert db is not None and db.name == "opensips"
    files = router.route(entries(["x"], labels=(("image", "busybox"),)))
    assert files is not None and files.name == "opensips"


def test_the_container_source_joins_each_stream_by_its_routed_pipeline_or_its_own_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "routes.yml", """
        routes:
          - {container: 'sip-*', labels: {stream: stderr}, pipeline: opensips}
          - {container: 'db-*', pipeline: mysql_slow}
        """)
    config = parse_config(f"processing: {{routing_file: {tmp_path / 'routes.yml'}}}\n", {})
    resolve = container_multiline_for(config.sources.containers, load_routing(config, {}))

    def labels(name: str, stream: str) -> tuple[tuple[str, str], ...]:
        return (("container", name), ("image", "busybox"), ("stream", stream))

    sip_err = resolve("c0ffee/stderr", labels("sip-1", "stderr"))
    assert sip_err is not None and sip_err.firstline  # the opensips pipeline's stage
    assert resolve("c0ffee/stdout", labels("sip-1", "stdout")) is None
    slow = resolve("beef/stdout", labels("db-1", "stdout"))
    assert slow is not None and slow.firstline == "^# User@Host: "
    assert resolve("beef/stdout", labels("web", "stdout")) is None
    own = parse_config("sources: {containers: {multiline: {firstline: '^X'}}}\n", {})
    mine = container_multiline_for(own.sources.containers, load_routing(config, {}))
    spec = mine("beef/stdout", labels("db-1", "stdout"))
    assert spec is not None and spec.firstline == "^X"  # the source's own key wins
    routed = setup(tmp_path, routes="routes:\n  - {container: 'sip-*', pipeline: opensips}\n")
    code, out = check(routed, capsys)
    assert code == 0, out
