"""A child's name is bound as soon as it is started: what answers it while it starts (a
disk buffer feeding its sinks from its start) reaches it (the chaos harness found delivery
stalled for ever after state-group crashes: the answers went to an unbound name)."""

from __future__ import annotations

import threading
from typing import Any

from logcap.runtime.actor import LogcapActor
from logcap.runtime.directory import Directory, Handle
from logcap.runtime.supervisor import ChildSpec, StartContext
from tests.actor_kit import wait_until
from tests.test_supervisor import start_sup


class Answered:
    """What a child started with answers to its own name while still in its start."""


class AnsweredWhileStarting(LogcapActor):
    def __init__(self, got: threading.Event, **kw: Any) -> None:
        super().__init__(**kw)
        self.got = got

    def handle_start(self) -> None:
        assert self.directory is not None
        # as a sink answers a sender's reply_to: the sender's name, from another thread
        answer = threading.Thread(target=_answer, args=(self.directory, self.name))
        answer.start()
        answer.join(5)

    def handle(self, message: Any) -> Any:
        if isinstance(message, Answered):
            self.got.set()
            return None
        return super().handle(message)


def _answer(directory: Directory, name: str) -> None:
    wait_until(lambda: directory.lookup(name) is not None, timeout=5, what=f"{name} bound")
    Handle(directory, name).tell(Answered())


def test_an_answer_sent_to_a_child_while_it_starts_reaches_it() -> None:
    got = threading.Event()

    def start(ctx: StartContext) -> Any:
        return AnsweredWhileStarting.start(got, link=ctx.link, name=ctx.name,
                                           directory=ctx.directory)

    ref, directory, _ = start_sup([ChildSpec(id="buffer", start=start)])
    try:
        assert got.wait(10)
        assert directory.lookup("sup/buffer") is not None
    finally:
        ref.stop(block=True, timeout=10)
