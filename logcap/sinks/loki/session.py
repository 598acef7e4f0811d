"""The HTTP transport a Loki sink pushes through: urllib3, configured once for its URL.

:class:`PushSession` sends a sink's requests (the pushes, and the probe's ``GET /ready``) with
a urllib3 pool manager made when the sink starts; everything requests used to work out per
request is worked out here once, for the push URL (it never changes while the sink runs):

- **Direct, without a proxy**: one kept-alive connection per origin, the exchange on it
  logcap's own (:class:`~logcap.sinks.loki.direct.DirectConnection`: the same bytes out, the
  same answers and failures as through the pool below, in a third of the instructions).
- **Pool**, through a proxy: a kept-alive pool of :data:`POOL_CONNECTIONS` connections per host
  (not blocking: the sink's one thread uses one), no urllib3 retries (the sink's own retry
  policy applies).
  What the pool manager's ``urlopen`` works out for each request is worked out at a URL's
  first request (:class:`Route`: the pool, the request target, a forwarding proxy's headers),
  with the ``Retry`` and ``Timeout`` objects; each request goes to the pool's ``urlopen``,
  which sends the same bytes the manager's did (a test compares them).
- **Redirects are not followed.** A 3xx answer is the answer: the sink classifies it
  (rejected, ``unexpected_status``, with the ``Location`` in the reason). Loki does not
  redirect a push; a gateway that does (``http`` to ``https``, another host) shows a URL to
  configure, and the credentials never go to a host the operator did not name. (requests
  followed them: a POST as a GET after 301/302/303, which Loki answers 405; as a POST after
  307/308, without the credentials on another host.)
- **Credentials**: ``basic`` (username + password or ``password_file``) or ``bearer`` (token or
  ``token_file``) as the ``Authorization`` header; files are read here, once. With neither
  (``type: none``), a netrc entry for the URL's host applies, found with requests' rules
  (:func:`netrc_credentials`: ``$NETRC``, else ``~/.netrc``, else ``~/_netrc``; the host's
  entry or the ``default`` one; an unreadable or malformed file is ignored). Unlike requests, a
  netrc entry never replaces a configured bearer token.
- **Proxy**: from the environment, with requests' rules (:func:`environment_proxy`): the
  standard library's :func:`urllib.request.getproxies` (``http_proxy``, ``https_proxy``,
  ``all_proxy``, lower case first), bypassed for the host by ``no_proxy`` as requests did
  (:func:`bypasses_proxy`: ``*``, a host or domain suffix, ``host:port``, an IPv4 address or
  CIDR network, then :func:`urllib.request.proxy_bypass`). The proxy is a
  :class:`urllib3.ProxyManager` (forwarding for ``http``, a ``CONNECT`` tunnel for ``https``),
  its URL's credentials sent as ``Proxy-Authorization``; a ``socks*`` proxy needs PySocks, as
  in requests (without it every request fails as a transport error, retried).
- **TLS**: ``verify`` (certificates checked against certifi's CA bundle, as requests did, or
  ``tls.ca_file``: a file, or a directory of hashed certificates) and an optional client
  certificate. ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, replaces the default bundle
  when ``verify`` is on without a ``ca_file``; it does not override an explicit
  ``tls.ca_file`` or ``tls.verify: false`` (requests itself let it win over both; the sink's
settled requests session already did not). A CA or
  certificate file that cannot be loaded fails each connection as a TLS error (retried); the
  bundle is read when a connection is made, never for plain ``http``.
- **Timeout**: the sink's ``timeout`` for the connection and for each read.

**Failures.** Whatever urllib3 raises for a request is raised as one of three exceptions,
mapped as requests mapped urllib3's, so :func:`~logcap.sinks.loki.response.classify` gives the
same outcome: :class:`PushTimeout` (a :class:`TimeoutError`: connect or read timed out),
:class:`PushConnectionError` (a :class:`ConnectionError`: refused, reset, name resolution,
TLS, the proxy, a broken answer or a body that failed mid-send) and
:class:`PushTransportError` (anything else: an answer that cannot be decoded, an invalid
header or URL). Their text is urllib3's (with the OS error, e.g. ``[Errno 111] Connection
refused``), their ``__cause__`` urllib3's exception. The one difference from requests: a read
that times out in the answer's *body* is a timeout (requests said a connection error).

**Answers** are read whole (:class:`Answer`), their headers parsed without the ``email``
package (:mod:`~logcap.sinks.loki.response_head`, the same result as http.client's): the
status, the headers (names in lower case, repeated ones joined with ``", "``), and the body
decoded (a ``Content-Encoding`` undone) as text in the ``Content-Type``'s charset, UTF-8 when
none is named or it is unknown, bad bytes replaced (requests took ISO-8859-1 for a ``text/*``
answer without one and guessed for others; Loki answers ``text/plain; charset=utf-8``). Sent
with each request: the request's headers over the session's (``User-Agent``,
``Authorization``), ``Host``, ``Content-Length``, and http.client's ``Accept-Encoding:
identity`` (requests also sent ``Accept: */*``, ``Connection: keep-alive`` and
``Accept-Encoding: gzip, deflate``; HTTP/1.1 keeps the connection alive without it).

Against requests 2.34 as the sink used it (a settled session): one push of a ready 600-line
request costs 0.78 M instructions instead of 1.91 M (``bench/loki_push.py --instructions``),
and at 10k lines/s (~16 pushes/s, ``bench/steady_rate.py``) the sink's thread went from 5.8
to 3.9 % of a core and the process's RSS from 55.5 to 52.0 MiB: the agent no longer imports
requests, charset_normalizer or idna (docs/ARCHITECTURE.md, "The Loki sink's transport").
The routes and the lean header parsing then took a push from 0.78 M to 0.56 M instructions.
"""

from __future__ import annotations

import base64
import ipaddress
import netrc
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
import urllib3
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry, parse_url
from urllib3.util.proxy import connection_requires_http_tunnel

from logcap.sinks.loki.direct import DirectConnection
from logcap.sinks.loki.request import USER_AGENT
from logcap.sinks.loki.response_head import lean_connection_class

__all__ = [
    "POOL_CONNECTIONS",
    "Answer",
    "PushConnectionError",
    "PushSession",
    "PushTimeout",
    "PushTransportError",
    "Route",
    "TransportFailure",
    "basic_authorization",
    "bypasses_proxy",
    "decoded_text",
    "environment_proxy",
    "netrc_credentials",
    "read_secret",
    "transport_failure",
]

POOL_CONNECTIONS = 4
NETRC_FILES = ("~/.netrc", "~/_netrc")
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
NO_RETRIES = Retry(total=False, redirect=False)
"""What urllib3 makes of ``retries=False, redirect=False`` for each request: made once."""


class TransportFailure(Exception):
    """A request that got no answer; its text is urllib3's, its ``__cause__`` urllib3's
    exception."""


class PushTimeout(TransportFailure, TimeoutError):
    """Connecting, or a read of the answer, took longer than the timeout."""


class PushConnectionError(TransportFailure, ConnectionError):
    """The connection failed: refused, reset, name resolution, TLS, the proxy, a broken
    answer, a body that could not be sent whole."""


class PushTransportError(TransportFailure):
    """Any other failure of a request: an answer that cannot be decoded, an invalid header
    value (a secret file with a line break inside) or URL, a missing SOCKS dependency."""


@dataclass(frozen=True, slots=True)
class Route:
    """How a :class:`PushSession` sends to one URL (:meth:`PushSession._route`): the pool,
    the request target, the headers every request to it starts from."""

    pool: HTTPConnectionPool
    target: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer read whole: ``headers`` by lower-case name, ``text`` the decoded body."""

    status: int
    headers: dict[str, str]
    text: str


def read_secret(value: str, file_path: str) -> str:
    """The secret itself, or the stripped content of ``file_path``."""
    if value:
        return value
    with open(file_path, encoding="utf-8") as fh:
        return fh.read().strip()


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic authentication: the credentials in Latin-1 as
    requests sent them, or in UTF-8 (RFC 7617) when Latin-1 cannot hold them."""
    pair = f"{username}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def netrc_credentials(url: str) -> tuple[str, str] | None:
    """(login, password) of the netrc entry for ``url``'s host, with requests' rules: the file
    is ``$NETRC`` when set, else the first of ``~/.netrc`` and ``~/_netrc`` that exists; the
    host's entry, else the file's ``default``; the login is the account when it has no login.
    None without a file, an entry, or when the file cannot be read or parsed."""
    named = os.environ.get("NETRC")
    candidates = (named,) if named is not None else NETRC_FILES
    path = next((p for p in map(os.path.expanduser, candidates) if os.path.exists(p)), None)
    host = urlsplit(url).hostname
    if path is None or host is None:
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if not entry or not any(entry):
        return None
    login, account, password = entry
    return (login or account or "", password or "")


def bypasses_proxy(url: str, no_proxy: str | None = None) -> bool:
    """Whether ``url`` goes direct, by ``no_proxy`` (``$no_proxy``, else ``$NO_PROXY``, when
    not given), with requests' rules: a URL without a host; for an IPv4 host, an entry that is
    the address or a CIDR network holding it; for a name, an entry (leading dots ignored) that
    is the host, ``host:port``, or a domain they end in; then the standard library's
    :func:`urllib.request.proxy_bypass` (``*``; case-insensitive names)."""
    if no_proxy is None:
        no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return True
    entries = [entry for entry in (no_proxy or "").replace(" ", "").split(",") if entry]
    if _is_ipv4(host):
        address = ipaddress.IPv4Address(host)
        for entry in entries:
            network = _ipv4_network(entry)
            if (address in network) if network is not None else entry == host:
                return True
    else:
        with_port = f"{host}:{parts.port}" if parts.port else host
        for entry in entries:
            name = entry.lstrip(".")
            if name in (host, with_port) or host.endswith("." + name) \
                    or with_port.endswith("." + name):
                return True
    try:
        return bool(urllib.request.proxy_bypass(host))
    except (TypeError, OSError):
        return False


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _ipv4_network(entry: str) -> ipaddress.IPv4Network | None:
    """The network of a ``no_proxy`` entry written ``a.b.c.d/bits`` (1 to 32 bits), else
    None."""
    address, slash, bits = entry.partition("/")
    if not slash or not bits.isdigit() or not 1 <= int(bits) <= 32 or not _is_ipv4(address):
        return None
    return ipaddress.IPv4Network(f"{address}/{bits}", strict=False)


def environment_proxy(url: str) -> str | None:
    """The proxy URL the environment names for ``url`` (its scheme's, else ``all_proxy``), or
    None when there is none or ``no_proxy`` bypasses it (:func:`bypasses_proxy`)."""
    if bypasses_proxy(url):
        return None
    proxies = urllib.request.getproxies()
    scheme = urlsplit(url).scheme
    return proxies.get(scheme) or proxies.get("all") or None


def transport_failure(error: Exception) -> TransportFailure:
    """The :class:`TransportFailure` for what urllib3 raised, as requests mapped it: proxy,
    TLS, connection and protocol errors are connection errors (a failed new connection too,
    though urllib3 makes it a kind of connect timeout), connect and read timeouts timeouts,
    anything else a transport error."""
    kind: type[TransportFailure]
    if isinstance(error, ProxyError | SSLError | NewConnectionError | ProtocolError):
        kind = PushConnectionError
    elif isinstance(error, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        kind = PushTimeout
    elif isinstance(error, OSError):
        kind = PushConnectionError
    else:
        kind = PushTransportError
    failure = kind(_text(error))
    failure.__cause__ = error
    return failure


def _text(error: Exception) -> str:
    """An exception's text; for urllib3's (connection, message) pairs, the message."""
    args = error.args
    if len(args) == 2 and isinstance(args[1], str) and not isinstance(args[0], str):
        return args[1]
    return str(error) or type(error).__name__


def decoded_text(data: bytes, content_type: str) -> str:
    """``data`` as text in the ``charset`` a ``Content-Type`` value names, UTF-8 when it names
    none or an unknown one; bad bytes replaced."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                return data.decode(value.strip().strip("'\""), "replace")
            except LookupError:
                break
    return data.decode("utf-8", "replace")


class PushSession:
    """The transport to one Loki (its push and ``/ready`` URLs), set up for ``url`` with the
    sink's ``auth`` and ``tls`` settings (``sinks.loki.auth``, ``sinks.loki.tls``); see the
    module docstring. ``auth`` is the (username, password) the basic ``Authorization`` header
    carries (configured or from netrc), ``headers`` what every request sends unless it sets
    the same name, ``proxy`` the proxy URL or None, ``verify`` False, True or the CA path."""

    def __init__(self, url: str, auth: Any, tls: Any) -> None:
        self.headers: dict[str, str] = {"User-Agent": USER_AGENT}
        self.auth: tuple[str, str] | None = None
        if auth.type == "basic":
            self.auth = (auth.username, read_secret(auth.password, auth.password_file))
        elif auth.type == "bearer":
            self.headers["Authorization"] = f"Bearer {read_secret(auth.token, auth.token_file)}"
        else:
            self.auth = netrc_credentials(url)
        if self.auth is not None:
            self.headers["Authorization"] = basic_authorization(*self.auth)
        self.verify: bool | str = tls.ca_file if (tls.verify and tls.ca_file) else bool(tls.verify)
        if self.verify is True:
            self.verify = next(filter(None, map(os.environ.get, CA_BUNDLE_VARIABLES)), True)
        self.cert: tuple[str, str] | None = (tls.cert_file, tls.key_file) if tls.cert_file \
            else None
        self.proxy = environment_proxy(url)
        self._unusable: str | None = None
        self.manager = self._manager()
        self._routes: dict[str, Route] = {}
        self._timeouts: dict[float, urllib3.Timeout] = {}
        # without a proxy: each URL's origin connection and request target
        self._direct: dict[str, tuple[DirectConnection, str]] = {}
        self._origins: dict[tuple[str, str, int | None], DirectConnection] = {}

    def _tls_settings(self) -> dict[str, Any]:
        """The pools' TLS keywords (urllib3 applies them to ``https`` pools only)."""
        if self.verify is False:
            settings: dict[str, Any] = {"cert_reqs": "CERT_NONE"}
        else:
            ca = certifi.where() if self.verify is True else self.verify
            settings = {"cert_reqs": "CERT_REQUIRED",
                        "ca_cert_dir" if os.path.isdir(ca) else "ca_certs": ca}
        if self.cert is not None:
            settings["cert_file"], settings["key_file"] = self.cert
        return settings

    def _manager(self) -> urllib3.PoolManager:
        pools = {"num_pools": POOL_CONNECTIONS, "maxsize": POOL_CONNECTIONS, "block": False,
                 **self._tls_settings()}
        proxy = self.proxy
        if proxy is None:
            return urllib3.PoolManager(**pools)
        parts = urlsplit(proxy)
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if proxy.lower().startswith("socks"):
            try:
                from urllib3.contrib.socks import SOCKSProxyManager
            except ImportError:
                self._unusable = "Missing dependencies for SOCKS support (PySocks)."
                return urllib3.PoolManager(**pools)
            return SOCKSProxyManager(proxy, username=user or None, password=password or None,
                                     **pools)
        headers = {"Proxy-Authorization": basic_authorization(user, password)} if user \
            else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **pools)

    def request(self, method: str, url: str, body: bytes | None,
                headers: Mapping[str, str], timeout: float) -> Answer:
        """Send one request and read its answer whole; raise a :class:`TransportFailure` when
        no answer came (see the module docstring)."""
        if self._unusable is not None:
            raise PushTransportError(self._unusable)
        if self.proxy is None:
            return self._request_direct(method, url, body, headers, timeout)
        route = self._routes.get(url)
        if route is None or route.pool.pool is None:  # first use, or the pool was closed
            route = self._routes[url] = self._route(url)
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts[timeout] = urllib3.Timeout(connect=timeout, read=timeout)
        try:
            resp = route.pool.urlopen(
                method, route.target, body=body, headers={**route.headers, **headers},
                retries=NO_RETRIES, redirect=False, assert_same_host=False, timeout=limits)
        except (HTTPError, OSError, ValueError) as exc:  # ValueError: an invalid header value
            raise transport_failure(exc) from exc
        answer_headers = {name.lower(): value for name, value in resp.headers.itermerged()}
        return Answer(resp.status, answer_headers,
                      decoded_text(resp.data, answer_headers.get("content-type", "")))

    def direct_connection(self, url: str) -> DirectConnection | None:
        """The connection requests to ``url`` went through, without a proxy (None: none yet,
        or through the proxy's pool)."""
        direct = self._direct.get(url)
        return direct[0] if direct is not None else None

    def _request_direct(self, method: str, url: str, body: bytes | None,
                        headers: Mapping[str, str], timeout: float) -> Answer:
        """:meth:`request` without a proxy: through the URL's origin's
        :class:`~logcap.sinks.loki.direct.DirectConnection` (the same bytes out, the same
        answer and failures as through the pool)."""
        direct = self._direct.get(url)
        if direct is None:
            parts = parse_url(url)
            origin = (parts.scheme or "http", parts.host or "", parts.port)
            connection = self._origins.get(origin)
            if connection is None:
                connection = self._origins[origin] = DirectConnection(
                    *origin, self._tls_settings())
            direct = self._direct[url] = (connection, parts.request_uri)
        connection, target = direct
        try:
            status, answer_headers, data = connection.request(
                method, target, body, {**self.headers, **headers}, timeout)
        except (HTTPError, OSError, ValueError) as exc:  # ValueError: an invalid header value
            raise transport_failure(exc) from exc
        return Answer(status, answer_headers,
                      decoded_text(data, answer_headers.get("content-type", "")))

    def _route(self, url: str) -> Route:
        """How requests to ``url`` go out, worked out as the pool manager works it out for
        each request (its ``urlopen``): the pool of the URL's origin (through the proxy when
        there is one), the request target (the absolute URL when an ``http`` request is
        forwarded by a proxy, else path and query) with a forwarding proxy's ``Accept`` and
        ``Host`` headers before the session's. The pool answers with
        :class:`~logcap.sinks.loki.response_head.LeanHTTPResponse`."""
        manager = self.manager
        parts = parse_url(url)
        pool = manager.connection_from_host(parts.host, port=parts.port, scheme=parts.scheme)
        pool.ConnectionCls = lean_connection_class(pool.ConnectionCls)
        headers = dict(self.headers)
        forwarded = manager.proxy is not None and not connection_requires_http_tunnel(
            manager.proxy, manager.proxy_config, parts.scheme)
        if forwarded:
            headers = {"Accept": "*/*", **({"Host": parts.netloc} if parts.netloc else {}),
                       **headers}
        target = parts._replace(fragment=None).url if forwarded else parts.request_uri
        return Route(pool, target, headers)

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout: float) -> Answer:
        return self.request("POST", url, body, headers, timeout)

    def get(self, url: str, headers: Mapping[str, str], timeout: float) -> Answer:
        return self.request("GET", url, None, headers, timeout)

    def close(self) -> None:
        """Close the pooled connections."""
        self._routes.clear()
        self.manager.clear()
        for connection in self._origins.values():
            connection.close()
