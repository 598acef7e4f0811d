"""Where the CLI finds the running agent's admin API: ``--url`` and ``--token`` if given, else
the config's ``server`` section (``-c``; a wildcard host is reached on loopback), else
:data:`DEFAULT_URL` and ``$LOGCAP_ADMIN_TOKEN``."""

from __future__ import annotations

import os

from logcap.config import load_config

__all__ = ["DEFAULT_URL", "TOKEN_ENV", "admin_endpoint"]

DEFAULT_URL = "http://127.0.0.1:8401"
TOKEN_ENV = "LOGCAP_ADMIN_TOKEN"
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def admin_endpoint(url: str | None, token: str | None,
                   config_path: str | None) -> tuple[str, str]:
    """``(base URL without a trailing slash, token)``; may raise ``ConfigError``."""
    token = token or os.environ.get(TOKEN_ENV, "")
    if config_path and (not url or not token):
        server = load_config(config_path, os.environ).server
        host = "127.0.0.1" if server.host in _WILDCARD_HOSTS else server.host
        url = url or f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"
        token = token or server.admin_token
    return (url or DEFAULT_URL).rstrip("/"), token
