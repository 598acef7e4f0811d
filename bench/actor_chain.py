"""Throughput of the actor runtime: batch messages through a chain of 3 bounded-mailbox actors.

    python bench/actor_chain.py [--messages 20000] [--batch 1000] [--capacity 64]

A producer thread offers batches (tuples of ``--batch`` ints) to actor 1; each actor forwards
to the next through its stable handle; actor 3 counts. A full mailbox refuses at once and the
sender retries (the real pipeline pauses its source; here the producer spins on a short wait).
Prints messages/s, lines/s and the mean cost of one batch message end to end.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from typing import Any

from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.mailbox import DataMessage, DeliveryRefused


@dataclass(frozen=True, slots=True)
class Lines(DataMessage):
    items: tuple[int, ...]


class Forward(LogcapActor):
    def __init__(self, out: Handle, **kw: Any) -> None:
        super().__init__(**kw)
        self.out = out
        self.pause = threading.Event()

    def handle(self, message: Any) -> Any:
        while True:
            try:
                self.out.tell(message)
                return None
            except DeliveryRefused:
                self.pause.wait(0.0001)


class Count(LogcapActor):
    def __init__(self, total: int, done: threading.Event, **kw: Any) -> None:
        super().__init__(**kw)
        self.total = total
        self.seen = 0
        self.done = done

    def handle(self, message: Any) -> Any:
        self.seen += 1
        if self.seen == self.total:
            self.done.set()


def run(messages: int, batch: int, capacity: int) -> dict[str, float]:
    directory = Directory()
    done = threading.Event()
    counter = Count.start(messages, done, name="c3", mailbox_capacity=capacity)
    directory.bind("c3", counter)
    a2 = Forward.start(directory.handle("c3"), name="c2", mailbox_capacity=capacity)
    directory.bind("c2", a2)
    a1 = Forward.start(directory.handle("c2"), name="c1", mailbox_capacity=capacity)
    directory.bind("c1", a1)
    payload = Lines(tuple(range(batch)))
    head = directory.handle("c1")
    pause = threading.Event()
    t0 = time.perf_counter()
    sent = 0
    while sent < messages:
        try:
            head.tell(payload)
            sent += 1
        except DeliveryRefused:
            pause.wait(0.0001)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    for ref in (a1, a2, counter):
        ref.stop()
    return {
        "messages_per_s": messages / elapsed,
        "lines_per_s": messages * batch / elapsed,
        "us_per_message": elapsed / messages * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=64)
    args = parser.parse_args()
    result = run(args.messages, args.batch, args.capacity)
    print(f"chain of 3 actors, {args.messages} batch messages of {args.batch} lines, "
          f"mailbox capacity {args.capacity}")
    print(f"  messages/s       {result['messages_per_s']:>12,.0f}")
    print(f"  lines/s          {result['lines_per_s']:>12,.0f}")
    print(f"  us per message   {result['us_per_message']:>12.1f}  (end to end, 3 hops; "
          f"budget 100 us -> {100 / result['us_per_message']:.1f}x headroom)")


if __name__ == "__main__":
    main()
