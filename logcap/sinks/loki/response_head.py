"""The head of an HTTP answer (status line and headers) read without the ``email`` package.

http.client reads an answer's header block with :func:`http.client.parse_headers`, which hands
it to the ``email`` package's feed parser: for the two or three headers of a Loki answer
(``204`` with ``Date``, or ``text/plain`` with its length) that parser costs about a sixth of
a push's CPU. :class:`LeanHTTPResponse` is http.client's response with the header block parsed
by :func:`parse_header_block` instead, which gives the very same
:class:`http.client.HTTPMessage` (the same ``(name, value)`` pairs, in order, no defects) for
a block of plain ``Name: value`` lines, and hands any other block to the ``email`` parser, as
http.client does: a continuation line, a bare CR inside a line, a name that is not a token
(``From ...``, an empty name), a block cut off by the end of the connection, or a
content type that names ``multipart`` or ``message`` (the feed parser would look for parts in the
empty body and note defects that urllib3 reports). Everything else of the answer (status line,
``100 Continue`` skipped, chunked or sized body, whether the connection stays open) is read as
http.client's :meth:`~http.client.HTTPResponse.begin` reads it, with the same limits (a header
line of at most 65,536 bytes, at most 100 headers).

urllib3 stays the transport: :func:`lean_connection_class` makes, from a pool's connection
class (plain, TLS, SOCKS), the same class with this response class, and the
:class:`~logcap.sinks.loki.session.PushSession` sets it on the pools it sends through. urllib3
wraps the answer as it wraps http.client's.
"""

from __future__ import annotations

import email.parser
import http.client
import re
from functools import cache
from http.client import HTTPException, HTTPMessage, LineTooLong
from typing import Any, BinaryIO

__all__ = [
    "MAX_HEADERS",
    "MAX_LINE",
    "LeanHTTPResponse",
    "lean_connection_class",
    "parse_header_block",
    "read_header_block",
]

MAX_LINE = 65536
"""The longest header line read (http.client's limit)."""
MAX_HEADERS = 100
"""The most header lines read (http.client's limit)."""

_PLAIN_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+):([^\r\n]*)\r?\n")
"""A header line the feed parser reads as one (name, value) pair: a name of printable ASCII
without ``:``, then anything without CR or LF up to the line's end."""
_PARTED_TYPE = re.compile(r"multipart|message", re.IGNORECASE)
"""Anywhere in a ``Content-Type``: left to the ``email`` parser, which looks for parts."""


def read_header_block(fp: BinaryIO) -> list[bytes]:
    """The header lines of an answer up to and with the blank line that ends them (or ``b""``
    at the end of the connection), as http.client reads them: :class:`LineTooLong` for a line
    over :data:`MAX_LINE` bytes, :class:`HTTPException` past :data:`MAX_HEADERS` lines."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def parse_header_block(lines: list[bytes]) -> HTTPMessage:
    """The :class:`HTTPMessage` http.client's :func:`~http.client.parse_headers` makes of
    these lines (:func:`read_header_block`'s), made directly for plain ``Name: value`` lines
    ending in a blank line, else by the ``email`` parser (see the module docstring)."""
    message = HTTPMessage()
    if lines[-1]:
        match = _PLAIN_LINE.fullmatch
        for line in lines[:-1]:
            plain = match(line)
            if plain is None:
                break
            name, value = plain.groups()
            text = value.decode("iso-8859-1").lstrip(" \t")
            if name.lower() == b"content-type" and _PARTED_TYPE.search(text):
                break
            message[name.decode("ascii")] = text
        else:
            return message
    text = b"".join(lines).decode("iso-8859-1")
    parsed: HTTPMessage = email.parser.Parser(_class=HTTPMessage).parsestr(text)
    return parsed


class LeanHTTPResponse(http.client.HTTPResponse):
    """http.client's response with its header block parsed by :func:`parse_header_block`."""

    def begin(self) -> None:
        """Read the status line and the headers, and work out how the body is framed and
        whether the connection closes after it, as :meth:`http.client.HTTPResponse.begin`."""
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_header_block(self.fp)  # a 100 Continue's headers: skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = headers = parse_header_block(read_header_block(self.fp))
        encoding = headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                pass
            else:
                if self.length < 0:  # a negative length is ignored
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) \
                or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no framing: the body ends with the connection


@cache
def lean_connection_class(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (an http.client connection: urllib3's plain, TLS or SOCKS one)
    answering with :class:`LeanHTTPResponse`; one class per class."""
    if issubclass(connection_class.response_class, LeanHTTPResponse):
        return connection_class
    return type(connection_class.__name__, (connection_class,),
                {"response_class": LeanHTTPResponse,
                 "__doc__": f"{connection_class.__doc__ or ''}\n(answers read by "
                            "logcap.sinks.loki.response_head.LeanHTTPResponse)"})
