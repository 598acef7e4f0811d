"""The AdminServer actor: owns the waitress servers of the admin API and of ``/metrics``.

Messages: none of its own. On start it binds ``host:port`` (admin app) and
``host:metrics_port`` (metrics app) and serves each from its own thread; a bind failure is a
crash at start. waitress's worker threads answer the requests; the actor's thread stays free.
The servers wait on ``poll``, not ``select``: ``select`` cannot watch a descriptor numbered
above 1,023, and a process following thousands of files holds that many.

Each supervisor ``Ping`` also checks the server threads: one that died (its loop raised) makes
the actor crash, so its supervisor restarts it and the API comes back, instead of answering
nothing for good. On stop, and after a crash, each server's worker threads finish their
requests and end, every connection is closed, and the loop's thread ends (nothing leaks, and a
restarted actor binds the same ports).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from waitress.server import create_server

from logcap.api.app import AdminBackend, create_app, create_metrics_app
from logcap.runtime.actor import LogcapActor

__all__ = ["ADMIN_THREADS", "AdminServer", "ServerDied"]

log = logging.getLogger(__name__)

ADMIN_THREADS = 4
"""waitress worker threads for the admin app (the metrics app gets 2)."""


LOOP_TIMEOUT_S = 30
"""waitress's ``asyncore_loop_timeout``: how long its loop sleeps in ``poll`` without events
(waitress's default, 1 s, is two wake-ups a second for an idle agent). Nothing waits on it:
a worker with an answer ready and a stop both wake the loop through its trigger, and idle
connections are looked at every ``cleanup_interval`` (30 s) anyway."""

STOP_TIMEOUT_S = 5.0
"""How long a stop waits for requests being answered, then for the server's loop to end."""


@dataclass(slots=True)
class _Served:
    """One waitress server, the socket map its loop serves, and the thread running the loop."""

    server: Any
    socket_map: dict[int, Any]
    thread: threading.Thread

    def shut_down(self, timeout_s: float) -> None:
        """Let the worker threads finish the requests they answer and end, then close every
        descriptor of the map (listening socket, trigger, open connections) in the loop's own
        thread, so the loop, which runs while its map is not empty, ends. Closing only the
        listening socket (waitress's ``close``) left the loop serving kept-alive connections
        and the worker threads waiting: 6 threads leaked at each restart of this actor."""
        self.server.task_dispatcher.shutdown(timeout=timeout_s)
        if self.thread.is_alive():
            self.server.trigger.pull_trigger(self._close_all)
            self.thread.join(timeout_s)
        if not self.thread.is_alive():
            self._close_all()  # the loop had died: nobody else closes them

    def _close_all(self) -> None:
        for dispatcher in list(self.socket_map.values()):
            dispatcher.close()


class ServerDied(RuntimeError):
    """An HTTP server thread ended while the actor runs."""


class AdminServer(LogcapActor):
    def __init__(
        self, backend: AdminBackend, host: str, port: int, metrics_port: int | None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.backend = backend
        self.host = host
        self.port = port
        self.metrics_port = metrics_port
        self._servers: list[_Served] = []

    def handle_start(self) -> None:
        self._serve(create_app(self.backend), self.port, ADMIN_THREADS, "admin")
        if self.metrics_port:
            self._serve(create_metrics_app(), self.metrics_port, 2, "metrics")

    def _serve(self, app: Any, port: int, threads: int, what: str) -> None:
        socket_map: dict[int, Any] = {}  # ours, so a stop can close every connection in it
        server = create_server(app, map=socket_map, host=self.host, port=port,
                               threads=threads, ident="logcap",
                               clear_untrusted_proxy_headers=True, asyncore_use_poll=True,
                               asyncore_loop_timeout=LOOP_TIMEOUT_S)
        thread = threading.Thread(target=server.run, name=f"logcap-{what}-http", daemon=True)
        self._servers.append(_Served(server, socket_map, thread))
        thread.start()
        log.info("%s API listening on http://%s:%s", what, self.host, server.effective_port)

    @property
    def bound_ports(self) -> list[int]:
        return [int(s.server.effective_port) for s in self._servers]

    def on_ping(self) -> None:
        dead = [s.thread.name for s in self._servers if not s.thread.is_alive()]
        if dead:
            self.actor_ref.tell(ServerDied(f"HTTP server thread {', '.join(dead)} died"))

    def handle(self, message: Any) -> Any:
        if message == "ports":
            return self.bound_ports
        if isinstance(message, ServerDied):
            raise message
        return super().handle(message)

    def handle_crash(self) -> None:
        """Close the servers as at a stop: the restarted actor binds the same ports."""
        self.handle_stop()

    def handle_stop(self) -> None:
        for served in self._servers:
            served.shut_down(STOP_TIMEOUT_S)
        self._servers.clear()
