"""Demultiplex the Docker Engine API's log stream into frames, incrementally.

The engine sends a container's logs (``GET /containers/{id}/logs``, and ``attach``) in one of
two forms, chosen by whether the container has a TTY:

* **Multiplexed** (no TTY): a sequence of frames, each an 8-byte header then its payload. Header
  byte 0 is the stream type (``1`` stdout, ``2`` stderr), bytes 1..3 are zero, bytes 4..7 the
  payload length, big-endian. Docker and podman send one log message (a line, or a piece of a
  long one) per frame.
* **TTY**: no header at all; every byte is stdout, and chunk boundaries mean nothing.

:class:`FrameDecoder` is fed the raw chunks as the transport delivers them (a header or a payload
may be split across any number of chunks, several frames may share one) and returns the
complete frames in order; an incomplete frame waits in the decoder for the next chunk. It is
plain code: no I/O, no threads.

Bad input never hangs and never guesses: an unknown stream type (``0`` stdin included: logs
never carry it), non-zero header padding, or a payload length above ``max_frame_bytes`` raises
:class:`FramingError` naming the offset in the stream and the header bytes. After an error the
decoder stays failed (every later :meth:`~FrameDecoder.feed` raises again): the caller must drop
the connection and start a new stream with a new decoder.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "HEADER_BYTES",
    "MAX_FRAME_BYTES",
    "Frame",
    "FrameDecoder",
    "FramingError",
    "Stream",
    "encode_frame",
]

HEADER_BYTES = 8
"""Size of a multiplexed frame header, in bytes."""

MAX_FRAME_BYTES = 1024 * 1024
"""Default largest payload accepted, in bytes (1 MiB). Engines send log frames of at most a few
tens of KiB (Docker splits messages at 16 KiB, podman at 8 KiB, plus the timestamp); a length
far above that means the stream is not what we think it is (a TTY stream read as multiplexed)."""


class Stream(enum.IntEnum):
    """A container output stream, by its frame header code; ``label`` is its ``stream`` label."""

    STDOUT = 1
    STDERR = 2

    @property
    def label(self) -> str:
        """``"stdout"`` or ``"stderr"``."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its payload bytes, exactly as the engine sent them, and its stream."""

    stream: Stream
    payload: bytes


class FramingError(ValueError):
    """The byte stream is not a valid multiplexed log stream."""


def encode_frame(stream: Stream, payload: bytes) -> bytes:
    """The multiplexed encoding of one frame (header + payload), as an engine writes it."""
    return bytes((int(stream), 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


class FrameDecoder:
    """Turns the chunks of one log stream into :class:`Frame`\\ s (see the module docstring).

    ``tty``: the stream has no headers; each non-empty chunk is returned as one stdout frame.
    ``max_frame_bytes``: the largest payload length accepted in a header.
    """

    def __init__(self, *, tty: bool = False, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self._tty = tty
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._consumed = 0  # bytes of the stream before _buffer[0]
        self._error: FramingError | None = None

    @property
    def tty(self) -> bool:
        return self._tty

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet make a whole frame (0 in TTY mode)."""
        return len(self._buffer)

    @property
    def offset(self) -> int:
        """Bytes of the stream taken as complete frames so far."""
        return self._consumed

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add the next ``chunk`` of the stream; returns the frames it completed, in order.

        Raises :class:`FramingError` on a bad header (and on every call after one)."""
        if self._error is not None:
            raise self._error
        if self._tty:
            self._consumed += len(chunk)
            return [Frame(Stream.STDOUT, bytes(chunk))] if chunk else []
        buffer = self._buffer
        buffer += chunk
        frames: list[Frame] = []
        at = 0
        size = len(buffer)
        while size - at >= HEADER_BYTES:
            kind, pad1, pad2, pad3 = buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]
            length = int.from_bytes(buffer[at + 4:at + HEADER_BYTES], "big")
            if kind not in (1, 2) or pad1 or pad2 or pad3 or length > self._max:
                self._fail(at, bytes(buffer[at:at + HEADER_BYTES]), kind, length)
            end = at + HEADER_BYTES + length
            if end > size:
                break
            if length:
                frames.append(Frame(Stream(kind), bytes(buffer[at + HEADER_BYTES:end])))
            at = end
        if at:
            del buffer[:at]
            self._consumed += at
        return frames

    def _fail(self, at: int, header: bytes, kind: int, length: int) -> None:
        where = self._consumed + at
        if kind not in (1, 2):
            why = f"unknown stream type {kind} (1 is stdout, 2 is stderr)"
        elif length > self._max:
            why = f"payload length {length} exceeds the limit of {self._max} bytes"
        else:
            why = "header bytes 1..3 are not zero"
        self._error = FramingError(
            f"bad log frame header at byte {where} of the stream ({header.hex(' ')}): {why}; "
            "is this a TTY container's stream read as multiplexed?")
        raise self._error
