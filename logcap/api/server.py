"""The AdminServer actor: owns the waitress servers of the admin API and of ``/metrics``.

Messages: none of its own. On start it binds ``host:port`` (admin app) and
``host:metrics_port`` (metrics app) and serves each from its own thread; a bind failure is a
crash at start. waitress's worker threads answer the requests; the actor's thread stays free.
The servers wait on ``poll``, not ``select``: ``select`` cannot watch a descriptor numbered
above 1,023, and a process following thousands of files holds that many.

Each supervisor ``Ping`` also checks the server threads: one that died (its loop raised) makes
the actor crash, so its supervisor restarts it and the API comes back, instead of answering
nothing for good. On stop it closes both servers and joins their threads.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.server import create_server

from logcap.api.app import AdminBackend, create_app, create_metrics_app
from logcap.runtime.actor import LogcapActor

__all__ = ["ADMIN_THREADS", "AdminServer", "ServerDied"]

log = logging.getLogger(__name__)

ADMIN_THREADS = 4
"""waitress worker threads for the admin app (the metrics app gets 2)."""


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
        self._servers: list[Any] = []
        self._threads: list[threading.Thread] = []

    def handle_start(self) -> None:
        self._serve(create_app(self.backend), self.port, ADMIN_THREADS, "admin")
        if self.metrics_port:
            self._serve(create_metrics_app(), self.metrics_port, 2, "metrics")

    def _serve(self, app: Any, port: int, threads: int, what: str) -> None:
        server = create_server(app, host=self.host, port=port, threads=threads,
                               ident="logcap", clear_untrusted_proxy_headers=True,
                               asyncore_use_poll=True)
        self._servers.append(server)
        thread = threading.Thread(target=server.run, name=f"logcap-{what}-http", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("%s API listening on http://%s:%s", what, self.host, server.effective_port)

    @property
    def bound_ports(self) -> list[int]:
        return [int(s.effective_port) for s in self._servers]

    def on_ping(self) -> None:
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead:
            self.actor_ref.tell(ServerDied(f"HTTP server thread {', '.join(dead)} died"))

    def handle(self, message: Any) -> Any:
        if message == "ports":
            return self.bound_ports
        if isinstance(message, ServerDied):
            raise message
        return super().handle(message)

    def handle_stop(self) -> None:
        for server in self._servers:
            server.close()
        for thread in self._threads:
            thread.join(timeout=5)
