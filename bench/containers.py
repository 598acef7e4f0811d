"""Benchmark: the container source against a private podman engine (tests/podman_engine.py).

Three runs, each with a ContainerSource (started first, then the containers; the wall time
includes the containers' start) driven the way its shell drives it (read, then ack every
read at once: no shards, no sinks, so the numbers are the source's own cost plus the engine's
streaming):

1. one container writing as fast as it can: lines/s through one stream;
2. 20 containers writing at once: lines/s in total;
3. one container paced at about 5,000 lines/s: CPU % of one core used by this process
   (the source, its followers and the HTTP client), and CPU µs per line.

Each run prints the machine's load average first (the VM is shared: numbers move with it).
With podman the follower polls reads without ``follow`` (see
:mod:`logcap.sources.containers.engine`), so these numbers include re-reading the resume
point's second at each poll.

Run as root on a machine with podman, runc and busybox-static::

    .venv/bin/python bench/containers.py [--lines 200000] [--containers 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logcap.sources.containers.filters import ContainerFilter
from logcap.sources.containers.source import ContainerSettings, ContainerSource
from tests.podman_engine import (
    CONTAINER_KWARGS,
    IMAGE,
    podman_missing,
    start_engine,
    ulimits,
)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drive(source: ContainerSource, want: int, timeout: float, begin) -> int:
    """Start the source, call ``begin()`` (start the containers), read and ack until ``want``
    lines were read; returns the lines read."""
    woke = threading.Event()
    source.start([], {}, woke.set)
    begin()
    got = 0
    deadline = time.monotonic() + timeout
    try:
        while got < want and time.monotonic() < deadline:
            reading = source.read()
            got += reading.lines
            if reading.entries:
                source.ack([e.token for e in reading.entries])
            if not reading.more and not reading.entries:
                woke.wait(0.05)
                woke.clear()
                source.on_tick()
    finally:
        source.close()
    return got


def settings(socket: str, prefix: str) -> ContainerSettings:
    return ContainerSettings("bench", socket, ContainerFilter(include_names=(f"{prefix}*",)),
                             (), "beginning", 256 * 1024, 1000)


def writer(lines: int, per_sleep: int = 0, sleep_us: int = 0) -> list[str]:
    pace = f"j=$((j+1)); if [ $j -ge {per_sleep} ]; then j=0; usleep {sleep_us}; fi; " \
        if per_sleep else ""
    return ["sh", "-c", f"i=0; j=0; while [ $i -lt {lines} ]; do "
            f"echo \"seq=$i some payload of a typical log line, about a hundred bytes long\"; "
            f"i=$((i+1)); {pace}done; sleep 2"]


def run(client, engine, prefix: str, containers: int, lines: int, per_sleep: int = 0,
        sleep_us: int = 0) -> tuple[int, float, float]:
    load = os.getloadavg()
    print(f"  (load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})", flush=True)
    source = ContainerSource(settings(engine.url, prefix))

    def begin() -> None:
        time.sleep(1)  # the source's first listing
        for k in range(containers):
            client.containers.run(IMAGE, writer(lines, per_sleep, sleep_us),
                                  name=f"{prefix}{k}", detach=True, ulimits=ulimits(),
                                  **CONTAINER_KWARGS)

    t0, c0 = time.monotonic(), cpu_s()
    got = drive(source, containers * lines, 300, begin)
    return got, time.monotonic() - t0, cpu_s() - c0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--containers", type=int, default=20)
    args = parser.parse_args()
    why = podman_missing()
    if why:
        print(f"skipped: {why}")
        return 0
    import docker

    with tempfile.TemporaryDirectory(prefix="lcb-", dir="/tmp") as tmp:
        engine = start_engine(Path(tmp))
        client = docker.DockerClient(base_url=engine.url, timeout=60)
        try:
            got, wall, cpu = run(client, engine, "one", 1, args.lines)
            print(f"1 container:   {got} lines in {wall:.1f} s = {got / wall:,.0f} lines/s, "
                  f"CPU {cpu / got * 1e6:.1f} µs/line")
            per = max(1, args.lines // 10)
            got, wall, cpu = run(client, engine, "many", args.containers, per)
            print(f"{args.containers} containers: {got} lines in {wall:.1f} s = "
                  f"{got / wall:,.0f} lines/s, CPU {cpu / got * 1e6:.1f} µs/line")
            paced = 50_000
            got, wall, cpu = run(client, engine, "paced", 1, paced, per_sleep=125,
                                 sleep_us=20_000)
            print(f"paced:         {got / wall:,.0f} lines/s, CPU {100 * cpu / wall:.1f} % of "
                  f"a core, {cpu / got * 1e6:.1f} µs/line")
        finally:
            client.close()
            engine.reset()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
