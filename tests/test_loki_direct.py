"""The Loki sink's direct HTTP/1.1 exchange (``logcap/sinks/loki/direct.py``) over real
sockets: connections kept alive, made again when the server closed them (while idle, or by
its answer), answers framed as http.client frames them, bodies decoded as urllib3 decodes
them. Failures as urllib3 reported them are in ``tests/test_loki_transport.py``."""

from __future__ import annotations

import gzip
import socket
import zlib
from collections.abc import Callable

import pytest
import zstandard
from urllib3.exceptions import DecodeError, ProtocolError

from logcap.sinks.loki.direct import MAX_HEADS, DirectConnection, decode_body, host_header
from tests.actor_kit import wait_until
from tests.test_loki_transport import Server, answering_each, serve

__all__ = ["serve"]  # the fixture, used by name


def _direct(server: Server) -> DirectConnection:
    return DirectConnection("http", "127.0.0.1", server.sock.getsockname()[1], {})


def test_one_connection_carries_every_request_and_the_head_is_made_once_per_headers(
        serve: Callable[..., Server]) -> None:
    server = serve(answering_each)
    direct = _direct(server)
    headers = {"User-Agent": "logcap", "Content-Type": "application/x-protobuf"}
    for body in (b"one", b"second body", b""):
        status, answer, data = direct.request("POST", "/loki/api/v1/push", body, headers, 2)
        assert (status, answer["date"], data) == (204, "now", b"")
    assert (direct.connects, direct.requests) == (1, 3)
    port = server.sock.getsockname()[1]
    assert server.heads[1] == (f"POST /loki/api/v1/push HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                               "Accept-Encoding: identity\r\nContent-Length: 11\r\n"
                               "User-Agent: logcap\r\nContent-Type: application/x-protobuf"
                               ).encode()
    assert server.heads[2].count(b"Content-Length: 0") == 1  # a POST without a body says so
    status, _, _ = direct.request("GET", "/ready", None, {"Host": "loki.example"}, 2)
    assert status == 204
    assert server.heads[3] == b"GET /ready HTTP/1.1\r\nAccept-Encoding: identity\r\n" \
                              b"Host: loki.example"  # a Host of its own replaces the URL's
    direct.close()


def test_more_distinct_heads_than_kept_are_made_again(serve: Callable[..., Server]) -> None:
    server = serve(answering_each)
    direct = _direct(server)
    for n in range(MAX_HEADS + 5):
        assert direct.request("POST", "/p", b"x", {"X-N": str(n)}, 2)[0] == 204
    assert server.heads[-1].endswith(f"X-N: {MAX_HEADS + 4}".encode())
    direct.close()


def closing_after_each(server: Server, conn: socket.socket) -> None:
    """Answer one request, saying the connection closes, then close it."""
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")


def test_an_answer_that_closes_the_connection_makes_the_next_request_connect_again(
        serve: Callable[..., Server]) -> None:
    direct = _direct(serve(closing_after_each))
    for _ in range(3):
        assert direct.request("GET", "/ready", None, {}, 2)[::2] == (200, b"ok")
    assert (direct.connects, direct.requests) == (3, 3)


def idle_closer(server: Server, conn: socket.socket) -> None:
    """Answer one request keeping the connection alive, then close it while it is idle."""
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    conn.shutdown(socket.SHUT_RDWR)


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_request(
        serve: Callable[..., Server]) -> None:
    server = serve(idle_closer)
    direct = _direct(server)
    assert direct.request("POST", "/p", b"a", {}, 2)[0] == 204
    wait_until(lambda: not direct._conn.is_connected, what="the server's close arrived")
    assert direct.request("POST", "/p", b"b", {}, 2)[0] == 204  # not a failure
    assert direct.connects == 2 and len(server.heads) == 2


def framed(body: bytes) -> Callable[[Server, socket.socket], None]:
    def handle(server: Server, conn: socket.socket) -> None:
        server.read_head(conn)
        conn.sendall(body)
    return handle


@pytest.mark.parametrize(("answer", "status", "body"), [
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nbad",
     500, b"bad"),
    (b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nline\r\n2;x=y\r\n s\r\n"
     b"0\r\nTrailer: t\r\n\r\n", 400, b"line s"),
    (b"HTTP/1.0 429 Slow\r\n\r\nto the end", 429, b"to the end"),
])
def test_answers_are_framed_as_http_client_frames_them(
        serve: Callable[..., Server], answer: bytes, status: int, body: bytes) -> None:
    direct = _direct(serve(framed(answer)))
    assert direct.request("POST", "/p", b"x", {}, 2)[::2] == (status, body)


def test_repeated_answer_headers_are_joined(serve: Callable[..., Server]) -> None:
    direct = _direct(serve(framed(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n\r\n")))
    assert direct.request("POST", "/p", b"x", {}, 2)[1]["x-a"] == "1, 2"


def test_a_broken_answer_closes_the_connection(serve: Callable[..., Server]) -> None:
    direct = _direct(serve(framed(b"HELLO")))
    with pytest.raises(ProtocolError, match="Connection aborted"):
        direct.request("POST", "/p", b"x", {}, 2)
    assert direct._conn is None


def test_bodies_are_decoded_as_urllib3_decodes_them() -> None:
    text = b"entry too far behind" * 20
    assert decode_body(gzip.compress(text), "gzip") == text
    assert decode_body(gzip.compress(text) + gzip.compress(b"!"), "x-gzip") == text + b"!"
    assert decode_body(zlib.compress(text), "deflate") == text
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw.compress(text) + raw.flush(), "Deflate") == text
    assert decode_body(zstandard.ZstdCompressor().compress(text), "zstd") == text
    assert decode_body(gzip.compress(zlib.compress(text)), "deflate, gzip") == text
    assert decode_body(b"as is", "br-or-unknown") == b"as is"
    with pytest.raises(DecodeError, match="content-encoding: gzip, but failed"):
        decode_body(b"not gzip", "gzip")


def test_the_host_header_leaves_out_the_default_port() -> None:
    assert host_header("loki", None, 80) == "loki"
    assert host_header("loki", 443, 443) == "loki"
    assert host_header("loki", 3100, 80) == "loki:3100"
    assert host_header("::1", 3100, 80) == "[::1]:3100"
    assert host_header("[::1]", 80, 80) == "[::1]"


def test_a_line_break_in_a_header_value_is_refused_before_anything_is_sent(
        serve: Callable[..., Server]) -> None:
    server = serve(answering_each)
    direct = _direct(server)
    with pytest.raises(ValueError, match="Invalid header value"):
        direct.request("POST", "/p", b"x", {"Authorization": "Bearer a\r\nX-Evil: 1"}, 2)
    assert direct.connects == 0 and server.heads == []
