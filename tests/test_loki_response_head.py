"""The answer's head read without the email package: http.client (its ``parse_headers`` and
``HTTPResponse``) is the oracle, on generated header blocks and whole answers."""

from __future__ import annotations

import http.client
import io

import pytest
import urllib3
from hypothesis import example, given, settings
from hypothesis import strategies as st
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HeaderParsingError
from urllib3.util.response import assert_header_parsing

from logcap.sinks.loki.response_head import (
    MAX_HEADERS,
    LeanHTTPResponse,
    lean_connection_class,
    parse_header_block,
    read_header_block,
)

NAMES = st.sampled_from([b"Content-Type", b"content-length", b"Date", b"Retry-After",
                         b"X-Odd!#$%&'*+-.^_`|~", b"Transfer-Encoding", b"Connection", b"From",
                         b"Keep-Alive", b""])
VALUES = st.sampled_from([b"text/plain; charset=utf-8", b"  5", b"\t120 ", b"", b"   ",
                          b"chunked", b"close", b"keep-alive", b"caf\xe9 \xff", b"a\rb",
                          b"multipart/mixed", b" Message/rfc822", b"x:y:z", b"10"])
ENDS = st.sampled_from([b"\r\n", b"\n"])
PLAIN = st.builds(lambda n, v, e: n + b":" + v + e, NAMES, VALUES, ENDS)
ODD = st.sampled_from([b" folded\r\n", b"\tfolded\r\n", b"From someone\r\n", b"no colon\r\n",
                       b"Name : spaced\r\n", b"a\rb: c\r\n", b"cut: off"])
BLOCKS = st.builds(
    lambda lines, end: [*lines, end],
    st.lists(st.one_of(PLAIN, PLAIN, PLAIN, ODD), max_size=8),
    st.sampled_from([b"\r\n", b"\n", b""]))


def oracle(lines: list[bytes]) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(b"".join(lines)))


def urllib3_verdict(message: http.client.HTTPMessage) -> str:
    try:
        assert_header_parsing(message)
    except HeaderParsingError as exc:
        return type(exc).__name__
    return "ok"


@settings(max_examples=600, deadline=None)
@given(BLOCKS)
@example([b"Date: Thu, 03 Dec 2026 05:40:59 GMT\r\n", b"\r\n"])
@example([b"Content-Type: multipart/mixed\r\n", b"\r\n"])
@example([b"A: 1\r\n", b" 2\r\n", b"\r\n"])
def test_a_header_block_parses_as_the_email_parser_parses_it(raw: list[bytes]) -> None:
    lines = read_header_block(io.BytesIO(b"".join(raw)))  # as an answer's head is read
    ours, theirs = parse_header_block(lines), oracle(lines)
    assert type(ours) is type(theirs)
    assert ours.items() == theirs.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert urllib3_verdict(ours) == urllib3_verdict(theirs)
    for name in ("content-length", "transfer-encoding", "connection", "retry-after"):
        assert ours.get(name) == theirs.get(name)


def test_plain_lines_are_read_without_the_email_parser(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the email parser ran")

    monkeypatch.setattr("email.parser.Parser.parsestr", refuse)
    message = parse_header_block([b"Content-Type: text/plain; charset=utf-8\r\n",
                                  b"Content-Length:  12\r\n", b"Date: x\r\n", b"\r\n"])
    assert message.items() == [("Content-Type", "text/plain; charset=utf-8"),
                               ("Content-Length", "12"), ("Date", "x")]
    with pytest.raises(AssertionError, match="email parser"):
        parse_header_block([b"A: 1\r\n", b" folded\r\n", b"\r\n"])


def test_the_limits_are_http_clients() -> None:
    with pytest.raises(http.client.LineTooLong):
        read_header_block(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_header_block(io.BytesIO(b"A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n"))


class FakeSocket:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))  # type: ignore[arg-type]


STATUS_LINES = st.sampled_from([b"HTTP/1.1 204 No Content", b"HTTP/1.1 200 OK",
                                b"HTTP/1.0 200 OK", b"HTTP/1.1 429 Too Many",
                                b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 503  Busy ",
                                b"HTTP/1.1 101 Switching"])
FRAMING = st.lists(st.sampled_from([b"Content-Length: 5", b"Content-Length: -1",
                                    b"Content-Length: x", b"Transfer-Encoding: chunked",
                                    b"Connection: close", b"Connection: keep-alive",
                                    b"Keep-Alive: timeout=5", b"Proxy-Connection: keep-alive",
                                    b"Retry-After: 3", b"X: a\r\n b"]), max_size=4)
BODIES = st.sampled_from([b"hello", b"5\r\nhello\r\n0\r\n\r\n", b""])


def answer_of(data: bytes, method: str, cls: type[http.client.HTTPResponse]
              ) -> tuple[object, ...]:
    response = cls(FakeSocket(data), method=method)  # type: ignore[arg-type]
    try:
        response.begin()
    except (http.client.HTTPException, ValueError) as exc:
        return (type(exc), str(exc))
    try:
        body: object = response.read()
    except (http.client.HTTPException, ValueError) as exc:
        body = type(exc)
    return (response.status, response.reason, response.version, response.chunked,
            response.length, response.will_close, response.msg.items(), body)


@settings(max_examples=400, deadline=None)
@given(st.booleans(), STATUS_LINES, FRAMING, BODIES, st.sampled_from(["POST", "GET", "HEAD"]))
def test_an_answer_begins_as_http_client_begins_it(continued: bool, status: bytes,
                                                   framing: list[bytes], body: bytes,
                                                   method: str) -> None:
    head = b"\r\n".join([status, *framing]) + b"\r\n\r\n"
    data = (b"HTTP/1.1 100 Continue\r\nX: y\r\n\r\n" if continued else b"") + head + body
    assert answer_of(data, method, LeanHTTPResponse) == \
        answer_of(data, method, http.client.HTTPResponse)


@pytest.mark.parametrize("data", [b"HTTP/2 200 OK\r\n\r\n", b"HELLO\r\n\r\n", b""])
def test_a_bad_status_line_fails_as_in_http_client(data: bytes) -> None:
    assert answer_of(data, "POST", LeanHTTPResponse) == \
        answer_of(data, "POST", http.client.HTTPResponse)


def test_a_lean_connection_class_is_the_class_with_the_lean_answer() -> None:
    for cls in (HTTPConnection, HTTPSConnection):
        lean = lean_connection_class(cls)
        assert issubclass(lean, cls) and lean.response_class is LeanHTTPResponse
        assert lean_connection_class(cls) is lean and lean_connection_class(lean) is lean
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 1)
    assert pool.ConnectionCls is HTTPConnection  # urllib3's own classes are left alone
