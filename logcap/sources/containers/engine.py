"""The Docker Engine API as the container source uses it: a small boundary and its SDK version.

:class:`Engine` is the boundary (a ``typing.Protocol``; tests use a stub): list the running
containers, inspect one, open a container's raw log stream, open the event stream. Every call
raises :class:`EngineError` with a one-line reason an operator can act on (the socket is
missing, permission denied, connection refused, a timeout, an HTTP error), and
:class:`ContainerGone` when the engine says the container does not exist (404).

:class:`DockerEngine` implements it with the ``docker`` SDK over ``sources.containers.socket``.
The SDK is imported when the first engine is made (only when containers are enabled: it costs
memory). Its ``logs()`` strips the frame headers (and with them the stream of each frame), so
logs are read raw: the SDK's transport makes the request and :class:`RawStream` reads the HTTP
body as it arrives (``read1``: whatever one chunk holds, never waiting for a full buffer, so a
quiet container's last line is not held back).

Whether to follow: :meth:`Engine.follow_loses_lines` is True for podman (its ``Components``
in ``GET /version`` name the Podman Engine). Podman's followed log stream (``follow=true``, the
k8s-file log driver) loses and garbles lines when the container writes fast
(containers/podman#21914): measured with podman 4.3.1, one followed request of a container
writing 100,000 lines as fast as busybox can returned 35,743 lines with 546 gaps and line
fragments glued together, while every read without ``follow`` returned all 100,000, in order,
with the same timestamps. The follower then polls reads without ``follow``.

A :class:`RawStream` may be aborted from any thread (:meth:`RawStream.abort` shuts the socket
down): a read blocked on a hung daemon returns, which is how the source's watchdog unsticks a
follower.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from logcap.sources.containers.cursor import SinceSeconds

__all__ = ["ContainerGone", "ContainerInfo", "DockerEngine", "Engine", "EngineError",
           "LogStream", "RawStream", "StreamIdle", "describe_error", "info_from_inspect",
           "info_from_list", "is_podman"]

READ_BYTES = 64 * 1024
"""Most bytes one :meth:`RawStream.read` returns."""
CALL_TIMEOUT_S = 10.0
"""Timeout of the short calls (list, inspect, ping) and of connecting a stream."""
READ_TO_END_TIMEOUT_S = 60.0
"""Longest wait for the next bytes of a log read without ``follow`` (then the read fails and is
retried with backoff: a hung daemon)."""
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_PROJECT = "com.docker.compose.project"


class EngineError(Exception):
    """The engine could not be reached or refused a call; ``str()`` is the reason."""


class ContainerGone(EngineError):
    """The engine does not know the container (removed)."""


class StreamIdle(EngineError):
    """Nothing arrived on a stream opened with an idle timeout (the events): not a failure."""


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What the source needs of a container: identity, labels, whether it has a TTY (no frame
    headers) and whether it is running."""

    id: str
    name: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    tty: bool = False
    running: bool = True


class LogStream(Protocol):
    """A container's log (or the events) as bytes, in arrival order."""

    def read(self) -> bytes:
        """The next bytes (at most :data:`READ_BYTES`); ``b""`` at the end of the stream.
        Raises :class:`EngineError` if the connection fails."""

    def abort(self) -> None:
        """End the stream from any thread: a blocked :meth:`read` returns (``b""`` or an
        EngineError)."""

    def close(self) -> None:
        """Release the connection."""


class Engine(Protocol):
    """The calls the container source makes (see the module docstring)."""

    def listing(self) -> list[ContainerInfo]:
        """Every container, running or not (``ContainerInfo.running`` says)."""

    def inspect(self, container_id: str) -> ContainerInfo:
        """One container (raises ContainerGone if it does not exist)."""

    def logs(self, container_id: str, since: SinceSeconds | None, *, tty: bool,
             follow: bool) -> LogStream:
        """The raw log stream (``timestamps``, stdout and stderr), lines after ``since``
        (None: from the first), followed while the container runs if ``follow`` (else a read
        with nothing for the call timeout raises :class:`StreamIdle`)."""

    def follow_loses_lines(self) -> bool:
        """Whether this engine's followed log streams may lose lines (podman: see the module
        docstring), so that logs are to be polled without ``follow``."""

    def events(self, since_s: int, idle_s: float) -> LogStream:
        """The container events from ``since_s`` (whole seconds), as JSON objects; a read
        with nothing for ``idle_s`` raises :class:`StreamIdle`."""

    def close(self) -> None:
        """Release every connection."""


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed engine call (the root cause, not the SDK's wrapping)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, FileNotFoundError):
            return f"socket not found ({cause.filename or cause.strerror})"
        if isinstance(cause, PermissionError):
            return f"permission denied ({cause.filename or cause.strerror})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the engine running?)"
        if isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.EACCES):
            return f"{cause.strerror}"
        if isinstance(cause, socket.timeout | TimeoutError):
            return "timed out"
        nxt = cause.__cause__ or cause.__context__
        if nxt is None and cause.args and isinstance(cause.args[0], BaseException):
            nxt = cause.args[0]
        if nxt is None:
            reason = getattr(cause, "reason", None)
            nxt = reason if isinstance(reason, BaseException) else None
        cause = nxt
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _labels(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


def info_from_list(row: Mapping[str, Any]) -> ContainerInfo:
    """A :class:`ContainerInfo` from a ``GET /containers/json`` row (TTY unknown: False)."""
    names = row.get("Names") or [row.get("Id", "")]
    return ContainerInfo(id=row["Id"], name=str(names[0]).lstrip("/"),
                         image=str(row.get("Image", "")), labels=_labels(row.get("Labels")),
                         tty=False, running=row.get("State", "running") == "running")


def info_from_inspect(doc: Mapping[str, Any]) -> ContainerInfo:
    """A :class:`ContainerInfo` from ``GET /containers/{id}/json``."""
    config = doc.get("Config") or {}
    state = doc.get("State") or {}
    return ContainerInfo(id=doc["Id"], name=str(doc.get("Name", "")).lstrip("/"),
                         image=str(config.get("Image", "")), labels=_labels(config.get("Labels")),
                         tty=bool(config.get("Tty")), running=bool(state.get("Running")))


def is_podman(version: Mapping[str, Any]) -> bool:
    """Whether a ``GET /version`` answer is podman's (a component named "Podman Engine")."""
    components = version.get("Components") or []
    return any(str(c.get("Name", "")).lower().startswith("podman")
               for c in components if isinstance(c, Mapping))


class RawStream:
    """An HTTP response body read as it arrives (see the module docstring)."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._lock = threading.Lock()
        self._aborted = False
        try:
            self._sock: Any = response.raw._fp.fp.raw
        except AttributeError:
            self._sock = None

    def read(self) -> bytes:
        if self._aborted:
            return b""
        try:
            return bytes(self._response.raw.read1(READ_BYTES))
        except Exception as exc:  # urllib3/requests/OS errors alike
            if self._aborted:
                return b""
            if type(exc).__name__ == "ReadTimeoutError":  # urllib3's, not imported here
                raise StreamIdle("no data within the idle timeout") from exc
            raise EngineError(describe_error(exc)) from exc

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            sock = getattr(self._sock, "_sock", self._sock)
            if sock is not None and hasattr(sock, "shutdown"):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self._response.close()
        except Exception:  # closing a broken connection
            pass


class DockerEngine:
    """:class:`Engine` over the ``docker`` SDK's low-level client at ``url``.

    ``version``: the API version to speak (None: ask the engine at the first call)."""

    def __init__(self, url: str, *, version: str | None = None,
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._version = version
        self._client: Any = None
        self._lossy_follow: bool | None = None

    @property
    def version(self) -> str | None:
        return self._version

    def _api(self) -> Any:
        if self._client is None:
            import docker  # lazily: only a process with containers enabled pays for it

            try:
                self._client = docker.APIClient(base_url=self.url,
                                                version=self._version or "auto",
                                                timeout=self.timeout_s, max_pool_size=4)
            except Exception as exc:  # DockerException wraps the OS error
                raise EngineError(describe_error(exc)) from exc
            self._version = self._client.api_version
        return self._client

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        import docker.errors

        try:
            return fn(*args, **kw)
        except docker.errors.NotFound as exc:
            raise ContainerGone(describe_error(exc)) from exc
        except EngineError:
            raise
        except Exception as exc:  # requests/urllib3/OS errors alike
            raise EngineError(describe_error(exc)) from exc

    def listing(self) -> list[ContainerInfo]:
        api = self._api()
        rows = self._call(api.containers, all=True)
        return [info_from_list(row) for row in rows]

    def inspect(self, container_id: str) -> ContainerInfo:
        api = self._api()
        return info_from_inspect(self._call(api.inspect_container, container_id))

    def _stream(self, path: str, params: dict[str, Any], read_timeout: float | None,
                *args: str) -> RawStream:
        api = self._api()

        def get() -> Any:
            response = api._get(api._url(path, *args), params=params, stream=True,
                                timeout=(self.timeout_s, read_timeout))
            api._raise_for_status(response)
            return response

        return RawStream(self._call(get))

    def logs(self, container_id: str, since: SinceSeconds | None, *, tty: bool,
             follow: bool) -> LogStream:
        params: dict[str, Any] = {"follow": follow, "timestamps": True, "stdout": True,
                                  "stderr": True, "tail": "all"}
        if since is not None:
            params["since"] = str(since)
        # a followed log may be quiet for ever; one read to the end may not hang, but may be
        # slow to start: podman sends nothing of a read without follow for tens of seconds
        # when many containers write fast (measured: 20 busybox writers on 2 cores)
        return self._stream("/containers/{0}/logs", params,
                            None if follow else READ_TO_END_TIMEOUT_S, container_id)

    def follow_loses_lines(self) -> bool:
        """True for podman (asked once per client: ``GET /version``)."""
        if self._lossy_follow is None:
            api = self._api()
            self._lossy_follow = is_podman(self._call(api.version))
        return self._lossy_follow

    def events(self, since_s: int, idle_s: float) -> LogStream:
        params = {"since": str(since_s), "filters": json.dumps({"type": ["container"]})}
        return self._stream("/events", params, idle_s)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection
                pass
