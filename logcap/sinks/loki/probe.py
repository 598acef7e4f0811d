"""``check-config --connect`` for a Loki sink: one request that changes nothing on Loki.

:func:`probe` asks ``GET <base>/ready`` (Loki's readiness endpoint, on the same HTTP port as
the push API; the base is the configured URL without ``/loki/api/v1/push``) once, through the
sink's own session (its credentials, TLS settings, proxy and ``X-Scope-OrgID``), with the
sink's ``timeout``; a redirect is not followed (its ``Location`` is shown). A push, even of
zero streams, is not used: Loki answers an empty push with an error on some versions, and a
real one would store a line.

The answer is a :class:`ProbeResult`: ``ok`` for a 2xx; otherwise the HTTP status with the first
line of Loki's text (a 503 while its ring is not ready yet; 401/403 for credentials a gateway
refused; 404 where a gateway does not expose ``/ready``, so the push URL is not verified), or
the cause of a transport error in a few words (``connection refused``, ``timeout (...)``, a TLS
error).
"""

from __future__ import annotations

from dataclasses import dataclass

from logcap.sinks.loki.response import short_error
from logcap.sinks.loki.service import PUSH_PATH, LokiService, answer_text
from logcap.sinks.loki.session import TransportFailure

__all__ = ["READY_PATH", "ProbeResult", "probe"]

READY_PATH = "/ready"
ANSWER_CHARS = 200


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found; ``detail`` is one line for the operator (no secrets)."""

    ok: bool
    detail: str


def probe(service: LokiService, shown_url: str) -> ProbeResult:
    """Ask ``service``'s Loki ``/ready`` once; ``shown_url`` is the URL as the operator may
    see it (credentials redacted), used in ``detail``."""
    base = service.url[: -len(PUSH_PATH)] if service.url.endswith(PUSH_PATH) else service.url
    shown = shown_url[: -len(PUSH_PATH)] if shown_url.endswith(PUSH_PATH) else shown_url
    headers = {"X-Scope-OrgID": service.cfg.tenant_id} if service.cfg.tenant_id else {}
    try:
        answer = service.session.get(base + READY_PATH, headers, service.cfg.timeout)
    except TransportFailure as exc:
        return ProbeResult(False, f"GET {shown}{READY_PATH}: {short_error(exc)}")
    status = answer.status
    text = (answer_text(answer).strip().splitlines() or [""])[0][:ANSWER_CHARS]
    shown_answer = f"GET {shown}{READY_PATH}: HTTP {status}" + (f" {text}" if text else "")
    if 200 <= status < 300:
        return ProbeResult(True, shown_answer)
    if status == 404:
        shown_answer += " (no /ready at this URL, a gateway? the push URL is not verified)"
    return ProbeResult(False, shown_answer)
