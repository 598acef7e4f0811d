"""The disk buffer: batches in zstd segment files, read and acked per sink.

* :mod:`~logcap.state.buffer.record` — record framing (header, BLAKE2b checksum) and the scan
  that finds valid records, corrupt regions and torn tails;
* :mod:`~logcap.state.buffer.codec` — a batch of :class:`~logcap.messages.Entries` <-> bytes,
  zstd compression, optional encryption;
* :mod:`~logcap.state.buffer.crypto` — AES-256-GCM at rest, key from env or file;
* :mod:`~logcap.state.buffer.ledger` — per-segment ledger (``.idx``) so start-up reads no data;
* :mod:`~logcap.state.buffer.cursors` — per-sink acknowledged seqs (``cursors.json``);
* :mod:`~logcap.state.buffer.recovery` — start-up repair and its report;
* :mod:`~logcap.state.buffer.segments` — :class:`SegmentStore`, the store itself;
* :mod:`~logcap.state.buffer.verify` — a read-only integrity check (``logcap buffer verify``).

All of it is synchronous and single-owner; the buffer actor wraps it.
"""

from logcap.state.buffer.codec import CodecError, PayloadCodec, decode_batch, encode_batch
from logcap.state.buffer.crypto import (
    Cipher,
    DecryptionError,
    KeyLoadError,
    cipher_from_settings,
    load_key,
)
from logcap.state.buffer.ledger import SegmentInfo
from logcap.state.buffer.recovery import RecoveryReport
from logcap.state.buffer.segments import (
    DROP_REASONS,
    BufferDirectoryError,
    BufferFull,
    SegmentStore,
)
from logcap.state.buffer.verify import SegmentVerdict, VerifyReport, verify_directory

__all__ = [
    "DROP_REASONS",
    "BufferDirectoryError",
    "BufferFull",
    "Cipher",
    "CodecError",
    "DecryptionError",
    "KeyLoadError",
    "PayloadCodec",
    "RecoveryReport",
    "SegmentInfo",
    "SegmentStore",
    "SegmentVerdict",
    "VerifyReport",
    "cipher_from_settings",
    "decode_batch",
    "encode_batch",
    "load_key",
    "verify_directory",
]
