"""The Loki push session: environment settings resolved once, as requests would per request."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from requests.adapters import HTTPAdapter

from logcap.sinks.loki.session import PushAdapter, push_session, settle_environment
from tests.loki_receiver import LokiReceiver

URL = "http://loki.example:3100/loki/api/v1/push"
NO_AUTH = SimpleNamespace(type="none")


def tls(verify: bool = True, ca_file: str = "") -> SimpleNamespace:
    return SimpleNamespace(verify=verify, ca_file=ca_file, cert_file="", key_file="")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def per_request_settings(url: str) -> dict[str, object]:
    """What a plain, environment-trusting session would use for one request to ``url``."""
    session = requests.Session()
    return dict(session.merge_environment_settings(url, {}, None, None, None))


def test_the_environment_is_read_once_with_requests_rules(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("http_proxy", "http://proxy.example:8080")
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    session = push_session(URL, NO_AUTH, tls())
    expected = per_request_settings(URL)
    assert session.trust_env is False
    assert session.proxies == expected["proxies"] == {"http": "http://proxy.example:8080"}
    assert session.verify == expected["verify"] == "/etc/ssl/bundle.pem"


def test_no_proxy_bypasses_the_proxy_for_the_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("http_proxy", "http://proxy.example:8080")
    clean_env.setenv("no_proxy", "loki.example")
    session = push_session(URL, NO_AUTH, tls())
    assert session.proxies == per_request_settings(URL)["proxies"] == {}


def test_a_configured_ca_file_or_no_verification_is_kept(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CURL_CA_BUNDLE", "/etc/ssl/bundle.pem")
    assert push_session(URL, NO_AUTH, tls(ca_file="/mine.pem")).verify == "/mine.pem"
    assert push_session(URL, NO_AUTH, tls(verify=False)).verify is False


def test_a_netrc_entry_applies_unless_the_sink_has_credentials(
        clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine loki.example login u password p\n")
    netrc.chmod(0o600)
    assert push_session(URL, NO_AUTH, tls()).auth == ("u", "p")
    basic = SimpleNamespace(type="basic", username="me", password="pw", password_file="")
    assert push_session(URL, basic, tls()).auth == ("me", "pw")


def test_a_session_that_does_not_trust_the_environment_is_left_alone(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("http_proxy", "http://proxy.example:8080")
    session = requests.Session()
    session.trust_env = False
    settle_environment(session, URL)
    assert session.proxies == {} and session.verify is True and session.auth is None


def test_the_pool_key_is_what_requests_works_out(clean_env: pytest.MonkeyPatch) -> None:
    request = requests.Request("POST", "https://loki.example/loki/api/v1/push").prepare()
    ours, theirs = PushAdapter(), HTTPAdapter()
    for verify, cert in ((True, None), ("/etc/ssl/bundle.pem", ("c.pem", "k.pem")), (False, None)):
        expected = theirs.build_connection_pool_key_attributes(request, verify, cert)
        assert ours.build_connection_pool_key_attributes(request, verify, cert) == expected
        assert ours.build_connection_pool_key_attributes(request, verify, cert) == expected


def test_pushes_go_out_through_the_settled_session(clean_env: pytest.MonkeyPatch) -> None:
    receiver = LokiReceiver().start()
    try:
        session = push_session(receiver.url + "/loki/api/v1/push", NO_AUTH, tls())
        for _ in range(3):
            resp = session.get(receiver.url + "/ready", timeout=5)
            assert resp.status_code == 200
            resp.close()
    finally:
        receiver.stop()
