"""The container framing and line reassembly against a real engine: podman's Docker API."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from logcap.sources.containers.engine import is_podman
from logcap.sources.containers.framing import FrameDecoder, Stream
from logcap.sources.containers.lines import LineAssembler, LogLine
from tests.podman_engine import (
    CONTAINER_KWARGS,
    IMAGE,
    PodmanEngine,
    podman_missing,
    start_engine,
    ulimits,
)

pytestmark = pytest.mark.integration

LINES = 2000
LONG_LINE_BYTES = 20_000  # over podman's 8 KiB pieces: always reassembled


def raw_log_chunks(client, container_id: str) -> Iterator[bytes]:
    """The undecoded bytes of ``logs(stream=True, follow=False, timestamps=True, stdout=True,
    stderr=True)``: the SDK's own ``logs()`` strips the frame headers (and with them which
    stream a frame is), so the request is made with the SDK's transport, read raw."""
    api = client.api
    response = api._get(api._url("/containers/{0}/logs", container_id), stream=True,
                        params={"follow": False, "timestamps": True, "stdout": True,
                                "stderr": True, "tail": "all"})
    api._raise_for_status(response)
    with response:
        yield from response.iter_content(chunk_size=65536)


@pytest.fixture(scope="module")
def engine() -> Iterator[PodmanEngine]:
    why = podman_missing()
    if why:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="lcpm-", dir="/tmp") as tmp:
        eng = start_engine(Path(tmp))
        try:
            yield eng
        finally:
            eng.reset()


def test_framed_logs_of_a_real_container_reassemble_byte_exact_per_stream(engine) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=engine.url, timeout=60)
    script = (
        f"i=0; while [ $i -lt {LINES} ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done; "
        f"printf 'long-%0{LONG_LINE_BYTES - 5}d\\n' 7; "
        f"printf 'long-err-%0{LONG_LINE_BYTES}d\\n' 9 >&2"
    )
    container = client.containers.run(IMAGE, ["sh", "-c", script], detach=True,
                                      ulimits=ulimits(), **CONTAINER_KWARGS)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        decoder, assembler = FrameDecoder(), LineAssembler()
        lines: list[LogLine] = []
        for chunk in raw_log_chunks(client, container.id):
            lines += assembler.add(decoder.feed(chunk))
        assert decoder.pending_bytes == 0
        lines += assembler.finish()
    finally:
        container.remove(force=True)
        client.close()
    by_stream = {s: [line.data for line in lines if line.stream is s] for s in Stream}
    assert by_stream[Stream.STDOUT] == [f"out-{i}".encode() for i in range(LINES)] + [
        b"long-" + b"7".rjust(LONG_LINE_BYTES - 5, b"0")]
    assert by_stream[Stream.STDERR] == [f"err-{i}".encode() for i in range(LINES)] + [
        b"long-err-" + b"9".rjust(LONG_LINE_BYTES, b"0")]
    assert all(line.timestamp_ns for line in lines)
    assert assembler.untimed_pieces == 0 and assembler.truncated_lines == 0
    assert assembler.reassembled_lines >= 2


def test_podman_is_told_from_docker_by_its_version_components() -> None:
    podman = {"Version": "4.3.1", "Components": [{"Name": "Podman Engine"},
                                                 {"Name": "Conmon"}]}
    docker_ = {"Version": "24.0.7", "Components": [{"Name": "Engine"},
                                                   {"Name": "containerd"}]}
    assert is_podman(podman)
    assert not is_podman(docker_)
    assert not is_podman({"Version": "1.0"})  # no components: not known to lose lines
