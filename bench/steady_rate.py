"""Where logcap's CPU goes at a steady rate: per thread, and messages handled per actor.

    .venv/bin/python bench/steady_rate.py [--rate 10000] [--seconds 10] [--write-every 0.005]
        [--disk-buffer]

A logcap process tails one file into a Loki push receiver (in this process) while lines of ~200
bytes are written at ``--rate`` lines/s, in writes every ``--write-every`` seconds (an
application's small writes; each one is an inotify event). Printed, over the writing time: the
process's CPU (% of one core, µs per line) and RSS (anonymous memory and the files mapped, from
``/proc/PID/smaps``); each thread's CPU (user and system time) and its wake-ups per second
(voluntary context switches, from ``/proc/PID/task/TID/status``: each is a wait that ended, on
a lock, a condition, a poll or a sleep), named by its Python thread (from ``py-spy dump``
halfway through, when py-spy is installed); and per second, the messages each actor handled,
sink requests and positions flushes (from ``/metrics``), which say how many reads, pushes and
snapshot writes the rate cost.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import LogcapProcess, make_config
from tests.loki_receiver import LokiReceiver

COUNTED = ("logcap_actor_messages_handled", "logcap_sink_requests_total",
           "logcap_positions_flushes_total")


def counters(proc: LogcapProcess) -> dict[str, float]:
    out = {}
    for line in proc.api_text("/metrics").splitlines():
        if line.startswith(COUNTED):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> the Python thread's name and what it was doing (py-spy dump)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        out = subprocess.run([spy, "dump", "-p", str(pid), "--nonblocking"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[int, str] = {}
    for line in out.splitlines():
        if line.startswith("Thread "):
            try:
                tid = int(line.split()[1], 0)
            except ValueError:
                continue
            names[tid] = line.split('"')[1] if '"' in line else "?"
    return names


def memory_breakdown(pid: int, top: int = 6) -> str:
    """The process's RSS split into anonymous memory (heap, stacks) and mapped files, with the
    files holding the most resident pages (shared libraries count whole in RSS)."""
    anon = 0
    by_file: dict[str, int] = {}
    name = ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=6)
            if "-" in head[0]:  # a mapping's header line: address range, ..., path
                name = head[5].strip() if len(head) > 5 else ""
            elif head[0] == "Rss:":
                kib = int(head[1])
                if name.startswith("/"):
                    by_file[name] = by_file.get(name, 0) + kib
                else:
                    anon += kib
    files = sorted(by_file.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{Path(f).name} {kib / 1024:.1f}" for f, kib in files[:top])
    return (f"anonymous {anon / 1024:.1f} MiB, files {sum(by_file.values()) / 1024:.1f} MiB "
            f"({shown})")


def wakeups(pid: int) -> dict[int, int]:
    """Native thread id -> voluntary context switches so far (its waits that ended)."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    out[int(task.name)] = int(line.split()[1])
        except OSError:
            continue  # the thread ended meanwhile
    return out


def write_at_rate(path: Path, rate: float, seconds: float, every: float) -> int:
    pad = "x" * 150
    written = 0
    with path.open("w") as f:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            if due > written:
                f.write("".join(f"{time.time_ns()} line {i} {pad}\n"
                                for i in range(written, due)))
                f.flush()
                written = due
            time.sleep(every)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--write-every", type=float, default=0.005)
    parser.add_argument("--disk-buffer", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        receiver = LokiReceiver(keep_lines=False).start()
        logs = tmp / "logs"
        logs.mkdir()
        extra = {"disk_buffer": {"enabled": True, "directory": str(tmp / "buffer")}} \
            if args.disk_buffer else {}
        config = make_config(
            tmp, [], sources={"files": [{"name": "app", "include": [str(logs / "*.log")],
                                         "labels": {"job": "bench"}}]},
            dispatcher={"batch_size": 1000, "batch_timeout": "50ms"},
            positions={"flush_interval": "1s"},
            sinks={"file": {"enabled": False}, "loki": {"enabled": True, "url": receiver.url}},
            **extra)
        proc = LogcapProcess(config).start()
        assert proc.proc is not None
        ps = psutil.Process(proc.proc.pid)
        try:
            time.sleep(1)
            names: dict[int, str] = {}
            namer = threading.Thread(target=lambda: (time.sleep(args.seconds / 2),
                                                     names.update(thread_names(ps.pid))))
            namer.start()
            before = counters(proc)
            threads_before = {t.id: (t.user_time, t.system_time) for t in ps.threads()}
            woke_before = wakeups(ps.pid)
            cpu = ps.cpu_times()
            cpu_before, started = cpu.user + cpu.system, time.monotonic()
            lines = write_at_rate(logs / "app.log", args.rate, args.seconds, args.write_every)
            cpu = ps.cpu_times()
            spent, elapsed = cpu.user + cpu.system - cpu_before, time.monotonic() - started
            threads_after = {t.id: (t.user_time, t.system_time) for t in ps.threads()}
            woke_after = wakeups(ps.pid)
            after = counters(proc)
            rss = ps.memory_info().rss / 2**20
            memory = memory_breakdown(ps.pid)
            namer.join()
        finally:
            proc.stop()
            receiver.stop()
    print(f"{args.rate:,.0f} lines/s for {args.seconds:g} s, writes every "
          f"{args.write_every * 1000:g} ms{', disk buffer' if args.disk_buffer else ''}: "
          f"CPU {spent / elapsed * 100:.1f} % of a core, {spent / max(lines, 1) * 1e6:.1f} µs "
          f"per line, RSS {rss:.0f} MiB")
    print(f"  RSS: {memory}")
    woke_total = sum(woke_after.values()) - sum(woke_before.get(t, 0) for t in woke_after)
    print(f"  wake-ups (voluntary context switches): {woke_total / elapsed:.0f}/s in all")
    spent_by = {tid: (user - threads_before.get(tid, (0.0, 0.0))[0],
                      system - threads_before.get(tid, (0.0, 0.0))[1])
                for tid, (user, system) in threads_after.items()}
    for tid, (user, system) in sorted(spent_by.items(), key=lambda kv: -sum(kv[1])):
        woke = (woke_after.get(tid, 0) - woke_before.get(tid, 0)) / elapsed
        if user + system > 0.005 or woke >= 1:
            print(f"  thread {names.get(tid, tid)}: {(user + system) / elapsed * 100:.1f} % of "
                  f"a core (user {user / elapsed * 100:.1f}, system {system / elapsed * 100:.1f})"
                  f", {woke:.0f} wake-ups/s")
    for key in sorted(after):
        rate = (after[key] - before.get(key, 0)) / elapsed
        if rate > 0.5:
            print(f"  {rate:8.1f}/s {key}")


if __name__ == "__main__":
    main()
