"""The admin API's Flask app. Handlers only translate HTTP; the :class:`AdminBackend` does the work.

``GET /health`` is 200 for ``ok`` and ``degraded``, 503 for ``failing``; ``GET /ready`` 200 once
every component has started (:mod:`logcap.api.health`). ``GET /`` is the status page
(``status_page.html``, static: it polls ``GET /status.json``, the summary of
:mod:`logcap.api.status`).

Every backend call asks actors with a timeout; a timeout surfaces as :class:`BackendTimeout`
and the handler answers 503, never a hung request. Mutating endpoints need
``Authorization: Bearer <admin_token>`` (401 without it; compared in constant time); with no
token configured they are refused with 403, so a mutating endpoint is never open by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from importlib.resources import files
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request

from logcap.api.chaos_routes import ChaosBackend, register_chaos_routes
from logcap.api.dlq_routes import register_dlq_routes
from logcap.api.errors import BackendTimeout
from logcap.api.health import http_status
from logcap.metrics import exposition

__all__ = ["AdminBackend", "BackendTimeout", "create_app", "create_metrics_app"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_PAGE = files("logcap.api").joinpath("status_page.html").read_bytes()


class AdminBackend(ChaosBackend, Protocol):
    """What the API needs from the running agent. Each call is bounded in time."""

    admin_token: str

    def health(self) -> tuple[str, dict[str, Any]]: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...

    def stats(self) -> dict[str, Any]: ...

    def effective_config(self) -> dict[str, Any]: ...

    def positions(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def dlq_stats(self) -> dict[str, Any]: ...

    def dlq_reprocess(self, filters: dict[str, Any]) -> dict[str, Any]: ...

    def reload_config(self, trigger: str) -> tuple[int, dict[str, Any]]: ...


def _metrics_response() -> Response:
    return Response(exposition(), mimetype=None, content_type=PROMETHEUS_CONTENT_TYPE)


def create_metrics_app() -> Flask:
    """The app served on ``metrics_port``: just ``/metrics``."""
    app = Flask("logcap-metrics")
    app.add_url_rule("/metrics", "metrics", _metrics_response)
    return app


def create_app(backend: AdminBackend) -> Flask:
    app = Flask("logcap-admin")

    def bounded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except BackendTimeout as exc:
            return jsonify({"error": "timeout", "detail": str(exc)}), 503

    def authorized() -> Response | None:
        token = backend.admin_token
        if not token:
            return _error(403, "admin_token is not configured: mutating endpoints are disabled")
        sent = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            resp = _error(401, "missing or wrong admin token")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="logcap"'
            return resp
        return None

    @app.get("/")
    def status_page() -> Any:
        resp = Response(STATUS_PAGE, content_type="text/html; charset=utf-8")
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'")
        return resp

    @app.get("/status.json")
    def status() -> Any:
        return bounded(lambda: jsonify(backend.status()))

    @app.get("/health")
    def health() -> Any:
        def call() -> Any:
            state, components = backend.health()
            return jsonify({"status": state, "components": components}), http_status(state)

        return bounded(call)

    @app.get("/ready")
    def ready() -> Any:
        def call() -> Any:
            is_ready, body = backend.ready()
            return jsonify(body), (200 if is_ready else 503)

        return bounded(call)

    @app.get("/stats")
    def stats() -> Any:
        return bounded(lambda: jsonify(backend.stats()))

    @app.get("/config")
    def config() -> Any:
        return bounded(lambda: jsonify(backend.effective_config()))

    @app.post("/config/reload")
    def reload_config() -> Any:
        refused = authorized()
        if refused is not None:
            return refused
        status, body = backend.reload_config("POST /config/reload")
        return jsonify(body), status

    @app.get("/positions")
    def positions() -> Any:
        return bounded(lambda: jsonify(backend.positions()))

    app.add_url_rule("/metrics", "metrics", _metrics_response)
    register_dlq_routes(app, backend, authorized)
    register_chaos_routes(app, backend, authorized)

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        return _error(404, f"no such endpoint: {request.path}")

    @app.errorhandler(405)
    def bad_method(_: Any) -> Any:
        return _error(405, f"method {request.method} not allowed on {request.path}")

    return app


def _error(status: int, detail: str) -> Response:
    resp = jsonify({"error": detail})
    resp.status_code = status
    return resp
