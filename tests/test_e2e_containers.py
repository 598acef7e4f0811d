"""The container source end to end: logcap as a process, a private podman engine serving the
Docker API, numbered lines counted at the Loki test receiver.

Every container writes lines ``seq=<n> <body>`` whose body is a function of ``n``
(:func:`expected_line`), so arrival is checked byte-exact, and the receiver counts duplicates
with Loki's rule (same stream, timestamp and line stored once). Set ``LOGCAP_LONG_TESTS=1`` for
the issue's full counts (5 kills, a 20 s API outage).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import LokiReceiver, parse_label_string, seq_number
from tests.podman_engine import (
    CONTAINER_KWARGS,
    IMAGE,
    PodmanEngine,
    podman_missing,
    start_engine,
    ulimits,
)

pytestmark = pytest.mark.integration

LONG = os.environ.get("LOGCAP_LONG_TESTS") == "1"
LONG_LINE_BYTES = 40 * 1024
TTY_BASE, OUT_BASE, ERR_BASE, BIG_BASE = 0, 1_000_000, 2_000_000, 3_000_000


def expected_line(n: int) -> str:
    """The line numbered ``n`` (the kind of container is in the number's millions)."""
    kind = n // 1_000_000
    if kind == 3:
        return f"seq={n} " + "x" * LONG_LINE_BYTES
    # (printf "%00d" prints "0": at least one "a")
    return f"seq={n} " + ("tty", "out", "err")[kind] + "-line-" + "a" * max(1, n % 50)


def writer(base: int, count: int, per_sleep: int, sleep_us: int, *, err_base: int | None = None,
           big: bool = False, start: int = 0) -> list[str]:
    """A busybox sh command writing lines ``base+start .. base+count-1`` (and the same numbers
    on stderr from ``err_base``), ``per_sleep`` lines then a sleep of ``sleep_us``."""
    if big:
        body = 'printf "seq=%d %s\\n" $((B+i)) "$X"'
        prelude = f'X=$(printf "%0{LONG_LINE_BYTES}d" 0 | tr 0 x); '
    else:
        body = 'echo "seq=$((B+i)) KIND-line-$(printf "%0$((( B+i) % 50))d" 0 | tr 0 a)"'
        prelude = ""
    lines = [body.replace("KIND", "tty" if base == TTY_BASE else "out")]
    if err_base is not None:
        lines.append('echo "seq=$((E+i)) err-line-$(printf "%0$(((E+i) % 50))d" 0 | '
                     'tr 0 a)" >&2')
    script = (f"{prelude}B={base}; E={err_base or 0}; i={start}; j=0; "
              f"while [ $i -lt {count} ]; do {'; '.join(lines)}; i=$((i+1)); j=$((j+1)); "
              f"if [ $j -ge {per_sleep} ]; then j=0; usleep {sleep_us}; fi; done; sleep 1")
    return ["sh", "-c", script]


@pytest.fixture(scope="module")
def engine() -> Iterator[PodmanEngine]:
    why = podman_missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("docker")
    with tempfile.TemporaryDirectory(prefix="lcc-", dir="/tmp") as tmp:
        eng = start_engine(Path(tmp))
        try:
            yield eng
        finally:
            eng.reset()


@pytest.fixture
def client(engine: PodmanEngine) -> Iterator[Any]:
    import docker

    cli = docker.DockerClient(base_url=engine.url, timeout=60)
    yield cli
    for container in cli.containers.list(all=True):
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass
    cli.close()


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    rec = LokiReceiver().start()
    yield rec
    rec.stop()


def config(tmp: Path, engine: PodmanEngine, receiver: LokiReceiver, **containers: Any) -> Path:
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    return make_config(
        tmp, [str(logs / "*.log")],
        sources={"files": [{"name": "app", "include": [str(logs / "*.log")],
                            "start_at": "beginning", "labels": {"job": "files"}}],
                 "containers": {"enabled": True, "socket": engine.url,
                                "labels": {"job": "containers"}, **containers}},
        sinks={"file": {"enabled": False},
               "loki": {"enabled": True, "url": receiver.url, "tenant_id": "ops",
                        "timeout": "2s", "batch_wait": "100ms"}},
    )


def start_connected(cfg: Path) -> LogcapProcess:
    """logcap started and connected to the engine: containers listed at the first connection
    are read from that second on (``start_at: end``), so a test starts its containers after."""
    proc = LogcapProcess(cfg).start()

    def connected() -> bool:
        health = json.loads(proc.api_text("/health"))
        source = health["components"].get("root/sources/containers", {})
        return source.get("engine", {}).get("status") == "ok"

    wait_until(connected, timeout=60, what="the engine connected")
    return proc


def run(client: Any, name: str, command: list[str], **kw: Any) -> Any:
    return client.containers.run(IMAGE, command, name=name, detach=True, ulimits=ulimits(),
                                 **CONTAINER_KWARGS, **kw)


def container_lines(receiver: LokiReceiver) -> list[tuple[dict[str, str], int, str]]:
    out = []
    for labels, entries in receiver.streams().items():
        pairs = dict(parse_label_string(labels))
        if pairs.get("job") != "containers":
            continue
        out.extend((pairs, ts, line) for ts, line in entries)
    return out


def counts(receiver: LokiReceiver) -> Counter[int]:
    return receiver.received_seq_numbers(dedupe=True)


def check_exact(receiver: LokiReceiver) -> None:
    for labels, _ts, line in container_lines(receiver):
        n = seq_number(line)
        assert n is not None and line == expected_line(n), line[:80]
        assert labels["stream"] == ("stderr" if n // 1_000_000 == 2 else "stdout")


def arrived(receiver: LokiReceiver, expected: set[int]) -> bool:
    got = counts(receiver)
    return all(got.get(n) for n in expected)


def wait_arrived(receiver: LokiReceiver, expected: set[int], timeout: float,
                 proc: LogcapProcess | None = None) -> None:
    try:
        wait_until(lambda: arrived(receiver, expected), timeout=timeout, what="every line")
    except AssertionError:
        missing, duplicates = report(receiver, expected)
        log = f"{proc.api('/stats').get('sources')}\n{proc.tail_log(40)}" if proc else ""
        raise AssertionError(f"{len(missing)} missing (first {missing[:10]}, last "
                             f"{missing[-10:]}), {duplicates} duplicates\n{log}") from None


def report(receiver: LokiReceiver, expected: set[int]) -> tuple[list[int], int]:
    got = counts(receiver)
    missing = sorted(n for n in expected if not got.get(n))
    duplicates = sum(c - 1 for n, c in got.items() if c > 1)
    return missing, duplicates


def source_health(proc: LogcapProcess) -> dict[str, Any]:
    components = proc.api("/health")["components"]
    return next(v for k, v in components.items() if k.endswith("sources/containers"))


def test_three_containers_tty_stdout_stderr_and_40k_lines_arrive_byte_exact_once(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    proc = start_connected(config(tmp_path, engine, receiver))
    try:
        n_tty, n_out, n_big = 12_000, 6_000, 300
        run(client, "tty-writer", writer(TTY_BASE, n_tty, 100, 40_000), tty=True)
        run(client, "two-streams", writer(OUT_BASE, n_out, 50, 40_000, err_base=ERR_BASE),
            labels={"com.docker.compose.service": "db", "com.docker.compose.project": "stack"})
        run(client, "big-lines", writer(BIG_BASE, n_big, 5, 100_000, big=True))
        expected = ({TTY_BASE + i for i in range(n_tty)} | {OUT_BASE + i for i in range(n_out)}
                    | {ERR_BASE + i for i in range(n_out)}
                    | {BIG_BASE + i for i in range(n_big)})
        wait_until(lambda: arrived(receiver, expected), timeout=90, what="every line")
        missing, duplicates = report(receiver, expected)
        assert missing == [] and duplicates == 0
        check_exact(receiver)
        labels = {line[0]["container"]: line[0] for line in container_lines(receiver)}
        assert labels["two-streams"]["compose_service"] == "db"
        assert labels["two-streams"]["compose_project"] == "stack"
        assert labels["big-lines"]["image"] == IMAGE
        assert "container_id" not in labels["big-lines"]
        stats = proc.api("/stats")["sources"]["containers"]
        assert stats["containers_followed"] >= 0 and stats["lines"] >= len(expected)
        big = next(c for c in stats["containers"] if c["name"] == "big-lines")
        assert big["reassembled_lines"] >= n_big
        assert source_health(proc)["engine"]["status"] == "ok"
    finally:
        proc.stop()


def test_kill_9_while_containers_write_loses_nothing_and_keeps_almost_no_duplicates(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    kills = 5 if LONG else 2
    proc = start_connected(config(tmp_path, engine, receiver))
    n_tty, n_out = 4_000 * kills, 2_000 * kills
    run(client, "tty-writer", writer(TTY_BASE, n_tty, 100, 50_000), tty=True)
    run(client, "two-streams", writer(OUT_BASE, n_out, 50, 50_000, err_base=ERR_BASE))
    expected = ({TTY_BASE + i for i in range(n_tty)} | {OUT_BASE + i for i in range(n_out)}
                | {ERR_BASE + i for i in range(n_out)})
    try:
        for k in range(kills):
            wait_until(lambda k=k: len(container_lines(receiver)) > (k + 0.5) * len(expected)
                       / (kills + 1), timeout=60, what=f"lines before kill {k + 1}")
            if os.environ.get("DEBUG_STATS"):
                print(proc.api("/stats")["sources"], proc.api("/positions")["containers"])
            proc.kill()
            proc = start_connected(proc.config)
        wait_arrived(receiver, expected, 120, proc)
        missing, duplicates = report(receiver, expected)
        assert missing == []
        assert duplicates <= len(expected) * 0.00001, duplicates
        check_exact(receiver)
        positions = proc.api("/positions")["containers"]
        assert {p["name"] for p in positions} >= {"tty-writer", "two-streams"}
    finally:
        proc.stop()


def test_restarted_recreated_and_new_containers_are_all_followed_without_loss(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    proc = start_connected(config(tmp_path, engine, receiver))
    first = run(client, "restarts", writer(OUT_BASE, 500, 100, 10_000))
    recreated = run(client, "recreated", writer(ERR_BASE, 500, 100, 10_000))
    try:
        wait_arrived(receiver, {OUT_BASE + i for i in range(500)}
                     | {ERR_BASE + i for i in range(500)}, 60, proc)
        first.wait(timeout=60)
        # a restart runs the same command again: its lines come a second time, as new lines
        first.start()
        first.wait(timeout=60)
        recreated.remove(force=True)
        run(client, "recreated", writer(ERR_BASE, 1_000, 100, 10_000, start=500))
        started = time.monotonic()
        run(client, "newcomer", writer(BIG_BASE, 20, 5, 10_000, big=True))
        wait_until(lambda: arrived(receiver, {BIG_BASE}), timeout=30, what="the newcomer")
        picked_up = time.monotonic() - started
        expected = ({OUT_BASE + i for i in range(500)} | {ERR_BASE + i for i in range(1_000)}
                    | {BIG_BASE + i for i in range(20)})
        wait_until(lambda: arrived(receiver, expected) and receiver.received_seq_numbers(
            dedupe=True)[OUT_BASE + 499] == 2, timeout=60, what="every line")
        got = counts(receiver)
        assert all(got[OUT_BASE + i] == 2 for i in range(500))  # once per run of the container
        assert all(got[n] == 1 for n in expected if n >= ERR_BASE)
        assert picked_up < 15  # within a second of the start event, plus the writer's start
    finally:
        proc.stop()


def test_the_api_service_stopped_while_containers_run_reconnects_and_loses_nothing(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    outage_s = 20 if LONG else 5
    proc = start_connected(config(tmp_path, engine, receiver))
    n = 400 * (outage_s + 10)
    run(client, "steady", writer(OUT_BASE, n, 40, 100_000, err_base=ERR_BASE))
    expected = {OUT_BASE + i for i in range(n)} | {ERR_BASE + i for i in range(n)}
    try:
        wait_until(lambda: len(container_lines(receiver)) > 1_000, timeout=60,
                   what="lines before the outage")
        engine.stop()
        wait_until(lambda: source_health_or_none(proc) == "degraded", timeout=20,
                   what="health showing the outage")
        reason = source_health(proc)["engine"]["reason"]
        time.sleep(outage_s)
        before = len(container_lines(receiver))
        engine.start()
        wait_until(lambda: arrived(receiver, expected), timeout=120, what="every line")
        assert len(container_lines(receiver)) > before
        missing, duplicates = report(receiver, expected)
        assert missing == [] and duplicates == 0
        assert reason
        wait_until(lambda: source_health_or_none(proc) == "ok", timeout=20,
                   what="health back to ok")
        stats = proc.api("/stats")["sources"]["containers"]
        assert stats["reconnects"] >= 1
    finally:
        proc.stop()


def source_health_or_none(proc: LogcapProcess) -> str | None:
    try:
        return str(source_health(proc)["health"])
    except (OSError, ValueError, StopIteration, KeyError):
        return None


def source_reason(proc: LogcapProcess) -> str | None:
    try:
        return str(source_health(proc).get("reason"))
    except (OSError, ValueError, StopIteration, KeyError):
        return None


def test_only_containers_matching_the_filters_are_followed(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    proc = start_connected(config(tmp_path, engine, receiver, include_labels={"logs": "yes"},
                                  include_names=["app-*"], exclude_names=["app-secret*"]))
    try:
        run(client, "app-one", writer(OUT_BASE, 50, 50, 1000), labels={"logs": "yes"})
        run(client, "app-nolabel", writer(ERR_BASE, 50, 50, 1000))
        run(client, "other", writer(BIG_BASE, 5, 5, 1000, big=True), labels={"logs": "yes"})
        run(client, "app-secret", writer(TTY_BASE, 50, 50, 1000), labels={"logs": "yes"})
        wait_until(lambda: arrived(receiver, {OUT_BASE + i for i in range(50)}), timeout=30,
                   what="the matching container's lines")
        time.sleep(2)  # the others had the same time to arrive
        names = {labels["container"] for labels, _ts, _line in container_lines(receiver)}
        assert names == {"app-one"}
    finally:
        proc.stop()


def test_a_missing_socket_degrades_health_retries_and_files_keep_shipping(
    tmp_path: Path, engine: PodmanEngine, receiver: LokiReceiver
) -> None:
    cfg = config(tmp_path, engine, receiver, socket=f"unix://{tmp_path}/no-such.sock")
    proc = LogcapProcess(cfg).start(wait_healthy=False)
    try:
        wait_until(lambda: "socket not found" in str(source_reason(proc)), timeout=30,
                   what="degraded health with the reason")
        assert source_health_or_none(proc) == "degraded"
        (tmp_path / "logs" / "a.log").write_text("".join(f"seq={i}\n" for i in range(100)))
        wait_until(lambda: len(receiver.received_seq_numbers()) >= 100, timeout=30,
                   what="file lines")
        time.sleep(3)  # several retries
        assert proc.proc is not None and proc.proc.poll() is None
        text = proc.log_path.read_text()
        assert text.count("engine unreachable") == 1, text[-2000:]
        assert proc.api("/stats")["actors"]  # no crash loop: the source actor kept running
        rows = {r["name"]: r for r in proc.api("/stats")["actors"]}
        assert next(r for n, r in rows.items() if n.endswith("sources/containers"))[
            "restarts"] == 0
    finally:
        proc.stop()


def test_a_container_that_exited_before_its_first_position_flush_is_read_after_kill_9(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    """Followed, then exited (not removed) while Loki refused its lines, and logcap killed -9
    long before the positions flush interval: the restarted logcap still reads its log."""
    cfg = config(tmp_path, engine, receiver)
    data = yaml.safe_load(cfg.read_text())
    data["positions"]["flush_interval"] = "60s"
    cfg.write_text(yaml.safe_dump(data))
    proc = start_connected(cfg)
    n = 300
    expected = {OUT_BASE + i for i in range(n)} | {ERR_BASE + i for i in range(n)}
    try:
        receiver.fail_unavailable()
        short = run(client, "short-lived", writer(OUT_BASE, n, 100, 10_000, err_base=ERR_BASE))
        short.wait(timeout=60)
        proc.kill()
        receiver.clear_faults()
        proc = start_connected(proc.config)
        wait_arrived(receiver, expected, 60, proc)
        missing, duplicates = report(receiver, expected)
        assert missing == [] and duplicates == 0
        check_exact(receiver)
    finally:
        proc.stop()


def test_a_reload_that_changes_the_container_source_drains_it_and_loses_nothing(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    import requests

    cfg = config(tmp_path, engine, receiver)
    data = yaml.safe_load(cfg.read_text())
    data["server"]["admin_token"] = "reload-token"
    cfg.write_text(yaml.safe_dump(data))
    proc = start_connected(cfg)
    n = 6_000
    run(client, "two-streams", writer(OUT_BASE, n, 50, 50_000, err_base=ERR_BASE))
    expected = {OUT_BASE + i for i in range(n)} | {ERR_BASE + i for i in range(n)}
    try:
        wait_until(lambda: len(container_lines(receiver)) > len(expected) // 4, timeout=60,
                   what="lines before the reload")
        data["sources"]["containers"]["labels"] = {"job": "containers", "gen": "2"}
        cfg.write_text(yaml.safe_dump(data))
        resp = requests.post(f"http://127.0.0.1:{proc.port}/config/reload", timeout=60,
                             headers={"Authorization": "Bearer reload-token"})
        body = resp.json()
        assert resp.status_code == 200, body
        assert not body["needs_restart"] and not body["undrained_sources"], body
        assert {"kind": "container_source", "changed": ["containers"]}.items() <= next(
            c for c in body["components"] if c["kind"] == "container_source").items()
        wait_arrived(receiver, expected, 120, proc)
        missing, duplicates = report(receiver, expected)
        # drained before it stopped: nothing read twice (a line under both label sets would
        # count twice here), nothing lost across the restart of the source
        assert missing == [] and duplicates == 0
        assert {labels.get("gen") for labels, _, _ in container_lines(receiver)} == {None, "2"}
        check_exact(receiver)
    finally:
        proc.stop()
