"""The recent warnings and errors of logcap's own log, kept for the status page.

:class:`RecentErrors` is a logging handler holding the last :data:`RECENT_ERRORS_KEPT` records
at WARNING or above in a bounded deque (older ones fall out), so the page shows what went wrong
lately without reading the log. Thread-safe: any actor thread may log.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

__all__ = ["RECENT_ERRORS_KEPT", "RecentErrors"]

RECENT_ERRORS_KEPT = 50
MESSAGE_CHARS = 500
"""A longer message is cut (the full one is in the log)."""


class RecentErrors(logging.Handler):
    def __init__(self, keep: int = RECENT_ERRORS_KEPT) -> None:
        super().__init__(logging.WARNING)
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry = {"time": record.created, "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()[:MESSAGE_CHARS]}
        with self._guard:
            self._records.append(entry)

    def recent(self) -> list[dict[str, Any]]:
        """The kept records, oldest first."""
        with self._guard:
            return list(self._records)
