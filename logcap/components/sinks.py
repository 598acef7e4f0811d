"""The sink kinds: Loki (``sinks.loki`` and each ``sinks.loki_endpoints[]`` entry) and the
file sink (``sinks.file``). Each instance is one :class:`~logcap.actors.sink.SinkActor` named
after the instance, in the ``sinks`` group (one_for_one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pykka import ActorRef

from logcap.actors.sink import SinkActor
from logcap.components.base import ComponentKind
from logcap.components.instance import Instance
from logcap.components.wiring import DLQ, Wiring
from logcap.config import Config
from logcap.config.values import redact_url
from logcap.dispatch.dedup import DeliveredRanges
from logcap.runtime.childspec import ChildSpec, StartContext
from logcap.sinks.base import SinkBackend
from logcap.sinks.file import FileSink

__all__ = ["FILE_SINK", "LOKI_SINK", "FileSinkKind", "LokiSinkKind"]


def _sink_spec(instance: Instance, wiring: Wiring, make_backend: Callable[[], SinkBackend],
               target: str, ping_timeout_s: float | None = None) -> ChildSpec:
    """``target``: where the sink sends, for its log lines and ``/health`` (no secrets)."""
    config = wiring.config
    dlq = wiring.state(DLQ)
    dd = config.deduplication

    def start(ctx: StartContext) -> ActorRef[Any]:
        dedup = DeliveredRanges(dd.window, dd.max_entries) if dd.enabled else None
        return SinkActor.start(instance.name, make_backend, dlq, dedup, target,
                               config.server.sink_degraded_after, link=ctx.link,
                               name=ctx.name, directory=ctx.directory,
                               mailbox_capacity=config.dispatcher.queue_size)

    return ChildSpec(id=instance.name, start=start,
                     shutdown_s=config.supervision.shutdown_timeout,
                     ping_timeout_s=ping_timeout_s)


class LokiSinkKind(ComponentKind):
    """Grafana Loki push API; its modules (and urllib3) are imported when a Loki sink is
    configured."""

    kind = "loki"
    group = "sinks"

    def instances(self, config: Config) -> list[Instance]:
        out = []
        if config.sinks.loki.enabled:
            out.append(Instance(self.kind, "loki", config.sinks.loki, "sinks.loki"))
        for index, endpoint in enumerate(config.sinks.loki_endpoints):
            if endpoint.enabled:
                out.append(Instance(self.kind, endpoint.name, endpoint,
                                    f"sinks.loki_endpoints[{index}]"))
        return out

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        from logcap.sinks.loki.service import LokiService, push_url  # only when configured

        settings = instance.settings
        # A push may legitimately take the request timeout, times a 413 split or two.
        ping_timeout_s = max(wiring.config.supervision.ping_timeout, settings.timeout * 4)
        return _sink_spec(instance, wiring, lambda: LokiService(settings, name=instance.name),
                          redact_url(push_url(settings.url)), ping_timeout_s)

    def probe(self, instance: Instance, config: Config) -> tuple[bool, str] | None:
        """``GET /ready`` once (:mod:`logcap.sinks.loki.probe`)."""
        from logcap.sinks.loki.probe import probe
        from logcap.sinks.loki.service import LokiService

        try:
            service = LokiService(instance.settings, name=instance.name)
        except OSError as exc:  # a password_file or token_file that cannot be read
            return False, f"cannot read a secret file: {exc.filename}: {exc.strerror}"
        try:
            result = probe(service, redact_url(instance.settings.url))
        finally:
            service.close()
        return result.ok, result.detail

    def describe(self, instance: Instance) -> str:
        s = instance.settings
        return f"{instance.name} ({redact_url(s.url)}, {s.encoding})"


class FileSinkKind(ComponentKind):
    """Lines per source into files under ``sinks.file.directory``."""

    kind = "file"
    group = "sinks"

    def instances(self, config: Config) -> list[Instance]:
        fc = config.sinks.file
        return [Instance(self.kind, "file", fc, "sinks.file")] if fc.enabled else []

    def child_spec(self, instance: Instance, wiring: Wiring) -> ChildSpec:
        fc = instance.settings
        return _sink_spec(instance, wiring, lambda: FileSink(fc.directory, fc.format,
                                                             fc.max_file_size, fc.max_files),
                          fc.directory)

    def directories(self, instance: Instance, config: Config) -> list[tuple[str, str]]:
        return [(f"{instance.key}.directory", instance.settings.directory)]

    def describe(self, instance: Instance) -> str:
        return f"{instance.name} ({instance.settings.directory}, {instance.settings.format})"


LOKI_SINK = LokiSinkKind()
FILE_SINK = FileSinkKind()
