"""The Loki sink over real sockets: every transport failure classified as it was with requests
(the outcome, reason and cause below are what requests 2.34 gave), redirects not followed, a
proxy, and TLS with a generated certificate."""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from logcap.messages import Outcome
from logcap.sinks.base import Verdict
from logcap.sinks.loki.probe import probe
from logcap.sinks.loki.service import LokiService
from logcap.sinks.loki.session import (
    PushConnectionError,
    PushSession,
    PushTimeout,
    transport_failure,
)
from tests.test_loki_service import batch, loki_cfg

Handler = Callable[[socket.socket], None]
NO_ANSWER_S = 5


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


class Server:
    """A TCP server on 127.0.0.1 that runs ``handler`` on each connection in a thread;
    ``wrap`` makes it a TLS server."""

    def __init__(self, handler: Handler, wrap: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.handler, self.wrap = handler, wrap
        self.heads: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.wrap else "http"
        return f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def read_head(self, conn: socket.socket) -> bytes:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        self.heads.append(buf.partition(b"\r\n\r\n")[0])
        return buf

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Callable[[Server, socket.socket], None],
              wrap: ssl.SSLContext | None = None) -> Server:
        server = Server(lambda conn: handler(server, conn), wrap)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def answer(head: bytes, body: bytes = b"") -> Callable[[Server, socket.socket], None]:
    def handle(server: Server, conn: socket.socket) -> None:
        server.read_head(conn)
        conn.sendall(head + b"\r\n\r\n" + body)
        time.sleep(0.2)
    return handle


def reset(server: Server, conn: socket.socket) -> None:
    server.read_head(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def silent(server: Server, conn: socket.socket) -> None:
    server.read_head(conn)
    time.sleep(NO_ANSWER_S)


def plain_http_at_once(server: Server, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    time.sleep(0.2)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deliver(url: str, lines: int = 1, **cfg: object) -> Verdict:
    return LokiService(loki_cfg(url, timeout=cfg.pop("timeout", "2s"), **cfg)).deliver(
        batch(lines))


SCENARIOS: dict[str, tuple[Callable[[Server, socket.socket], None] | None, str, str]] = {
    # name: (handler, the reason, how the detail starts)
    "refused": (None, "connection", "connection refused: "),
    "reset before an answer": (reset, "connection", "('Connection aborted.', "),
    "read timeout": (silent, "timeout", "timeout (read timed out): "),
    "not HTTP": (answer(b"HELLO THERE"), "connection", "('Connection aborted.', BadStatusLine"),
    "body cut short": (answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 100", b"abc"),
                       "connection", ""),
    "bad chunk": (answer(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked", b"zz\r\n"),
                  "connection", ""),
    "undecodable gzip": (answer(b"HTTP/1.1 500 Oops\r\nContent-Encoding: gzip\r\n"
                                b"Content-Length: 5", b"notgz"),
                         "transport_error", "('Received response with content-encoding: gzip"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_transport_failures_are_retried_with_the_reason_requests_gave(
        serve: Callable[..., Server], name: str) -> None:
    handler, reason, start = SCENARIOS[name]
    url = serve(handler).url if handler else f"http://127.0.0.1:{closed_port()}"
    verdict = deliver(url, timeout="0.5s" if name == "read timeout" else "2s")
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, reason)
    assert verdict.detail.startswith(start), verdict.detail


def test_a_body_that_fails_mid_send_is_a_connection_error(serve: Callable[..., Server]) -> None:
    verdict = deliver(serve(reset).url, lines=100_000, batch_bytes="64MiB")
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")


def test_a_name_that_does_not_resolve_is_a_connection_error() -> None:
    verdict = deliver("http://no-such-host.invalid:3100")
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")


def test_a_connect_timeout_is_a_timeout() -> None:
    with socket.socket() as full:  # a listener whose accept queue is full drops new SYNs
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        time.sleep(0.2)
        started = time.monotonic()
        verdict = deliver(f"http://127.0.0.1:{full.getsockname()[1]}", timeout="0.5s")
        for filler in fillers:
            filler.close()
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "timeout")
    assert verdict.detail.startswith("timeout: PushTimeout: Connection to 127.0.0.1 timed out")
    assert time.monotonic() - started < 5


def test_what_urllib3_raises_maps_as_requests_mapped_it() -> None:
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NewConnectionError,
        ProxyError,
        ReadTimeoutError,
    )

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] x")
    assert isinstance(transport_failure(refused), PushConnectionError)  # not a timeout
    assert isinstance(transport_failure(ConnectTimeoutError(None, "timed out")), PushTimeout)
    assert isinstance(transport_failure(ReadTimeoutError(None, "/", "Read timed out.")),
                      PushTimeout)
    through_proxy = ProxyError("Unable to connect to proxy", ConnectTimeoutError(None, "t"))
    assert isinstance(transport_failure(through_proxy), PushConnectionError)
    assert isinstance(transport_failure(ConnectionResetError(104, "reset")), PushConnectionError)
    assert str(transport_failure(ConnectTimeoutError(None, "Connection timed out."))) \
        == "Connection timed out."


def test_an_invalid_header_value_is_a_transport_error(serve: Callable[..., Server],
                                                      tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("two\nlines\n")
    verdict = deliver(serve(answer(b"HTTP/1.1 204 No Content")).url,
                      auth={"type": "bearer", "token_file": str(token)})
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "transport_error")


def test_a_redirect_is_rejected_with_its_location_not_followed(
        serve: Callable[..., Server]) -> None:
    elsewhere = serve(answer(b"HTTP/1.1 204 No Content"))
    redirecting = serve(answer(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: "
                               + elsewhere.url.encode() + b"/x\r\nContent-Length: 0"))
    verdict = deliver(redirecting.url, auth={"type": "bearer", "token": "secret"})
    assert (verdict.outcome, verdict.reason) == (Outcome.REJECTED, "unexpected_status")
    assert verdict.detail.startswith(f"redirect to {elsewhere.url}/x not followed")
    assert elsewhere.heads == []  # nothing, and no credentials, went there


def test_the_probe_shows_a_redirect_and_a_transport_failure(
        serve: Callable[..., Server]) -> None:
    redirecting = serve(answer(b"HTTP/1.1 301 Moved\r\nLocation: https://x/ready\r\n"
                               b"Content-Length: 0"))
    found = probe(LokiService(loki_cfg(redirecting.url)), redirecting.url)
    assert not found.ok and "HTTP 301 redirect to https://x/ready not followed" in found.detail
    refused = f"http://127.0.0.1:{closed_port()}"
    found = probe(LokiService(loki_cfg(refused)), refused)
    assert not found.ok and found.detail == f"GET {refused}/ready: connection refused"


def proxy_answering(status: bytes) -> Callable[[Server, socket.socket], None]:
    return answer(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0")


def test_pushes_go_through_the_environment_proxy_with_its_credentials(
        serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = serve(proxy_answering(b"204 No Content"))
    monkeypatch.setenv("http_proxy", proxy.url.replace("//", "//us%40er:p%3Ass@"))
    verdict = deliver("http://loki.example:3100")
    assert verdict.outcome is Outcome.DELIVERED
    head = proxy.heads[0].decode()
    assert head.startswith("POST http://loki.example:3100/loki/api/v1/push HTTP/1.1")
    assert "Proxy-Authorization: Basic dXNAZXI6cDpzcw==" in head  # us@er:p:ss
    assert "\r\nHost: loki.example:3100\r\n" in head and "\r\nAccept: */*\r\n" in head


def answering_each(server: Server, conn: socket.socket) -> None:
    """Answer 204 to each request of a kept-alive connection (a body of ``Content-Length``)."""
    rest = b""
    while True:
        while b"\r\n\r\n" not in rest:
            chunk = conn.recv(65536)
            if not chunk:
                return
            rest += chunk
        head, _, rest = rest.partition(b"\r\n\r\n")
        server.heads.append(head)
        length = next((int(line.partition(b":")[2]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += conn.recv(65536)
        rest = rest[length:]
        conn.sendall(b"HTTP/1.1 204 No Content\r\nDate: now\r\n\r\n")


@pytest.mark.parametrize("proxied", [False, True])
def test_a_request_goes_out_as_through_the_pool_manager(
        serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch, proxied: bool) -> None:
    """The session's prepared route (pool, target, headers) sends the very head that the
    pool manager's ``urlopen`` sends for the URL, direct and through a forwarding proxy."""
    server = serve(answering_each)
    url = "http://loki.example:3100/loki/api/v1/push?x=1" if proxied \
        else server.url + "/loki/api/v1/push"
    if proxied:
        monkeypatch.setenv("http_proxy", server.url.replace("//", "//me:pw@"))
    session = PushSession(url, SimpleNamespace(type="bearer", token="t0k", token_file=""),
                          loki_cfg(url).tls)
    headers = {"Content-Type": "application/x-protobuf", "X-Scope-OrgID": "team"}
    for _ in range(2):  # the second goes through the route made by the first
        assert session.post(url, b"body", headers, 2).status == 204
    session.manager.urlopen("POST", url, body=b"body", headers={**session.headers, **headers},
                            redirect=False, retries=False, timeout=2)
    assert len(server.heads) == 3 and server.heads[0] == server.heads[1] == server.heads[2]
    session.close()


def test_a_refused_or_broken_proxy_is_a_connection_error(
        serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    for url in ("http://loki.example:3100", "https://loki.example:3100"):
        verdict = deliver(url, timeout="1s")
        assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")
        assert verdict.detail.startswith("connection refused: ")
    monkeypatch.setenv("http_proxy", serve(answer(b"HELLO")).url)
    verdict = deliver("http://loki.example:3100", timeout="1s")
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")


def test_a_socks_proxy_without_pysocks_fails_each_push_as_a_transport_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import socks  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PySocks is installed")
    monkeypatch.setenv("http_proxy", "socks5://127.0.0.1:1080")
    verdict = deliver("http://loki.example:3100")
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "transport_error")
    assert "SOCKS" in verdict.detail


# -- TLS ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loki-test")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    where = tmp_path_factory.mktemp("tls")
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_server(serve: Callable[..., Server], certificate: tuple[Path, Path],
               client_ca: Path | None = None) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return serve(answer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0"), context)


def test_tls_is_verified_against_the_ca_file_or_the_ca_bundle_variable(
        serve: Callable[..., Server], certificate: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = tls_server(serve, certificate)
    ca = str(certificate[0])
    unknown = deliver(server.url)  # certifi's bundle does not hold it
    assert (unknown.outcome, unknown.reason) == (Outcome.RETRY, "connection")
    assert "CERTIFICATE_VERIFY_FAILED" in unknown.detail
    assert deliver(server.url, tls={"ca_file": ca}).outcome is Outcome.DELIVERED
    assert deliver(server.url, tls={"verify": False}).outcome is Outcome.DELIVERED
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    assert deliver(server.url).outcome is Outcome.DELIVERED


def test_a_plain_http_answer_to_tls_is_a_connection_error(serve: Callable[..., Server]) -> None:
    url = serve(plain_http_at_once).url.replace("http:", "https:")
    verdict = deliver(url)
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")
    assert "WRONG_VERSION_NUMBER" in verdict.detail


def test_a_client_certificate_is_presented(serve: Callable[..., Server],
                                           certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = tls_server(serve, certificate, client_ca=cert)
    settings = {"ca_file": str(cert)}
    refused = deliver(server.url, tls=settings)
    assert (refused.outcome, refused.reason) == (Outcome.RETRY, "connection")
    verdict = deliver(server.url, tls={**settings, "cert_file": str(cert), "key_file": str(key)})
    assert verdict.outcome is Outcome.DELIVERED


def test_a_missing_ca_file_fails_each_connection_as_a_tls_error(
        serve: Callable[..., Server], certificate: tuple[Path, Path], tmp_path: Path) -> None:
    verdict = deliver(tls_server(serve, certificate).url,
                      tls={"ca_file": str(tmp_path / "absent.pem")})
    assert (verdict.outcome, verdict.reason) == (Outcome.RETRY, "connection")
