"""The ``requests`` session a Loki sink pushes through, with its environment read once.

:func:`push_session` configures a session for one push URL:

- a kept-alive connection pool (:data:`POOL_CONNECTIONS` connections, no urllib3 retries: the
  sink's own retry policy applies);
- credentials: ``basic`` (username + password or ``password_file``) as the session's auth, or
  ``bearer`` (token or ``token_file``) as its ``Authorization`` header; files are read here,
  once;
- TLS: ``verify`` with an optional ``ca_file``, and an optional client certificate.

**The environment, once.** With ``trust_env`` (its default) requests reads the environment on
every request: the proxy variables (walking all of ``os.environ``, twice), ``~/.netrc``, and
``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``; about a third of its per-push CPU. The push URL
never changes, so :func:`settle_environment` resolves these for it when the session is made and
turns ``trust_env`` off, with requests' own rules and functions:

- proxies: :func:`requests.utils.get_environ_proxies` for the URL (so ``no_proxy`` is honoured
  through ``should_bypass_proxies``); as in requests, they win over the session's own;
- credentials: :func:`requests.utils.get_netrc_auth` for the URL when the session has no auth
  (as requests: a netrc entry then applies, after any ``Authorization`` header);
- CA bundle: ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, when ``verify`` is plainly on.
  Unlike requests, the variable does not override an explicit ``tls.ca_file`` or
  ``tls.verify: false`` (requests lets it win over a session's ``verify``, so those settings
  had no effect while it was set).

What changes against requests' per-request reading: a change of the environment or of
``~/.netrc`` after the sink started is seen at its next start (a reload that changes the sink
recreates it), and a redirect to another host gets no environment proxies or netrc entry.

:class:`PushAdapter` also works the connection-pool key (scheme, host, port and TLS settings,
an ``os.path.isdir`` of the CA path) out once per URL and TLS settings, not on every push.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies, get_netrc_auth

if TYPE_CHECKING:  # the stubs' names for the two dicts
    from requests.adapters import _HostParams, _PoolKwargs

__all__ = ["POOL_CONNECTIONS", "PushAdapter", "push_session", "read_secret",
           "settle_environment"]

POOL_CONNECTIONS = 4
_POOL_KEYS_KEPT = 16


def read_secret(value: str, file_path: str) -> str:
    """The secret itself, or the stripped content of ``file_path``."""
    if value:
        return value
    with open(file_path, encoding="utf-8") as fh:
        return fh.read().strip()


class PushAdapter(HTTPAdapter):
    """An :class:`HTTPAdapter` that remembers each (URL, verify, cert)'s pool key attributes
    (the few URLs a sink uses: its push and ready endpoints)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._pool_keys: dict[tuple[Any, ...], tuple[_HostParams, _PoolKwargs]] = {}

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[_HostParams, _PoolKwargs]:
        key = (request.url, verify, cert)
        known = self._pool_keys.get(key)
        if known is None:
            known = super().build_connection_pool_key_attributes(request, verify, cert)
            if len(self._pool_keys) >= _POOL_KEYS_KEPT:
                self._pool_keys.clear()
            self._pool_keys[key] = known
        host_params, pool_kwargs = known
        return host_params.copy(), pool_kwargs.copy()


def settle_environment(session: requests.Session, url: str) -> None:
    """Resolve for ``url`` what requests reads from the environment per request, then stop it
    reading (see the module docstring); no effect on a session that does not trust it."""
    if not session.trust_env:
        return
    session.proxies = {**session.proxies, **get_environ_proxies(url)}
    if not session.auth:
        session.auth = get_netrc_auth(url)
    if session.verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    session.trust_env = False


def push_session(url: str, auth: Any, tls: Any,
                 session: requests.Session | None = None) -> requests.Session:
    """``session`` (a new one by default) configured to push to ``url`` with the sink's
    ``auth`` and ``tls`` settings (``sinks.loki.auth``, ``sinks.loki.tls``)."""
    session = session or requests.Session()
    adapter = PushAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_CONNECTIONS,
                          max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if auth.type == "basic":
        session.auth = (auth.username, read_secret(auth.password, auth.password_file))
    elif auth.type == "bearer":
        token = read_secret(auth.token, auth.token_file)
        session.headers["Authorization"] = f"Bearer {token}"
    session.verify = tls.ca_file if (tls.verify and tls.ca_file) else bool(tls.verify)
    if tls.cert_file:
        session.cert = (tls.cert_file, tls.key_file)
    settle_environment(session, url)
    return session
