"""The compiled PushRequest encoder (``_protobuf.c``); see :mod:`logcap.sinks.loki.protobuf`."""

from collections.abc import Iterable

from logcap.sinks.loki.protobuf import StreamLike

def encode_push_request(streams: Iterable[StreamLike], /) -> tuple[bytes, int, int, int]:
    """``(payload, streams, entries, line_bytes)``, as ``encode_push_request_python``."""
