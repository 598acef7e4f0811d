"""Snappy block compression for Loki bodies: the compiled compressor and the literal-only
fallback, each checked against an independent decoder (cramjam's, from the test extra)."""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import random
import threading
import time
import tracemalloc
from collections.abc import Callable

import cramjam
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logcap.sinks.loki import protobuf, service
from logcap.sinks.loki.protobuf import compress_snappy, encode_push_request, snappy_literals
from logcap.sinks.loki.request import LokiEntry, LokiStream

try:
    from logcap.sinks.loki import _snappy
except ImportError:  # not built: the compiled compressor's tests skip, the fallback's run
    _snappy = None  # type: ignore[assignment]
compress = _snappy.compress if _snappy is not None else None
compiled_only = pytest.mark.skipif(_snappy is None, reason="logcap.sinks.loki._snappy not built")

FRAGMENT = 1 << 16


def decoded(body: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(body))


def log_payload(lines: int, seed: int = 7, line_bytes: int = 200) -> bytes:
    """An encoded push request of ``lines`` realistic ~200-byte log lines (timestamps, levels,
    paths, ids, durations varying as in real logs) in a few streams."""
    rng = random.Random(seed)
    levels = ["info", "info", "info", "debug", "warn", "error"]
    paths = ["/api/v1/users", "/api/v1/orders", "/healthz", "/api/v2/search", "/static/app.js"]
    streams = []
    for s in range(4):
        entries = []
        for i in range(lines // 4):
            ts = 1_764_700_000_000_000_000 + (s * lines + i) * 97_331
            text = (f"ts=2026-12-02T19:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 1000:03d}Z "
                    f"level={rng.choice(levels)} caller=handler.go:{rng.randint(10, 400)} "
                    f"method={rng.choice(['GET', 'POST', 'PUT'])} path={rng.choice(paths)} "
                    f"status={rng.choice([200, 200, 200, 201, 404, 500])} "
                    f"duration={rng.random() * 250:.3f}ms bytes={rng.randint(0, 99999)} "
                    f"trace_id={rng.getrandbits(64):016x} user=u{rng.randint(1, 5000)} ")
            entries.append(LokiEntry(ts, (text + "x" * line_bytes)[:line_bytes]))
        streams.append(LokiStream(f'{{job="app",host="node-{s}",env="prod"}}', entries))
    return encode_push_request(streams).payload


def repeated(unit: bytes, n: int) -> bytes:
    return (unit * (n // max(len(unit), 1) + 1))[:n]


binary = st.binary(max_size=3000)
# Runs, short alphabets and repeated units make matches (overlapping ones: an offset shorter
# than the match); concatenations put them next to literals and across fragment boundaries.
repetitive = st.builds(repeated, st.binary(min_size=1, max_size=9), st.integers(0, 70_000))
small_alphabet = st.lists(st.sampled_from(b"ab\x00"), max_size=5000).map(bytes)
pieces = st.lists(st.one_of(binary, repetitive, small_alphabet), max_size=6).map(b"".join)
inputs = st.one_of(binary, repetitive, small_alphabet, pieces)


# each encoder with the most it may write for n input bytes
ENCODERS = {
    "compiled": (compress, lambda n: 32 + n + n // 6),
    "literal-only": (snappy_literals, lambda n: n + 10),
}


@pytest.mark.parametrize("encoder", [pytest.param("compiled", marks=compiled_only),
                                     "literal-only"])
@settings(max_examples=300)
@given(data=inputs)
@example(data=b"")
@example(data=b"a")
@example(data=b"ab" * 10)
@example(data=b"x" * 15)
@example(data=b"x" * 16)
@example(data=b"x" * 61)
@example(data=b"x" * 257)
@example(data=repeated(b"abc", FRAGMENT))
@example(data=repeated(b"abc", FRAGMENT - 1))
@example(data=repeated(b"abc", FRAGMENT + 1))
@example(data=random.Random(1).randbytes(FRAGMENT))
@example(data=random.Random(2).randbytes(2 * FRAGMENT) + b"z" * 300)
def test_every_output_decodes_to_its_input(encoder: str, data: bytes) -> None:
    encode, most = ENCODERS[encoder]
    body = encode(data)
    assert decoded(body) == data
    assert len(body) <= most(len(data))


def test_literal_lengths_use_every_header_width() -> None:
    # (n - 1) in the tag below 61 bytes, then in 1, 2, 3 extra bytes
    for n, header in [(1, 1), (60, 1), (61, 2), (256, 2), (257, 3), (65536, 3), (65537, 4),
                      (1 << 24, 4), ((1 << 24) + 1, 5)]:
        data = bytes(n)
        body = snappy_literals(data)
        assert len(body) == len(protobuf.encode_uvarint(n)) + header + n
        assert decoded(body) == data


@compiled_only
def test_more_than_a_mebibyte_of_logs_and_of_noise_round_trips() -> None:
    logs = log_payload(6000)  # ~1.3 MiB: 20 fragments
    noise = random.Random(3).randbytes(1 << 20) + logs[: 3 * FRAGMENT + 5]
    for data in (logs, noise, bytes(3 << 20)):
        assert len(data) > 1 << 20
        assert decoded(compress(data)) == data


@compiled_only
def test_bytes_like_inputs_are_accepted() -> None:
    data = log_payload(40)
    expected = compress(data)
    assert compress(bytearray(data)) == expected
    assert compress(memoryview(data)) == expected
    with pytest.raises(TypeError):
        compress("text")  # type: ignore[arg-type]


@compiled_only
def test_log_payloads_compress_about_as_well_as_cramjam() -> None:
    for lines in (500, 5000):
        data = log_payload(lines)
        ours, theirs = len(compress(data)), len(cramjam.snappy.compress_raw(data))
        assert ours <= theirs * 1.10, (lines, ours, theirs)
        assert ours < len(data) / 2


@compiled_only
def test_highly_repetitive_input_shrinks_to_a_few_bytes_per_fragment() -> None:
    data = bytes(10 * FRAGMENT)
    # per fragment: a 1-byte literal and copies of 64 bytes, 3 bytes each (offset 1 fits the
    # 1-byte form only up to 11 bytes)
    assert len(compress(data)) < 10 * (2 + 3 * FRAGMENT // 64 + 6)


@compiled_only
def test_compress_snappy_is_the_compiled_compressor_when_it_is_built() -> None:
    data = log_payload(200)
    assert protobuf.SNAPPY_COMPILED
    assert compress_snappy(data) == compress(data)


def test_compress_snappy_without_the_module_sends_literals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protobuf, "_compress_native", None)
    data = log_payload(200)
    assert compress_snappy(data) == snappy_literals(data)
    assert decoded(compress_snappy(data)) == data


@pytest.mark.parametrize("compiled", [True, False])
def test_the_sink_logs_which_compressor_it_uses_when_it_starts(
        compiled: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_loki_service import loki_cfg

    monkeypatch.setattr(service, "SNAPPY_COMPILED", compiled)
    with caplog.at_level(logging.INFO, logger=service.__name__):
        service.LokiService(loki_cfg("http://127.0.0.1:9"), name="main")
        service.LokiService(loki_cfg("http://127.0.0.1:9", encoding="json"), name="js")
    [record] = [r for r in caplog.records if "snappy" in r.getMessage()]
    assert "loki sink main" in record.getMessage()
    assert record.levelno == (logging.INFO if compiled else logging.WARNING)


@compiled_only
def test_compressing_does_not_leak() -> None:
    data = log_payload(2000)
    small = data[:100]
    for _ in range(50):
        compress(data), compress(small)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(2000):
            compress(data)
            compress(small)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, grown


@compiled_only
def test_the_gil_is_released_while_a_large_input_is_compressed() -> None:
    """Another Python thread runs while a large input is compressed (with the GIL held it
    could not make a single step during any call)."""
    data = log_payload(4600)  # ~1 MiB: a millisecond or two per call
    assert len(data) >= _snappy.RELEASE_GIL_BYTES
    during = steps_during_calls(compress, data, 100)
    assert sum(1 for n in during if n) >= 5, during


def steps_during_calls(compress: Callable[[bytes], object], data: bytes,
                       calls: int) -> list[int]:
    """For each of ``calls`` calls of ``compress`` in this thread, how many loop steps another
    Python thread made while the call ran. The counter is read just before and just after the
    call from C (``map`` over C callables: no bytecode, so no GIL hand-over, in between), so a
    call that holds the GIL throughout reads 0 every time."""
    steps = itertools.count()
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            next(steps)

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.01)
    during = []
    peek, call = steps.__repr__, functools.partial(compress, data)
    try:
        for _ in range(calls):
            before, _, after = map(operator.call, (peek, call, peek))
            during.append(int(after[6:-1]) - int(before[6:-1]))  # "count(N)"
    finally:
        stop.set()
        counter.join()
    return during
