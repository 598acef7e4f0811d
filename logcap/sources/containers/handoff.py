"""How a container thread (a follower, the engine watch) hands an item to the source: put it
in the source's bounded inbox, waiting while it is full (the backpressure), then wake the
source; give up only when the thread is stopped."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["PUT_WAIT_S", "hand_off"]

PUT_WAIT_S = 0.2
"""How often a thread blocked on a full inbox checks whether it was stopped."""


def hand_off(inbox: queue.Queue[object], item: object, stopped: threading.Event,
             wake: Callable[[], None]) -> bool:
    """Put ``item`` in ``inbox`` and call ``wake``; False (nothing put) once ``stopped``."""
    while not stopped.is_set():
        try:
            inbox.put(item, timeout=PUT_WAIT_S)
        except queue.Full:
            continue
        wake()
        return True
    return False
