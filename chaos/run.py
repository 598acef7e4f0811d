"""Run chaos scenarios against a real logcap process; one summary line per scenario.

    python -m chaos.run --scenario actor-kills [--scenario sigkill ...] [--kills 100]
        [--rate 10000] [--duration 60] [--process-kills 20] [--disk-buffer | --no-disk-buffer]
        [--groups dispatchers,sinks] [--seed 7] [--keep] [--explain] [--list]

Each scenario (:mod:`chaos.scenarios`): a Loki test receiver (:mod:`chaos.receiver`), logcap
started as a process on a generated config (``server.chaos: true`` with a token, restart
intensity high enough for the crash count, restart backoff capped at 1 s), numbered lines
written round-robin to a few files at the rate (:mod:`chaos.writer`), the faults of
:func:`chaos.schedule.build_schedule` applied on time, then: Loki's faults cleared, every line
waited for, the tree waited for (every actor running, ``/health`` 200), threads and
descriptors of the process waited for (back to their values before the first fault), logcap
stopped with SIGTERM (it must exit 0), and conservation judged (:mod:`chaos.judge`). Exit
status 1 if any scenario breaks its bounds. ``--explain`` also prints, for each run of numbers
Loki kept twice, when both copies were read and the crashes just before (:mod:`chaos.explain`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.agent_process import ChaosProcess, CrashRefused
from chaos.explain import explain
from chaos.judge import Conservation, judge, violations
from chaos.receiver import TrackingReceiver
from chaos.scenarios import DEFAULT_SUITE_SCENARIO, SCENARIOS, Scenario
from chaos.schedule import (
    CrashActor,
    Event,
    KillProcess,
    LokiBegin,
    LokiEnd,
    build_schedule,
)
from chaos.writer import RoundRobinWriter
from tests.harness import make_config

__all__ = ["RunResult", "main", "run_scenario", "scenario_config"]

TOKEN = "chaos-token"
TREE_TIMEOUT_S = 60.0
LEAK_TIMEOUT_S = 30.0
QUIET_S = 2.0
"""After the last line arrived, how long nothing more may arrive before judging (late
resends are counted)."""
POLL_S = 0.2


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    conservation: Conservation
    crashes: Counter[str] = field(default_factory=Counter)
    """Actors crashed, by group."""
    process_kills: int = 0
    loki_faults: int = 0
    tree_alive: bool = False
    threads: tuple[int, int] = (0, 0)
    fds: tuple[int, int] = (0, 0)
    exit_code: int | None = None
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    crash_log: list[tuple[float, str]] = field(default_factory=list)
    """Each crash applied: (unix time, actor)."""
    explanation: list[str] = field(default_factory=list)
    """Runs of numbers kept twice beside the crashes before them (:mod:`chaos.explain`)."""

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        c = self.conservation
        return (f"{self.scenario.name}: {'PASS' if self.passed else 'FAIL'} "
                f"lines={c.written} crashes={sum(self.crashes.values())} "
                f"({', '.join(f'{g} {n}' for g, n in sorted(self.crashes.items())) or '-'}) "
                f"kill9={self.process_kills} loki_faults={self.loki_faults} "
                f"missing={c.missing} dup_kept={c.duplicates_kept} ({c.duplicate_share:.5%}) "
                f"dup_sent={c.duplicates_sent} order_breaks={c.order_breaks} "
                f"tree={'alive' if self.tree_alive else 'DOWN'} "
                f"threads={self.threads[0]}->{self.threads[1]} "
                f"fds={self.fds[0]}->{self.fds[1]} exit={self.exit_code} "
                f"disk_buffer={'on' if self.scenario.disk_buffer else 'off'} "
                f"rate={self.scenario.rate:.0f}/s seed={self.seed} "
                f"elapsed={self.elapsed_s:.0f}s"
                + (f" problems: {'; '.join(self.problems)}" if self.problems else ""))


def scenario_config(scenario: Scenario, tmp: Path, loki_url: str) -> Path:
    """The logcap config of a run in ``tmp``."""
    extra: dict[str, Any] = {}
    if scenario.disk_buffer:
        extra["disk_buffer"] = {"enabled": True, "directory": str(tmp / "buffer")}
    return make_config(
        tmp, [str(tmp / "logs" / "*.log")],
        server={"admin_token": TOKEN, "chaos": True},
        dispatcher={"shards": scenario.shards},
        sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": loki_url}},
        # every crash is a restart: the intensity must not end the tree, and a child crashed
        # again and again must come back quickly (the default backoff grows to 30 s)
        supervision={"intensity": max(100, 10 * (scenario.crashes + 1)), "period": "60s",
                     "backoff_max": "1s", "shutdown_timeout": "5s"},
        **extra,
    )


class _Run:
    """One scenario's moving parts."""

    def __init__(self, scenario: Scenario, seed: int, tmp: Path,
                 say: Callable[[str], None]) -> None:
        self.scenario = scenario
        self.seed = seed
        self.tmp = tmp
        self.say = say
        self.receiver = TrackingReceiver().start()
        (tmp / "logs").mkdir(parents=True, exist_ok=True)
        self.config = scenario_config(scenario, tmp, self.receiver.url)
        self.proc = ChaosProcess(self.config, TOKEN)
        self.result = RunResult(scenario, seed, judge(0, {}))
        self.baseline: tuple[int, int] = (0, 0)
        self.baseline_fds: list[str] = []
        self.leaked_fds: list[str] = []

    def start_logcap(self) -> None:
        self.proc.start()
        self.baseline = (self.proc.threads(), self.proc.fds())
        self.baseline_fds = self.proc.fd_targets()

    def apply(self, event: Event) -> None:
        fault = event.fault
        if isinstance(fault, CrashActor):
            body: dict[str, Any] = {"actor": fault.actor} if fault.actor else {"random": True}
            if fault.groups:
                body["groups"] = list(fault.groups)
            body["reason"] = f"chaos run at {event.at_s:.2f}s"
            at = time.time()
            try:
                answer = self.proc.crash(body)
            except CrashRefused as exc:
                self.result.problems.append(str(exc))
                return
            self.result.crashes[answer["group"]] += 1
            self.result.crash_log.append((at, answer["crashed"]))
        elif isinstance(fault, KillProcess):
            self.proc.kill()
            self.result.process_kills += 1
            self.start_logcap()
        elif isinstance(fault, LokiBegin):
            self.result.loki_faults += 1
            if fault.kind == "unavailable":
                self.receiver.fail_unavailable()
            elif fault.kind == "refused":
                self.receiver.stop()
            else:
                self.receiver.set_latency(fault.latency_s)
        elif isinstance(fault, LokiEnd):
            self.end_loki_fault(fault.kind)

    def end_loki_fault(self, kind: str) -> None:
        if kind == "refused":
            self.receiver.start()
        else:
            self.receiver.clear_faults()

    def run(self) -> RunResult:
        s = self.scenario
        started = time.monotonic()
        self.start_logcap()
        events = build_schedule(s, random.Random(self.seed))
        writer = RoundRobinWriter(self.tmp / "logs", s.files, s.line_bytes)
        writer.start(s.rate, s.duration_s)
        t0 = time.monotonic()
        # the baseline of threads and descriptors once lines flow (files, segment, connection)
        _poll(lambda: self.receiver.line_count > 0, 30)
        self.baseline = (self.proc.threads(), self.proc.fds())
        self.baseline_fds = self.proc.fd_targets()
        pause = threading.Event()
        open_loki: set[str] = set()
        try:
            for event in events:
                delay = event.at_s - (time.monotonic() - t0)
                if delay > 0:
                    pause.wait(delay)
                self.apply(event)
                if isinstance(event.fault, LokiBegin):
                    open_loki.add(event.fault.kind)
                elif isinstance(event.fault, LokiEnd):
                    open_loki.discard(event.fault.kind)
            writer.join()
        finally:
            writer.stop()
            for kind in open_loki:
                self.end_loki_fault(kind)
        self.say(f"{s.name}: {writer.written} lines written, {len(events)} faults applied "
                 f"in {time.monotonic() - t0:.0f}s; waiting for delivery")
        self.wait_delivery(writer.written)
        self.result.tree_alive = _poll(self.proc.tree_alive, TREE_TIMEOUT_S)
        self.result.threads, self.result.fds = self.wait_counts()
        self.result.exit_code = self.proc.stop(60)
        arrivals = self.receiver.arrivals()
        self.result.conservation = judge(writer.written, arrivals)
        if self.result.conservation.duplicates_kept:
            self.result.explanation = explain(arrivals, self.result.crash_log)
        self.result.elapsed_s = time.monotonic() - started
        self.result.problems.extend(self.problems())
        return self.result

    def wait_delivery(self, written: int) -> None:
        deadline = time.monotonic() + self.scenario.delivery_timeout_s
        _poll(lambda: self.receiver.distinct_numbers() >= written,
              max(0.0, deadline - time.monotonic()))
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = self.receiver.line_count
            if count != last:
                last, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                break
            time.sleep(POLL_S)

    def wait_counts(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(threads before, after), (fds before, after); after = once both are back to their
        baseline, or their last values at the timeout."""
        base_threads, base_fds = self.baseline
        now = (0, 0)

        def back() -> bool:
            nonlocal now
            try:
                now = (self.proc.threads(), self.proc.fds())
            except OSError:
                return False
            return now[0] <= base_threads and now[1] <= base_fds

        if not _poll(back, LEAK_TIMEOUT_S):
            with contextlib.suppress(OSError):
                now_fds = self.proc.fd_targets()
                left = Counter(now_fds) - Counter(self.baseline_fds)
                more = Counter(map(_fd_kind, now_fds)) - Counter(map(_fd_kind, self.baseline_fds))
                self.leaked_fds = [f"{kind} +{n}" for kind, n in sorted(more.items())] + \
                    sorted(left.elements())
        return (base_threads, now[0]), (base_fds, now[1])

    def problems(self) -> list[str]:
        s, r = self.scenario, self.result
        out = violations(r.conservation, s.bounds)
        if s.bounds.tree_alive and not r.tree_alive:
            out.append("the tree was not whole at the end: " + str(self.proc.health()[1]))
        if s.bounds.no_leaks and (r.threads[1] > r.threads[0] or r.fds[1] > r.fds[0]):
            out.append(f"leak: threads {r.threads[0]}->{r.threads[1]}, "
                       f"fds {r.fds[0]}->{r.fds[1]} (grown kinds first, then new: "
                       f"{self.leaked_fds[:12]})")
        if r.exit_code != 0:
            out.append(f"logcap exited {r.exit_code} on SIGTERM: {self.proc.tail_log(5)}")
        return out

    def close(self) -> None:
        if self.proc.proc is not None and self.proc.proc.poll() is None:
            self.proc.kill()
        self.receiver.stop()


def _fd_kind(target: str) -> str:
    """A descriptor's kind: ``pipe``, ``socket``, ``anon_inode:[eventpoll]``... (the inode
    number left out), or its path: what grew says more than which numbers are new."""
    if target.startswith("socket:tcp "):  # by state; the new targets listed show the ends
        return f"tcp {target.rsplit(' ', 1)[-1]}"
    if target.startswith(("pipe:", "socket:")):
        return target.split(":", 1)[0]
    return target


def _poll(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def run_scenario(scenario: Scenario, seed: int | None = None, keep: Path | None = None,
                 say: Callable[[str], None] = print) -> RunResult:
    """Run ``scenario`` (in ``keep``, left in place, or a temporary directory)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"logcap-chaos-{scenario.name}-", dir=keep))
    run = _Run(scenario, seed, tmp, say)
    try:
        return run.run()
    finally:
        run.close()
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"{scenario.name}: kept {tmp} (logcap.log, config.yaml, logs/)")


def _overridden(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    changes: dict[str, Any] = {}
    for key, attr in (("kills", "crashes"), ("rate", "rate"), ("duration", "duration_s"),
                      ("process_kills", "process_kills"), ("disk_buffer", "disk_buffer")):
        value = getattr(args, key)
        if value is not None:
            changes[attr] = value
    if args.groups:
        changes["crash_groups"] = tuple(g for g in args.groups.split(",") if g)
    return dataclasses.replace(scenario, **changes) if changes else scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help=f"repeatable (default: {DEFAULT_SUITE_SCENARIO})")
    parser.add_argument("--kills", type=int, help="actor crashes")
    parser.add_argument("--rate", type=float, help="lines per second")
    parser.add_argument("--duration", type=float, help="seconds of writing")
    parser.add_argument("--process-kills", type=int, help="kill -9 and restart")
    parser.add_argument("--disk-buffer", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--groups", help="comma-separated groups for random crashes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keep", type=Path, help="run in (and keep) a directory under this")
    parser.add_argument("--explain", action="store_true",
                        help="for numbers kept twice: read times and the crashes before")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS.values():
            print(f"{scenario.name}: {scenario.description}")
        return 0
    failed = False
    for name in args.scenario or [DEFAULT_SUITE_SCENARIO]:
        scenario = _overridden(SCENARIOS[name], args)
        result = run_scenario(scenario, args.seed, args.keep,
                              say=lambda text: print(text, file=sys.stderr, flush=True))
        print(result.summary(), flush=True)
        if args.explain:
            for line in result.explanation:
                print(f"  {line}", flush=True)
        failed = failed or not result.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
