"""The Loki push transport: the environment read once, with requests' rules (requests, still
installed for the CLI, is the oracle here), credentials, TLS settings, proxies."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3
from requests.utils import get_environ_proxies, get_netrc_auth, select_proxy

from logcap.sinks.loki.request import USER_AGENT
from logcap.sinks.loki.session import (
    PushSession,
    bypasses_proxy,
    decoded_text,
    environment_proxy,
    netrc_credentials,
)
from tests.loki_receiver import LokiReceiver

URL = "http://loki.example:3100/loki/api/v1/push"
NO_AUTH = SimpleNamespace(type="none")


def tls(verify: bool = True, ca_file: str = "", cert_file: str = "",
        key_file: str = "") -> SimpleNamespace:
    return SimpleNamespace(verify=verify, ca_file=ca_file, cert_file=cert_file,
                           key_file=key_file)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "NETRC", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def requests_proxy(url: str) -> str | None:
    """The proxy requests used for ``url`` (its environment proxies, then its selection)."""
    return select_proxy(url, get_environ_proxies(url))


PROXY_ENVIRONMENTS = [
    {"http_proxy": "http://p:8080"},
    {"HTTP_PROXY": "http://upper:8080"},
    {"http_proxy": "http://lower:8080", "HTTP_PROXY": "http://upper:8080"},
    {"https_proxy": "http://tls-proxy:3128"},
    {"all_proxy": "http://all:3128"},
    {"ALL_PROXY": "http://all:3128", "http_proxy": "http://p:8080"},
    {"http_proxy": "http://p:8080", "no_proxy": "*"},
    {"http_proxy": "http://p:8080", "NO_PROXY": "loki.example"},
]
PROXIED_URLS = [URL, "https://loki.example/loki/api/v1/push", "http://10.1.2.3:3100/ready"]


@pytest.mark.parametrize("env", PROXY_ENVIRONMENTS)
def test_the_proxy_is_the_one_requests_chose(clean_env: pytest.MonkeyPatch,
                                             env: dict[str, str]) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    for url in PROXIED_URLS:
        assert environment_proxy(url) == requests_proxy(url), url


NO_PROXY_ENTRIES = ["loki.example", ".example", "example", "loki.example:3100", "loki.example:80",
                    "LOKI.EXAMPLE", " other , loki.example ", "other.example", "*",
                    "10.0.0.0/8", "10.1.2.3", "10.1.2.4", "10.1.0.0/33", "10.1.2.3:3100", ""]
NO_PROXY_URLS = [URL, "http://sub.loki.example:3100/x", "http://10.1.2.3:3100/x",
                 "http://[::1]:3100/x", "https://loki.example/x"]


@pytest.mark.parametrize("entry", NO_PROXY_ENTRIES)
def test_no_proxy_bypasses_as_in_requests(clean_env: pytest.MonkeyPatch, entry: str) -> None:
    from requests.utils import should_bypass_proxies

    clean_env.setenv("no_proxy", entry)
    for url in NO_PROXY_URLS:
        assert bypasses_proxy(url) == should_bypass_proxies(url, None), (entry, url)


def test_a_bypassed_url_goes_direct(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("http_proxy", "http://proxy.example:8080")
    assert PushSession(URL, NO_AUTH, tls()).proxy == "http://proxy.example:8080"
    clean_env.setenv("no_proxy", "loki.example")
    session = PushSession(URL, NO_AUTH, tls())
    assert session.proxy is None and not isinstance(session.manager, urllib3.ProxyManager)


def write_netrc(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


NETRC_TEXTS = [
    "machine loki.example login u password p\n",
    "machine other login o password q\ndefault login d password dp\n",
    "machine loki.example account acct password p\n",
    "machine loki.example login u\n",
    "machine other login o password q\n",
    "machine loki.example login u password\n",  # malformed
]


@pytest.mark.parametrize("text", NETRC_TEXTS)
@pytest.mark.parametrize("where", ["~/.netrc", "~/_netrc", "$NETRC"])
def test_netrc_entries_are_found_as_requests_found_them(
        clean_env: pytest.MonkeyPatch, tmp_path: Path, text: str, where: str) -> None:
    if where == "$NETRC":
        clean_env.setenv("NETRC", str(write_netrc(tmp_path / "elsewhere", text)))
    else:
        write_netrc(tmp_path / where[2:], text)
    assert netrc_credentials(URL) == get_netrc_auth(URL)


def test_netrc_lookup_order_and_a_missing_netrc_variable(clean_env: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    write_netrc(tmp_path / ".netrc", "machine loki.example login first password 1\n")
    write_netrc(tmp_path / "_netrc", "machine loki.example login second password 2\n")
    assert netrc_credentials(URL) == ("first", "1") == get_netrc_auth(URL)
    clean_env.setenv("NETRC", str(tmp_path / "absent"))
    assert netrc_credentials(URL) is None and get_netrc_auth(URL) is None


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_netrc_entry_applies_only_without_configured_credentials(
        clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_netrc(tmp_path / ".netrc", "machine loki.example login u password p\n")
    plain = PushSession(URL, NO_AUTH, tls())
    assert plain.auth == ("u", "p") and plain.headers["Authorization"] == basic("u", "p")
    configured = SimpleNamespace(type="basic", username="me", password="pw", password_file="")
    assert PushSession(URL, configured, tls()).headers["Authorization"] == basic("me", "pw")
    bearer = SimpleNamespace(type="bearer", token="t0k", token_file="")
    assert PushSession(URL, bearer, tls()).headers["Authorization"] == "Bearer t0k"


def test_basic_credentials_beyond_latin_1_are_sent_in_utf_8(clean_env: pytest.MonkeyPatch
                                                           ) -> None:
    latin = SimpleNamespace(type="basic", username="jos\u00e9", password="p", password_file="")
    sent = PushSession(URL, latin, tls()).headers["Authorization"]
    assert base64.b64decode(sent.split()[1]) == "jos\u00e9:p".encode("latin-1")
    wide = SimpleNamespace(type="basic", username="\u0436", password="\u20ac", password_file="")
    sent = PushSession(URL, wide, tls()).headers["Authorization"]
    assert base64.b64decode(sent.split()[1]).decode("utf-8") == "\u0436:\u20ac"


def pool_tls(session: PushSession) -> dict[str, object]:
    """The TLS keywords of the session's pools."""
    keys = ("cert_reqs", "ca_certs", "ca_cert_dir", "cert_file", "key_file")
    return {k: v for k, v in session.manager.connection_pool_kw.items() if k in keys}


def test_ca_bundle_variables_replace_only_the_default_bundle(clean_env: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    import certifi

    assert pool_tls(PushSession(URL, NO_AUTH, tls())) == {
        "cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
    clean_env.setenv("CURL_CA_BUNDLE", "/etc/ssl/curl.pem")
    assert PushSession(URL, NO_AUTH, tls()).verify == "/etc/ssl/curl.pem"
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests.pem")
    assert pool_tls(PushSession(URL, NO_AUTH, tls())) == {
        "cert_reqs": "CERT_REQUIRED", "ca_certs": "/etc/ssl/requests.pem"}
    assert PushSession(URL, NO_AUTH, tls(ca_file="/mine.pem")).verify == "/mine.pem"
    assert pool_tls(PushSession(URL, NO_AUTH, tls(verify=False))) == {"cert_reqs": "CERT_NONE"}
    clean_env.setenv("REQUESTS_CA_BUNDLE", "")  # empty: the next variable
    assert PushSession(URL, NO_AUTH, tls()).verify == "/etc/ssl/curl.pem"


def test_a_ca_directory_and_a_client_certificate(clean_env: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    session = PushSession(URL, NO_AUTH, tls(ca_file=str(tmp_path), cert_file="c.pem",
                                            key_file="k.pem"))
    assert pool_tls(session) == {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": str(tmp_path),
                                 "cert_file": "c.pem", "key_file": "k.pem"}


def test_answers_are_decoded_in_their_charset_with_bad_bytes_replaced() -> None:
    assert decoded_text("d\u00e9j\u00e0".encode(), "text/plain; charset=utf-8") == "d\u00e9j\u00e0"
    assert decoded_text("d\u00e9j\u00e0".encode("latin-1"),
                        'text/plain; Charset="ISO-8859-1"') == "d\u00e9j\u00e0"
    assert decoded_text(b"bad \xff", "text/plain") == "bad \ufffd"
    assert decoded_text(b"ok \xc3\xa9", "") == "ok \u00e9"
    assert decoded_text(b"ok", "text/plain; charset=no-such-codec") == "ok"


def test_requests_go_out_kept_alive_with_the_session_headers(clean_env: pytest.MonkeyPatch
                                                             ) -> None:
    with LokiReceiver() as receiver:
        session = PushSession(receiver.url + "/loki/api/v1/push", NO_AUTH, tls())
        for _ in range(3):
            answer = session.get(receiver.url + "/ready", {}, 5)
            assert answer.status == 200 and answer.text.strip() == "ready"
        connection = session.direct_connection(receiver.url + "/ready")
        assert connection is not None  # no proxy: not through urllib3's pool
        assert (connection.connects, connection.requests) == (1, 3)
        assert session.headers["User-Agent"] == USER_AGENT
        session.close()


def test_the_environment_is_not_read_again(clean_env: pytest.MonkeyPatch) -> None:
    session = PushSession(URL, NO_AUTH, tls())
    clean_env.setenv("http_proxy", "http://proxy.example:8080")
    assert session.proxy is None and os.environ["http_proxy"]
