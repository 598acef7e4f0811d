"""What an HTTP outcome of a Loki push means for the batch.

:func:`classify` maps a status code (or a transport error) to an :class:`Outcome`:

==============================================  =========  ===================
outcome                                          kind       reason
==============================================  =========  ===================
any 2xx                                          SUCCESS    ``ok``
429 Too Many Requests                            RETRY      ``rate_limited``
408 Request Timeout                              RETRY      ``timeout``
5xx except 501                                   RETRY      ``server_error``
a timeout (connect or read)                      RETRY      ``timeout``
a connection error (refused, reset, DNS, TLS)    RETRY      ``connection``
any other exception raised while sending         RETRY      ``transport_error``
413 Content Too Large                            SPLIT      ``too_large``
400 Bad Request                                  REJECT     ``bad_request``
401 Unauthorized                                 REJECT     ``unauthorized``
403 Forbidden                                    REJECT     ``forbidden``
404 Not Found                                    REJECT     ``not_found``
other 4xx (422: a request without streams)       REJECT     ``client_error``
501 Not Implemented                              REJECT     ``not_implemented``
1xx / 3xx (a redirect that was not followed)     REJECT     ``unexpected_status``
==============================================  =========  ===================

``reason`` is always one of :data:`REASONS` (a closed set, for metric labels). A RETRY outcome
carries ``retry_after_s`` when the answer had a ``Retry-After`` header, either delta-seconds or
an HTTP-date (relative to ``now``, never negative). ``message`` keeps Loki's reason text, stripped
and cut to 1 KiB of UTF-8, for the DLQ and logs; for an exception it starts with the cause in
a few words (:func:`short_error`: ``connection refused``, ``timeout (read timed out)``), then
the exception's type and text.

408 is retried, as Vector does: the server gave up waiting for the body, nothing was ingested.
Note that Loki answers 400 when *part* of a request was invalid, after ingesting the valid part;
the rejected batch then goes to the DLQ whole.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_MESSAGE_BYTES",
    "REASONS",
    "Outcome",
    "OutcomeKind",
    "classify",
    "parse_retry_after",
    "short_error",
]

MAX_MESSAGE_BYTES = 1024

REASONS: frozenset[str] = frozenset(
    {
        "ok",
        "rate_limited",
        "server_error",
        "timeout",
        "connection",
        "transport_error",
        "too_large",
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "client_error",
        "not_implemented",
        "unexpected_status",
    }
)


class OutcomeKind(enum.Enum):
    """What the sink does with the batch."""

    SUCCESS = "success"  # delivered: ack it
    RETRY = "retry"  # transient: send the same batch again after a backoff
    SPLIT = "split"  # too large: send it again as two halves
    REJECT = "reject"  # permanent: to the DLQ with the reason, never retried


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one push attempt."""

    kind: OutcomeKind
    reason: str
    status: int | None = None
    retry_after_s: float | None = None
    message: str = ""

    @property
    def retryable(self) -> bool:
        return self.kind is OutcomeKind.RETRY


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, val in headers.items():
        if key.lower() == lower:
            return val
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unreadable.

    Delta-seconds (``"120"``, also ``"1.5"``) or an HTTP-date, taken relative to ``now``
    (wall-clock seconds since the epoch; :func:`time.time` by default). Never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a UTC time with no zone information
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _truncate(text: str) -> str:
    text = text.strip()
    if len(text) * 4 <= MAX_MESSAGE_BYTES:
        return text
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return text
    return encoded[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, TimeoutError):  # socket.timeout is an alias of it
        return True
    # The sink's PushTimeout is one; requests' Timeout family and urllib3's TimeoutError
    # (for exceptions raised by other callers) are found by name, without importing either.
    return any("Timeout" in name for name in _class_names(error))


def _is_connection_error(error: BaseException) -> bool:
    names = _class_names(error)
    if "RequestException" in names:
        # Every requests exception is an OSError; only these mean the connection failed. (The
        # sink's transport raises PushConnectionError, a ConnectionError, for all of them.)
        return bool(names & {"ConnectionError", "SSLError", "ProxyError", "ChunkedEncodingError"})
    return isinstance(error, OSError) or bool(names & {"ProtocolError", "NewConnectionError"})


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\"()\[\]]+)")
_TIMED_OUT = re.compile(r"(read|connect(?:ion)?) timed out", re.IGNORECASE)
SHORT_ERROR_CHARS = 120


def short_error(error: BaseException) -> str:
    """The cause of a transport error in a few words: the OS error's text when the message
    has one (``connection refused``, ``name or service not known``), ``timeout`` with what
    timed out, else the start of the exception's text."""
    text = str(error)
    found = _ERRNO_TEXT.search(text)
    cause = found.group(1).strip().rstrip(".").lower() if found else ""
    if _is_timeout(error):
        timed_out = _TIMED_OUT.search(text)
        what = timed_out.group(0).lower() if timed_out else cause
        return f"timeout ({what})" if what else "timeout"
    return cause or text[:SHORT_ERROR_CHARS] or type(error).__name__


def _reason_for_4xx(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
    }.get(status, "client_error")


def classify(
    status: int | None,
    headers: Mapping[str, str] | None = None,
    body_text: str = "",
    error: BaseException | None = None,
    *,
    now: float | None = None,
) -> Outcome:
    """Classify one push attempt: an HTTP ``status`` with its ``headers`` and body, or the
    ``error`` raised before any status arrived (``status`` is then None)."""
    if status is None:
        if error is None:
            raise ValueError("classify needs a status code or an error")
        message = _truncate(f"{short_error(error)}: {type(error).__name__}: {error}")
        if _is_timeout(error):
            return Outcome(OutcomeKind.RETRY, "timeout", None, None, message)
        if _is_connection_error(error):
            return Outcome(OutcomeKind.RETRY, "connection", None, None, message)
        return Outcome(OutcomeKind.RETRY, "transport_error", None, None, message)

    message = _truncate(body_text or "")
    if 200 <= status < 300:
        return Outcome(OutcomeKind.SUCCESS, "ok", status, None, message)
    if status == 413:
        return Outcome(OutcomeKind.SPLIT, "too_large", status, None, message)
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
    if status == 429:
        return Outcome(OutcomeKind.RETRY, "rate_limited", status, retry_after, message)
    if status == 408:
        return Outcome(OutcomeKind.RETRY, "timeout", status, retry_after, message)
    if status == 501:
        return Outcome(OutcomeKind.REJECT, "not_implemented", status, None, message)
    if 500 <= status < 600:
        return Outcome(OutcomeKind.RETRY, "server_error", status, retry_after, message)
    if 400 <= status < 500:
        return Outcome(OutcomeKind.REJECT, _reason_for_4xx(status), status, None, message)
    return Outcome(OutcomeKind.REJECT, "unexpected_status", status, None, message)
