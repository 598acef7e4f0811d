"""Benchmark of the processing pipelines: CPU µs per line of ``opensips`` and ``mysql_slow``.

    .venv/bin/python bench/pipelines.py [--lines 200000] [--e2e] [--e2e-lines 100000]
    .venv/bin/python bench/pipelines.py --instructions [--lines 6000] [--stages opensips]
    .venv/bin/python bench/pipelines.py --instructions --e2e [--e2e-lines 100000]

1. **in process**: the built-in's :meth:`CompiledPipeline.run` (what a shard runs) over
   batches of 1000 entries, timed with ``time.process_time``: CPU µs per entry and lines/s.
   OpenSIPS entries are single lines, every 20th an xlog line with a joined SIP dump; slow-log
   entries are MariaDB's 6-line entries. Also the multiline joining of the raw lines
   (:class:`~logcap.sources.multiline.LineJoiner`), per raw line.
2. **end to end** (``--e2e``): a logcap process reading a file from the beginning into a Loki
   push receiver (in its own process; ``--in-process-receiver``: the full test receiver in this
   one), once raw (no pipeline) and once with the pipeline; the process's CPU
   seconds (psutil) per line, and the difference: what the pipeline adds per line.
3. **instructions** (``--instructions``, needs ``valgrind``): the CPU instructions the
   pipeline runs per entry and per raw line, counted by cachegrind (a run over the entries
   three times minus a run that only prepares them): unlike CPU time, not skewed by other jobs
   on the machine, so two versions compare exactly (about a minute per run). With
   ``--stages NAME``: per stage of that pipeline, from runs of its first k stages (k = 0: what
   :meth:`CompiledPipeline.run` costs around the stages; a fused step, see
   :mod:`logcap.pipeline.stages.fused`, counts as one, ``--unfused`` runs the stages one by
   one). With ``--e2e``: the end-to-end run
   of ``opensips`` with the logcap process under cachegrind (all its threads: the joiner, the
   pipeline, the sink), instructions per raw line raw and with the pipeline.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e_loki import add_receiver_option, apply_receiver_option, open_receiver
from logcap.cli.pipeline_test import join_all
from logcap.pipeline.builtins import builtin_pipelines
from logcap.pipeline.compiled import CompiledPipeline
from tests.actor_kit import wait_until
from tests.harness import LogcapProcess, make_config
from tests.pipeline_kit import entries

BATCH = 1000
SIP = ("INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\n"
       "From: <sip:alice@example.com>;tag=1928301774\nTo: <sip:bob@example.com>\n"
       "Call-ID: a84b4c76e66710@pc33.example.com\nCSeq: 1 INVITE\n")


def opensips_raw(n: int, number: str = "seq", pad_to: int = 0) -> list[str]:
    """``n`` raw OpenSIPS stderr lines (about 5% of them SIP dump lines), each entry's head
    numbered ``<number>=<i>``, its single-line entries padded with ``x`` to ``pad_to``
    characters (``bench/peers.py --pipeline``: 200-byte lines, ``n=`` so that the bench
    receiver counts them in bulk)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        second = i % 60
        if i % 20 == 0:
            out.append(f"Dec  1 20:34:{second:02d} [2315] NOTICE:received request INVITE from "
                       f"192.0.2.10 {number}={i}")
            out.extend(SIP.splitlines())
        else:
            line = (f"Dec  1 20:34:{second:02d} [2311] ERROR:tm:t_reply: call-id=a{i}@10.0.0.5"
                    f" replied 200 OK {number}={i}")
            out.append(line.ljust(pad_to, "x"))
        i += 1
    return out[:n]


def slow_raw(n: int) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        out += ["# User@Host: root[root] @ localhost []",
                "# Thread_id: 8  Schema: shop  QC_hit: No",
                f"# Query_time: 0.000{i % 1000:03d}  Lock_time: 0.000045  Rows_sent: 1  "
                "Rows_examined: 10",
                "# Rows_affected: 0  Bytes_sent: 63",
                f"SET timestamp={1796168792 + i // 100};",
                f"SELECT name FROM shop.items WHERE id = {i};"]
        i += 1
    return out[:n]


def mysql_error_raw(n: int) -> list[str]:
    """``n`` raw error-log lines: MariaDB and MySQL 8 forms, every 50th entry with a
    continuation line."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        second = i % 60
        if i % 2:
            out.append(f"2026-12-01 23:46:{second:02d} {i % 30} [Warning] Aborted connection "
                       f"{i} to db: 'shop' user: 'app' host: 'localhost' (Got an error reading "
                       "communication packets)")
        else:
            out.append(f"2024-12-01T20:34:{second:02d}.{i % 1000000:06d}Z 8 [ERROR] [MY-012592] "
                       f"[InnoDB] Operating system error number 2 in a file operation seq={i}")
        if i % 50 == 0:
            out.append("Version: '10.11.19-MariaDB-0+deb12u1-log'  socket: '/run/mysqld.sock'")
        i += 1
    return out[:n]


def _container_raw(n: int, record: Callable[[str, str, str, bool], str]) -> list[str]:
    """``n`` records of a container runtime, stdout and stderr, every 100th line cut in two
    records; ``record(time, stream, text, last)`` writes one (``last``: the line ends)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        stream = "stderr" if i % 3 == 0 else "stdout"
        time_text = f"2026-12-01T20:34:{i % 60:02d}.{i % 1000000:06d}123Z"
        text = f"GET /api/items/{i} 200 {i % 997} ms"
        if i % 100 == 0:
            out.append(record(time_text, stream, text[:10], False))
            text = text[10:]
        out.append(record(time_text, stream, text, True))
        i += 1
    return out[:n]


def docker_json_raw(n: int) -> list[str]:
    """``n`` json-file records (a cut line: its first record's ``log`` has no newline)."""
    newline = "\\n"  # escaped in the JSON text
    return _container_raw(n, lambda time_text, stream, text, last: (
        f'{{"log":"{text}{newline if last else ""}","stream":"{stream}","time":"{time_text}"}}'))


def cri_raw(n: int) -> list[str]:
    """``n`` CRI records (a cut line: a P record, then an F one)."""
    return _container_raw(n, lambda time_text, stream, text, last: (
        f"{time_text} {stream} {'F' if last else 'P'} {text}"))


def in_process(name: str, raw: list[str]) -> None:
    pipeline = builtin_pipelines()[name].compile()
    assert pipeline.multiline is not None
    started = time.process_time()
    joined = join_all(raw, pipeline.multiline)
    join_s = time.process_time() - started
    batches = [joined[i:i + BATCH] for i in range(0, len(joined), BATCH)]
    made = [entries(b) for b in batches]
    started = time.process_time()
    failures = 0
    for e in made:
        failures += sum(pipeline.run(e).failures.values())
    run_s = time.process_time() - started
    per_entry = run_s / len(joined) * 1e6
    print(f"{name}: {len(raw)} raw lines -> {len(joined)} entries; "
          f"join {join_s / len(raw) * 1e6:.2f} µs/raw line; "
          f"pipeline {per_entry:.2f} µs/entry ({run_s / len(raw) * 1e6:.2f} µs/raw line), "
          f"{len(joined) / run_s:,.0f} entries/s; stage failures {failures}")


def _e2e_once(tmp: Path, raw: list[str], pipeline: str | None,
              wrapper: tuple[str, ...] = ()) -> float:
    """The logcap process's CPU seconds to ship ``raw`` (run under ``wrapper`` if given)."""
    receiver = open_receiver()
    try:
        logs = tmp / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "app.log").write_text("\n".join(raw) + "\n")
        source = {"name": "app", "include": [str(logs / "*.log")], "start_at": "beginning",
                  "labels": {"job": "bench"}}
        if pipeline:
            source["pipeline"] = pipeline
        config = make_config(tmp, [], sources={"files": [source]},
                             dispatcher={"batch_size": 1000},
                             sinks={"file": {"enabled": False},
                                    "loki": {"enabled": True, "url": receiver.url}})
        expected = len(join_all(raw, builtin_pipelines()[pipeline or "opensips"].multiline)) \
            if pipeline else len(raw)  # type: ignore[arg-type]
        proc = LogcapProcess(config, wrapper=wrapper,
                             start_timeout=600 if wrapper else 30).start()
        assert proc.proc is not None
        ps = psutil.Process(proc.proc.pid)
        try:
            wait_until(lambda: receiver.line_count >= expected, timeout=1800,
                       what=f"{expected} entries")
            cpu = ps.cpu_times()
            return cpu.user + cpu.system
        finally:
            proc.stop(timeout=600 if wrapper else 30)
    finally:
        receiver.stop()


def end_to_end(name: str, raw: list[str]) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        base = _e2e_once(Path(a), raw, None)
        with_pipeline = _e2e_once(Path(b), raw, name)
    n = len(raw)
    print(f"{name} e2e: {n} raw lines; logcap CPU raw {base / n * 1e6:.2f} µs/line, with "
          f"{name} {with_pipeline / n * 1e6:.2f} µs/line: the pipeline (and joining) adds "
          f"{(with_pipeline - base) / n * 1e6:.2f} µs/line (process start included in both)")


def _e2e_instructions_once(raw: list[str], pipeline: str | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        _e2e_once(Path(tmp), raw, pipeline,
                  ("valgrind", "--tool=cachegrind", "--cache-sim=no",
                   f"--cachegrind-out-file={out}"))
        found = re.search(r"^summary: (\d+)", out.read_text(), re.M)
        assert found, f"no summary in {out}"
        return int(found.group(1))


def end_to_end_instructions(name: str, raw: list[str]) -> None:
    """What :func:`end_to_end` measures, in instructions: the logcap process under
    cachegrind (all its threads; minutes), raw and with the pipeline."""
    base = _e2e_instructions_once(raw, None)
    with_pipeline = _e2e_instructions_once(raw, name)
    n = len(raw)
    print(f"{name} e2e: {n} raw lines; logcap raw {base / n:,.0f} instructions per raw line, "
          f"with {name} {with_pipeline / n:,.0f}: the pipeline (and joining) adds "
          f"{(with_pipeline - base) / n:,.0f} per raw line (process start included in both; "
          "cachegrind)")


RAW = {"opensips": opensips_raw, "mysql_slow": slow_raw, "mysql_error": mysql_error_raw,
       "docker_json": docker_json_raw, "cri": cri_raw}
REPS = 3
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _run_only(name: str, lines: int, reps: int, upto: int | None, fuse: bool = True) -> None:
    """Prepare the entries of ``name``'s bench, run the pipeline (its first ``upto`` stages
    if given; fused where it can be, if ``fuse``) over them ``reps`` times."""
    pipeline = builtin_pipelines()[name].compile(fuse=fuse)
    assert pipeline.multiline is not None
    if upto is not None:
        pipeline = CompiledPipeline(name, pipeline.stages[:upto], pipeline.multiline)
    joined = join_all(RAW[name](lines), pipeline.multiline)
    made = [entries(joined[i:i + BATCH]) for i in range(0, len(joined), BATCH)]
    for _ in range(reps):
        for e in made:
            pipeline.run(e)


def _instructions(name: str, lines: int, reps: int, upto: int | None = None,
                  fuse: bool = True) -> int:
    stages = ([] if upto is None else ["--upto", str(upto)]) + ([] if fuse else ["--unfused"])
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--run-only", name, "--reps", str(reps),
         "--lines", str(lines), *stages], capture_output=True, text=True, check=True)
    found = _IREFS.search(done.stderr)
    assert found, done.stderr[-500:]
    return int(found.group(1).replace(",", ""))


def _what(stage: object) -> str:
    """A stage's label; a fused step's: the labels of the stages it does."""
    fused = getattr(stage, "fused", None)
    return f"{'+'.join(fused)} (fused)" if fused else str(getattr(stage, "label", stage))


def stage_instructions(name: str, lines: int, fuse: bool = True) -> None:
    """Instructions per entry of each stage of ``name`` (and of the run around them)."""
    compiled = builtin_pipelines()[name].compile(fuse=fuse)
    assert compiled.multiline is not None
    n_entries = len(join_all(RAW[name](lines), compiled.multiline))
    prepared = _instructions(name, lines, 0)
    previous = prepared
    for upto in range(len(compiled.stages) + 1):
        total = _instructions(name, lines, REPS, upto, fuse)
        what = "run() without stages" if upto == 0 else _what(compiled.stages[upto - 1])
        print(f"{name} {what}: {(total - previous) / (REPS * n_entries):,.0f} instructions "
              f"per entry", flush=True)
        previous = total
    print(f"{name} in all: {(previous - prepared) / (REPS * n_entries):,.0f} instructions per "
          f"entry ({lines} raw lines, {n_entries} entries, {REPS} runs, cachegrind)")


def instructions(name: str, lines: int) -> None:
    pipeline = builtin_pipelines()[name]
    assert pipeline.multiline is not None
    n_entries = len(join_all(RAW[name](lines), pipeline.multiline))
    spent = _instructions(name, lines, REPS) - _instructions(name, lines, 0)
    print(f"{name}: {spent / (REPS * n_entries):,.0f} instructions per entry, "
          f"{spent / (REPS * lines):,.0f} per raw line ({lines} raw lines, {n_entries} entries, "
          f"{REPS} runs, cachegrind)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("--e2e-lines", type=int, default=100_000)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--stages", choices=tuple(RAW),
                        help="with --instructions: per stage of this pipeline")
    parser.add_argument("--run-only", choices=tuple(RAW), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=REPS, help=argparse.SUPPRESS)
    parser.add_argument("--upto", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--unfused", action="store_true",
                        help="with --instructions --stages: the stages one by one, not fused")
    add_receiver_option(parser)
    args = parser.parse_args()
    apply_receiver_option(args)
    if args.run_only:
        _run_only(args.run_only, args.lines, args.reps, args.upto, not args.unfused)
        return
    if args.instructions and args.e2e:
        end_to_end_instructions("opensips", opensips_raw(args.e2e_lines))
        return
    if args.instructions and args.stages:
        stage_instructions(args.stages, args.lines, not args.unfused)
        return
    if args.instructions:
        for name in RAW:
            instructions(name, args.lines)
        return
    for name, make in RAW.items():
        in_process(name, make(args.lines))
    if args.e2e:
        end_to_end("opensips", opensips_raw(args.e2e_lines))
        end_to_end("mysql_slow", slow_raw(args.e2e_lines))


if __name__ == "__main__":
    main()
