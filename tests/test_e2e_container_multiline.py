"""Multi-line entries from container streams, end to end: a private podman engine, logcap as a
process routing a container to a pipeline with a ``multiline`` stage, the Loki test receiver.

The container writes numbered Java-style stack traces on stdout and SIP-like message dumps on
stderr (each stream joined apart), pausing between the first line and the rest of some
entries, so that entries are open when reads end and when logcap is killed. Every entry must
arrive whole, and each be kept exactly once under Loki's rule (same stream, timestamp, line).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests import test_e2e_containers as base
from tests.actor_kit import wait_until
from tests.loki_receiver import LokiReceiver
from tests.podman_engine import PodmanEngine
from tests.test_e2e_containers import config, container_lines, run, start_connected

pytestmark = pytest.mark.integration

engine = base.engine  # the fixtures: a private podman engine, its client, a Loki receiver
client = base.client
receiver = base.receiver

OUT_BASE, ERR_BASE = 1_000_000, 2_000_000
PIPELINES = """
pipelines:
  joined:
    stages:
      - multiline: {firstline: '^seq=', timeout: 30s}
"""
ROUTES = "routes:\n  - {container: 'traces-*', pipeline: joined}\n"


def trace(n: int) -> str:
    """Stdout entry ``n``: a head line and ``n % 5`` indented frames."""
    return "\n".join([f"seq={n} java.lang.IllegalStateException: boom"]
                     + [f"  at com.example.S{k}.call(S{k}.java:{k})" for k in range(n % 5)])


def dump(n: int) -> str:
    """Stderr entry ``n``: a SIP message dump of five lines."""
    return "\n".join([f"seq={n} received SIP message:", "INVITE sip:bob@example.com SIP/2.0",
                      f"Via: SIP/2.0/UDP 10.0.0.{n % 250};branch=z9hG4bK{n}",
                      f"Call-ID: c{n}@host", "CSeq: 1 INVITE"])


def writer(count: int, pause_every: int, pause_us: int) -> list[str]:
    """A busybox sh command writing entries ``0 .. count-1`` of both streams; every
    ``pause_every``-th entry sleeps ``pause_us`` between its first line and the rest."""
    script = (
        f"i=0; while [ $i -lt {count} ]; do N=$(({OUT_BASE}+i)); M=$(({ERR_BASE}+i)); "
        'echo "seq=$N java.lang.IllegalStateException: boom"; '
        'echo "seq=$M received SIP message:" >&2; '
        f"if [ $((i % {pause_every})) -eq 0 ]; then usleep {pause_us}; fi; "
        "k=0; while [ $k -lt $((N % 5)) ]; do "
        'echo "  at com.example.S$k.call(S$k.java:$k)"; k=$((k+1)); done; '
        'echo "INVITE sip:bob@example.com SIP/2.0" >&2; '
        'echo "Via: SIP/2.0/UDP 10.0.0.$((M % 250));branch=z9hG4bK$M" >&2; '
        'echo "Call-ID: c$M@host" >&2; echo "CSeq: 1 INVITE" >&2; '
        "i=$((i+1)); done; sleep 1")
    return ["sh", "-c", script]


def joined_config(tmp: Path, engine: PodmanEngine, receiver: LokiReceiver) -> Path:
    cfg = config(tmp, engine, receiver)
    (tmp / "pipelines.yaml").write_text(PIPELINES)
    (tmp / "routes.yml").write_text(ROUTES)
    data = yaml.safe_load(cfg.read_text())
    data["processing"] = {"pipelines_file": str(tmp / "pipelines.yaml"),
                          "routing_file": str(tmp / "routes.yml")}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def expected(count: int) -> dict[int, str]:
    return {**{OUT_BASE + i: trace(OUT_BASE + i) for i in range(count)},
            **{ERR_BASE + i: dump(ERR_BASE + i) for i in range(count)}}


def kept(receiver: LokiReceiver) -> dict[int, list[str]]:
    """Per seq, the entries Loki keeps (distinct stream, timestamp, line)."""
    distinct = {(str(sorted(labels.items())), ts, line)
                for labels, ts, line in container_lines(receiver)}
    out: dict[int, list[str]] = defaultdict(list)
    for _labels, _ts, line in distinct:
        head = line.split(" ", 1)[0]
        # a line without a head is part of an entry that was cut: filed under -1 (broken)
        out[int(head.removeprefix("seq=")) if head.startswith("seq=") else -1].append(line)
    return out


def check(receiver: LokiReceiver, want: dict[int, str]) -> None:
    got = kept(receiver)
    missing = sorted(set(want) - set(got))
    broken = sorted(n for n, lines in got.items() if lines != [want.get(n)])
    assert not missing, f"{len(missing)} entries missing, first {missing[:5]}"
    assert not broken, f"{len(broken)} entries not whole or kept twice, first " \
                       f"{[(n, got[n]) for n in broken[:3]]}"
    streams = {labels["stream"] for labels, _ts, line in container_lines(receiver)
               if line.startswith(f"seq={ERR_BASE}")}
    assert streams == {"stderr"}


def arrived(receiver: LokiReceiver, want: dict[int, str]) -> bool:
    return set(kept(receiver)) >= set(want)


def test_stack_traces_and_sip_dumps_arrive_one_entry_each_per_stream(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    count = 400
    proc = start_connected(joined_config(tmp_path, engine, receiver))
    try:
        run(client, "traces-1", writer(count, 40, 300_000))
        want = expected(count)
        wait_until(lambda: arrived(receiver, want), timeout=90, what="every entry")
        check(receiver, want)
        metrics = requests.get(f"http://127.0.0.1:{proc.port}/metrics", timeout=5).text
        stats = proc.api("/stats")["sources"]["containers"]
    finally:
        proc.stop()
    # every entry but each stream's last is closed by the next head; the last two at the exit
    assert stats["multiline"] == {"complete": 2 * count - 2, "end_of_stream": 2}, stats
    assert ('logcap_source_multiline_entries_total{reason="complete",source="containers"} '
            f"{2 * count - 2}.0") in metrics


def test_kill_9_mid_stream_twice_delivers_every_entry_whole_exactly_once(
    tmp_path: Path, engine: PodmanEngine, client: Any, receiver: LokiReceiver
) -> None:
    count, kills = 2_400, 2
    proc = start_connected(joined_config(tmp_path, engine, receiver))
    want = expected(count)
    try:
        run(client, "traces-1", writer(count, 25, 200_000))
        for k in range(kills):
            wait_until(lambda k=k: len(kept(receiver)) > (k + 1) * len(want) / (kills + 2),
                       timeout=90, what=f"entries before kill {k + 1}")
            proc.kill()  # entries are open on both streams most of the time
            proc = start_connected(proc.config)
        wait_until(lambda: arrived(receiver, want), timeout=120, what="every entry")
        check(receiver, want)
        sent = len(container_lines(receiver))
        print(f"\ncontainer multiline, {kills} x kill -9: {len(want)} entries whole, "
              f"{sent - len(want)} resent, 0 kept twice")
    finally:
        proc.stop()
