"""Reloads under load through the real process, judged at two Loki receivers: shared by the
default suite's short form (``tests/test_e2e_reload.py``) and ``chaos/reload_storm.py``.

Two files get numbered lines at a rate (``app.log`` from 0, ``extra.log`` from
:data:`EXTRA_BASE`). Each reload rewrites the config (and its pipelines and routing files) in
place and asks for a reload (``POST /config/reload``, every third one by ``SIGHUP``), cycling
through: add the ``extra`` source, change ``app``'s static labels, add a second Loki sink
(``audit``, a third receiver), change the pipeline routed to ``app`` (it labels each line
``pv<N>``), swap the Loki sink's URL to the other receiver, remove the ``extra`` source, remove
the ``audit`` sink. Invalid configs (an unknown key in the main config, an unknown
stage kind in the pipelines file) are interleaved: each must be refused (400 with the error,
generation unchanged) and change nothing. At the end ``extra`` is present again, the writers
stop, and every line must be at one receiver, none kept twice (Loki's exact-duplicate rule:
same stream, timestamp and line count once, per receiver). The ``audit`` receiver must have
every ``app.log`` line written while it was configured (from the moment its adding reload
answered until a second before the removing one was asked: lines read just before a removal
may be dispatched after it), none kept twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, NumberedWriter, free_port
from tests.loki_receiver import LokiReceiver

__all__ = ["EXTRA_BASE", "ReloadResult", "run_reload_scenario"]

EXTRA_BASE = 10_000_000
"""First sequence number of ``extra.log`` (``app.log`` starts at 0)."""
TOKEN = "reload-secret"
OPERATIONS = ("add_extra", "relabel", "add_sink", "pipeline", "swap_url", "remove_extra",
              "remove_sink")
SINK_LEAD_S = 1.0
"""Lines written this long before a sink's removal is asked must have reached it."""


@dataclass
class ReloadResult:
    reloads: int = 0
    invalid_refused: int = 0
    lines: int = 0
    missing: int = 0
    duplicates_kept: int = 0
    audit_lines: int = 0
    audit_missing: int = 0
    audit_duplicates_kept: int = 0
    generation: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"reloads={self.reloads} invalid_refused={self.invalid_refused} "
                f"lines={self.lines} missing={self.missing} "
                f"duplicates_kept={self.duplicates_kept} audit_lines={self.audit_lines} "
                f"audit_missing={self.audit_missing} "
                f"audit_duplicates_kept={self.audit_duplicates_kept} "
                f"generation={self.generation} "
                f"problems={len(self.problems)}")


@dataclass
class _State:
    extra: bool = False
    label: int = 0
    pipeline: int = 1
    receiver: int = 0
    sink: bool = False


def _pipelines(variant: int) -> dict[str, Any]:
    group = f"pv{variant}"
    return {"pipelines": {"tagged": {"stages": [
        {"regex": {"expression": rf"^seq=\d+ (?P<{group}>x)"}},
        {"labels": {group: None}}]}}}


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data))
    os.replace(tmp, path)


class _Scenario:
    def __init__(self, tmp: Path, receivers: list[LokiReceiver], buffer: bool) -> None:
        self.tmp = tmp
        self.buffer = buffer
        self.receivers = receivers
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.config_path = tmp / "config.yaml"
        self.port = free_port()
        self.metrics_port = free_port()
        self.state = _State()

    def config(self, state: _State, unknown_key: bool = False) -> dict[str, Any]:
        files = [{"name": "app", "include": [str(self.logs / "app.log")],
                  "start_at": "beginning", "labels": {"job": f"app{state.label}"}}]
        if state.extra:
            files.append({"name": "extra", "include": [str(self.logs / "extra.log")],
                          "start_at": "beginning", "labels": {"job": "extra"}})
        data: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port,
                       "metrics_port": self.metrics_port, "admin_token": TOKEN},
            "sources": {"files": files},
            "processing": {"pipelines_file": "pipelines.yaml", "routing_file": "routing.yaml"},
            "dispatcher": {"shards": 2, "batch_size": 500, "batch_timeout": "50ms",
                           "retry_base_delay": "50ms", "retry_max_delay": "1s"},
            "sinks": {"file": {"enabled": False},
                      "loki": {"enabled": True, "url": self.receivers[state.receiver].url}},
            "positions": {"directory": str(self.tmp / "positions"), "flush_interval": "100ms"},
            "supervision": {"shutdown_timeout": "5s"},
            "logging": {"level": "info"},
        }
        if state.sink:
            data["sinks"]["loki_endpoints"] = [{"name": "audit", "url": self.receivers[2].url}]
        if self.buffer:
            data["disk_buffer"] = {"enabled": True, "directory": str(self.tmp / "buffer")}
        if unknown_key:
            data["sinks"]["loki"]["urll"] = "http://nowhere"
        return data

    def write(self, state: _State, unknown_key: bool = False, bad_stage: bool = False) -> None:
        pipelines = _pipelines(state.pipeline)
        if bad_stage:
            pipelines["pipelines"]["tagged"]["stages"].insert(0, {"nonsense": {}})
        _write(self.tmp / "pipelines.yaml", pipelines)
        _write(self.tmp / "routing.yaml", {"routes": [{"source": "app", "pipeline": "tagged"}]})
        _write(self.config_path, self.config(state, unknown_key))

    def reload(self, proc: LogcapProcess, by_signal: bool, generation: int
               ) -> tuple[int, dict[str, Any]]:
        """Ask for a reload; the HTTP status and the answer (for SIGHUP: 200/400 from the
        last reload in ``GET /config`` once its generation or its answer moved)."""
        if not by_signal:
            resp = requests.post(f"http://127.0.0.1:{self.port}/config/reload",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            return resp.status_code, resp.json()
        before = proc.api("/config").get("last_reload")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        answer: dict[str, Any] = {}

        def answered() -> bool:
            last = proc.api("/config").get("last_reload")
            if last is not None and last != before:
                answer.update(last)
                return True
            return False

        wait_until(answered, timeout=60, what="the SIGHUP reload's answer")
        return (200 if answer["result"] == "applied" else 400), answer


def _apply(state: _State, operation: str, receivers: int) -> str:
    """Change ``state`` by ``operation`` (adding/removing only what makes sense now);
    the operation actually done."""
    if operation == "add_extra" and state.extra:
        operation = "relabel"
    if operation == "remove_extra" and not state.extra:
        operation = "add_extra"
    if operation == "add_sink" and state.sink:
        operation = "relabel"
    if operation == "remove_sink" and not state.sink:
        operation = "add_sink"
    if operation == "add_extra":
        state.extra = True
    elif operation == "remove_extra":
        state.extra = False
    elif operation == "relabel":
        state.label += 1
    elif operation == "pipeline":
        state.pipeline += 1
    elif operation in ("add_sink", "remove_sink"):
        state.sink = operation == "add_sink"
    elif operation == "swap_url":
        state.receiver = (state.receiver + 1) % receivers
    return operation


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_until`` at a slower pace, for checks that copy a receiver's streams."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.1)


def run_reload_scenario(tmp: Path, *, reloads: int, invalid: int, rate: float,
                        pause_s: float = 0.5, buffer: bool = False) -> ReloadResult:
    """Run it (module docstring): ``reloads`` valid reloads and ``invalid`` refused ones,
    ``rate`` lines/s in total over the two files; ``buffer``: with the disk buffer on."""
    result = ReloadResult()
    receivers = [LokiReceiver(keep_lines=True).start() for _ in range(3)]  # [2]: audit
    scenario = _Scenario(tmp, receivers, buffer)
    scenario.write(scenario.state)
    app = NumberedWriter(scenario.logs / "app.log")
    extra = NumberedWriter(scenario.logs / "extra.log")
    extra.next = EXTRA_BASE
    stop = threading.Event()
    threads = [threading.Thread(target=w.write_at_rate, args=(10**9, rate / 2, stop))
               for w in (app, extra)]
    proc = LogcapProcess(scenario.config_path).start()
    invalid_at = {round((i + 1) * reloads / (invalid + 1)) for i in range(invalid)}
    refused = 0
    generation = 1
    audit_windows: list[list[Any]] = []  # [first, end) of app.log lines the audit sink must get
    pause = threading.Event()
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: receivers[0].line_count > 0, timeout=30, what="lines flowing")
        for step in range(reloads):
            if step in invalid_at:
                bad_stage = refused % 2 == 1  # alternately the config, the pipelines file
                refused += 1
                scenario.write(scenario.state, unknown_key=not bad_stage, bad_stage=bad_stage)
                status, body = scenario.reload(proc, by_signal=False, generation=generation)
                expected = "nonsense" if bad_stage else "urll"
                if status != 400 or body.get("generation") != generation \
                        or not any(expected in e for e in body.get("errors", [])):
                    result.problems.append(f"invalid config not refused as such: {status} "
                                           f"{body}")
                else:
                    result.invalid_refused += 1
                scenario.write(scenario.state)  # the files are valid again
            planned = OPERATIONS[step % len(OPERATIONS)]
            if step == reloads - 1 and (planned == "remove_extra" or not scenario.state.extra):
                planned = "add_extra" if not scenario.state.extra else "relabel"
                # end with every source present
            if planned == "remove_sink" and scenario.state.sink:
                audit_windows[-1][1] = app.next  # these must reach it before it goes
                pause.wait(SINK_LEAD_S)
            operation = _apply(scenario.state, planned, 2)
            scenario.write(scenario.state)
            status, body = scenario.reload(proc, by_signal=step % 3 == 2, generation=generation)
            generation += 1
            result.reloads += 1
            if operation == "add_sink":
                audit_windows.append([app.next, None])
            if status != 200 or body.get("generation") != generation \
                    or body.get("needs_restart") or body.get("undrained_sources"):
                result.problems.append(f"reload {step} ({operation}): {status} {body}")
            if operation == "pipeline":
                label = f"pv{scenario.state.pipeline}"
                target = receivers[scenario.state.receiver]
                _poll(lambda label=label, target=target:  # type: ignore[misc]
                      any(label in key for key in target.streams()), 30,
                      f"lines labelled by the new pipeline ({label})")
            pause.wait(pause_s)  # lines keep flowing between reloads
        stop.set()
        for thread in threads:
            thread.join()
        expected = set(range(app.next)) | set(range(EXTRA_BASE, extra.next))
        result.lines = len(expected)

        def counted() -> Counter[int]:
            total: Counter[int] = Counter()
            for receiver in receivers[:2]:  # the main sink's two URLs
                total.update(receiver.received_seq_numbers(dedupe=True))
            return total

        try:
            wait_until(lambda: expected <= set(counted()), timeout=90, what="every line")
        except AssertionError:
            pass
        counts = counted()
        result.missing = len(expected - set(counts))
        result.duplicates_kept = sum(c - 1 for c in counts.values() if c > 1)
        audit_expected = {seq for first, end in audit_windows
                          for seq in range(first, app.next if end is None else end)}
        result.audit_lines = len(audit_expected)
        if audit_expected:
            try:
                wait_until(lambda: audit_expected <= set(
                    receivers[2].received_seq_numbers(dedupe=True)), timeout=30,
                    what="the audit sink's lines")
            except AssertionError:
                pass
        audit = Counter(receivers[2].received_seq_numbers(dedupe=True))
        result.audit_missing = len(audit_expected - set(audit))
        result.audit_duplicates_kept = sum(c - 1 for c in audit.values() if c > 1)
        result.generation = int(proc.api("/config")["generation"])
        if result.generation != generation:
            result.problems.append(f"generation {result.generation}, expected {generation}")
        if result.missing:
            result.problems.append(f"log: {proc.tail_log(40)}")
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        proc.stop()
        for receiver in receivers:
            receiver.stop()
    return result
