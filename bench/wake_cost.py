"""What a wake-up costs on this machine: the floor under logcap's CPU at a steady rate.

    .venv/bin/python bench/wake_cost.py [--rounds 200]

At 10,000 lines/s logcap does ~25 read-to-push cycles a second, each waking a handful of
threads (watcher, source, shard, buffer, sink, positions) after tens of milliseconds idle.
Three figures, each CPU time (``getrusage``, user + system) per round:

1. **sleep**: a thread sleeps ``gap`` and wakes (nothing else): the kernel's and the
   machine's cost of one wait that ends (on a VM, timer and wake-up exits included);
2. **hand-off**: one thread, after a ``gap`` idle, hands an item to a second one through a
   ``threading.Condition`` (what an actor's mailbox does) and waits for its answer: two
   wake-ups, one each way;
3. **cold work**: the same piece of Python (grouping and formatting 400 short lines, about
   what a push's encoding does) run back to back, and run after a ``gap`` idle: how much
   slower code runs when the caches and the core have gone cold (the ratio).

The steady-rate figures of ``bench/peers.py`` and ``bench/steady_rate.py`` are about 16
wake-ups and a few cold runs of such work per cycle; this says what those cost here.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from collections.abc import Callable

GAPS_S = (0.0, 0.001, 0.01, 0.04)


def cpu_s(who: int = resource.RUSAGE_THREAD) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def per_round(rounds: int, gap: float, step: Callable[[], object],
              who: int = resource.RUSAGE_THREAD) -> float:
    """CPU µs per round of ``step`` after a ``gap`` sleep (the sleep's wake-up counted)."""
    step()  # warm
    started = cpu_s(who)
    for _ in range(rounds):
        if gap:
            time.sleep(gap)
        step()
    return (cpu_s(who) - started) / rounds * 1e6


class Echo:
    """A second thread that answers each item through a Condition, as a mailbox does."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.item: int | None = None
        self.answer: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.cond:
            while True:
                while self.item is None:
                    self.cond.wait()
                if self.item < 0:
                    return
                self.answer, self.item = self.item, None
                self.cond.notify_all()

    def round_trip(self, item: int = 1) -> None:
        with self.cond:
            self.item = item
            self.cond.notify_all()
            while self.answer is None:
                self.cond.wait()
            self.answer = None

    def stop(self) -> None:
        with self.cond:
            self.item = -1
            self.cond.notify_all()
        self.thread.join()


LINES = [f"Dec  1 20:34:{i % 60:02d} [2311] ERROR:tm:t_reply: call-id=a{i} seq={i}"
         for i in range(400)]


def work() -> int:
    """About what encoding a push of 400 lines does in Python: group, format, join."""
    groups: dict[str, list[str]] = {}
    for line in LINES:
        groups.setdefault(line[16:22], []).append(f"{len(line)}:{line}")
    return len("".join(";".join(v) for v in groups.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    n = args.rounds
    for gap in GAPS_S[1:]:
        print(f"sleep {gap * 1000:g} ms and wake: {per_round(n, gap, lambda: None):.0f} µs CPU")
    echo = Echo()
    for gap in GAPS_S:
        spent = per_round(n, gap, echo.round_trip, resource.RUSAGE_SELF)
        print(f"hand-off to a thread and back after {gap * 1000:g} ms idle: {spent:.0f} µs CPU "
              "(both threads, the sleep's wake-up included)")
    echo.stop()
    warm = per_round(n, 0.0, work)
    for gap in GAPS_S[1:]:
        cold = per_round(n, gap, work) - per_round(n, gap, lambda: None)
        print(f"work after {gap * 1000:g} ms idle: {cold:.0f} µs CPU, warm {warm:.0f} µs: "
              f"{cold / warm:.1f}x")


if __name__ == "__main__":
    main()
