"""One HTTP/1.1 exchange at a time over a kept-alive connection to Loki, without a proxy.

urllib3's pool ``urlopen`` and http.client's request writing cost most of a push's CPU at a
steady pace (a push of 500 lines at 10,000 lines/s: ~0.6 ms of the sink's ~1 ms, mostly
Python steps in cold caches). :class:`DirectConnection` does the same exchange with fewer
steps, on a urllib3 connection (urllib3 still connects: name resolution, socket options,
TLS with its verification, and the errors it raises for them):

- **Request**: the head is written as the pool's ``urlopen`` writes it (a test compares the
  bytes): request line, ``Host`` (without a default port), ``Accept-Encoding: identity``,
  ``Content-Length`` when there is a body, then the headers in their order; names and values
  checked as http.client checks them (``ValueError`` for a line break in a value). Head and
  body go out in one ``sendall``.
- **Answer**: read by :class:`~logcap.sinks.loki.response_head.LeanHTTPResponse`
  (http.client's framing: ``100 Continue`` skipped, a sized, chunked or closing body), then
  its ``Content-Encoding`` undone as urllib3 undoes it (``gzip``, ``x-gzip``, ``deflate``,
  ``zstd``; an unknown coding is left as it is).
- **Reuse**: before a request the connection is checked as urllib3 checks a pooled one
  (closed, or readable while idle: the server closed it): then a new one is made. After an
  answer that closes the connection (``Connection: close``, HTTP/1.0, a body ending with the
  connection), and after any failure, the connection is closed.
- **Failures** are urllib3's exceptions with its texts, so
  :func:`~logcap.sinks.loki.session.transport_failure` maps them as before: the connection's
  own (``NewConnectionError``, ``ConnectTimeoutError``, ``NameResolutionError``,
  ``SSLError``), ``ProtocolError("Connection aborted.", ...)`` when sending or the answer's
  head fails, ``ProtocolError("Connection broken: ...")`` when its body does,
  ``ReadTimeoutError`` for a read that timed out, ``DecodeError`` for a body that does not
  decode.

Through a proxy the session keeps urllib3's pool manager (forwarding, ``CONNECT`` tunnels,
SOCKS).
"""

from __future__ import annotations

import http.client
import re
import ssl
import zlib
from collections.abc import Mapping
from typing import Any

import urllib3.connection
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError
from urllib3.util.ssl_match_hostname import CertificateError

from logcap.sinks.loki.response_head import LeanHTTPResponse

__all__ = ["MAX_HEADS", "DirectConnection", "decode_body", "host_header"]

_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
"""http.client's check of a header name."""
_ILLEGAL_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
"""http.client's check of a header value: a line break not followed by a fold."""
_EXPECTING_BODY = frozenset({"POST", "PUT", "PATCH"})
"""Methods sent with ``Content-Length: 0`` when they have no body (as http.client does)."""
MAX_HEADS = 64
"""Request heads kept made (per method, target and headers)."""


def _failure(error: BaseException, target: str, timeout: float, aborted: str) -> Exception:
    """urllib3's exception for what sending or reading raised: a timeout, a TLS error, else
    a protocol error with ``aborted`` as its text (the pool's and the response's words)."""
    if isinstance(error, TimeoutError):
        return ReadTimeoutError(None, target,  # type: ignore[arg-type]  # no pool here
                                f"Read timed out. (read timeout={timeout})")
    if isinstance(error, ssl.SSLError):
        return SSLError(error)
    return ProtocolError(aborted, error)


def host_header(host: str, port: int | None, default_port: int) -> str:
    """The ``Host`` value http.client sends: the host (an IPv6 address in brackets), with the
    port unless it is the scheme's default."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port in (None, default_port) else f"{host}:{port}"


def _header_lines(headers: Mapping[str, str]) -> list[bytes]:
    lines = []
    for name, value in headers.items():
        raw_name = name.encode("ascii")
        raw_value = value.encode("latin-1")
        if not _LEGAL_NAME(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        if _ILLEGAL_VALUE(raw_value):
            raise ValueError(f"Invalid header value {raw_value!r}")
        lines.append(b"%s: %s\r\n" % (raw_name, raw_value))
    return lines


def decode_body(data: bytes, content_encoding: str) -> bytes:
    """``data`` with its content codings undone, last applied first, as urllib3 does; an
    unknown coding leaves the data as it is. Raises urllib3's ``DecodeError``."""
    codings = [c.strip() for c in content_encoding.lower().split(",") if c.strip()]
    if not codings or any(c not in _DECODERS for c in codings):
        return data
    try:
        for coding in reversed(codings):
            data = _DECODERS[coding](data)
    except (zlib.error, ValueError, OSError) as exc:
        raise DecodeError("Received response with content-encoding: "
                          f"{content_encoding}, but failed to decode it.", exc) from exc
    return data


def _gunzip(data: bytes) -> bytes:
    out = []
    while data:  # members one after the other, as urllib3 reads them
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(inflater.decompress(data))
        data = inflater.unused_data
        if not inflater.eof:
            break
    return b"".join(out)


def _inflate(data: bytes) -> bytes:
    try:  # zlib-wrapped, as the name says, else raw deflate (what many servers send)
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)


def _unzstd(data: bytes) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))


_DECODERS = {"gzip": _gunzip, "x-gzip": _gunzip, "deflate": _inflate, "zstd": _unzstd}


class DirectConnection:
    """Requests to one origin (``scheme``, ``host``, ``port``) over one kept-alive urllib3
    connection made with ``connection_kw`` (its TLS settings); see the module docstring."""

    def __init__(self, scheme: str, host: str, port: int | None,
                 connection_kw: Mapping[str, Any]) -> None:
        https = scheme == "https"
        self._cls = urllib3.connection.HTTPSConnection if https \
            else urllib3.connection.HTTPConnection
        self.host = host.strip("[]")
        self.port = port or (443 if https else 80)
        self._kw = dict(connection_kw) if https else {}
        self._host_line = b"Host: %s\r\n" % host_header(
            host, port, 443 if https else 80).encode("idna")
        self._conn: Any = None
        self.connects = 0  # connections made
        self.requests = 0  # requests sent
        self._timeout: float | None = None  # the connection's socket's
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]],
                          tuple[bytes, bytes]] = {}

    def request(self, method: str, target: str, body: bytes | None,
                headers: Mapping[str, str], timeout: float) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read its answer whole: the status, the headers by lower-case
        name (repeated ones joined with ``", "``) and the body, decoded."""
        head = self._head(method, target, body, headers)
        conn = self._connected(timeout)
        try:
            if timeout != self._timeout:
                conn.sock.settimeout(timeout)
                self._timeout = timeout
            self.requests += 1
            try:
                conn.sock.sendall(head + body if body else head)
                response = LeanHTTPResponse(conn.sock, method=method)
                response.begin()
            except (OSError, http.client.HTTPException) as exc:
                raise _failure(exc, target, timeout, "Connection aborted.") from exc
            try:
                data = response.read()
            except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a
                # chunk size that is not hex
                raise _failure(exc, target, timeout, f"Connection broken: {exc!r}") from exc
            if response.will_close:
                self.close()
        except BaseException:
            self.close()
            raise
        answer_headers: dict[str, str] = {}
        for name, value in response.headers.items():
            key = name.lower()
            previous = answer_headers.get(key)
            answer_headers[key] = value if previous is None else f"{previous}, {value}"
        encoding = answer_headers.get("content-encoding")
        if encoding and data:
            data = decode_body(data, encoding)
        return response.status, answer_headers, data

    def _head(self, method: str, target: str, body: bytes | None,
              headers: Mapping[str, str]) -> bytes:
        """The request's head, its parts around ``Content-Length`` made once per method,
        target and headers (a sink sends the same ones again and again)."""
        key = (method, target, tuple(headers.items()))
        parts = self._heads.get(key)
        if parts is None:
            if len(self._heads) >= MAX_HEADS:
                self._heads.clear()
            names = {name.lower() for name in headers}
            start = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target.encode("ascii"))]
            if "host" not in names:
                start.append(self._host_line)
            if "accept-encoding" not in names:
                start.append(b"Accept-Encoding: identity\r\n")
            parts = self._heads[key] = (b"".join(start),
                                        b"".join(_header_lines(headers)) + b"\r\n")
        before, after = parts
        if body is None and method not in _EXPECTING_BODY:
            return before + after
        return b"%sContent-Length: %d\r\n%s" % (before, len(body or b""), after)

    def _connected(self, timeout: float) -> Any:
        conn = self._conn
        if conn is not None and not conn.is_connected:  # closed by the server while idle
            self.close()
            conn = None
        if conn is None:
            conn = self._cls(self.host, self.port, timeout=timeout, **self._kw)
            self.connects += 1
            try:
                conn.connect()
            except (ssl.SSLError, CertificateError) as exc:  # as the pool wraps them
                conn.close()
                raise SSLError(exc) from exc
            except BaseException:
                conn.close()
                raise
            self._conn, self._timeout = conn, timeout
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
