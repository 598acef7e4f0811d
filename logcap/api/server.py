"""The AdminServer actor: owns the waitress servers of the admin API and of ``/metrics``.

Messages: none of its own (it answers ``Ping``). On start it binds ``host:port`` (admin app)
and ``host:metrics_port`` (metrics app) and serves each from its own thread; a bind failure is
a crash at start. On stop it closes both servers and joins their threads. waitress's worker
threads answer the requests; the actor's thread stays free.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.server import create_server

from logcap.api.app import AdminBackend, create_app, create_metrics_app
from logcap.runtime.actor import LogcapActor

__all__ = ["ADMIN_THREADS", "AdminServer"]

log = logging.getLogger(__name__)

ADMIN_THREADS = 4
"""waitress worker threads for the admin app (the metrics app gets 2)."""


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
                               ident="logcap", clear_untrusted_proxy_headers=True)
        self._servers.append(server)
        thread = threading.Thread(target=server.run, name=f"logcap-{what}-http", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("%s API listening on http://%s:%s", what, self.host, server.effective_port)

    @property
    def bound_ports(self) -> list[int]:
        return [int(s.effective_port) for s in self._servers]

    def handle(self, message: Any) -> Any:
        if message == "ports":
            return self.bound_ports
        return super().handle(message)

    def handle_stop(self) -> None:
        for server in self._servers:
            server.close()
        for thread in self._threads:
            thread.join(timeout=5)
