"""Is this file compressed? Recognised by its first bytes, never by its name.

A rotated ``app.log.2.gz`` often matches a user's glob (``app.log*``); shipped as text it
would be binary garbage in Loki. :func:`compression_of` reads the magic number at offset 0:
gzip ``1f 8b``, xz ``fd 37 7a 58 5a 00``, zstd ``28 b5 2f fd``, and bzip2 ``BZh`` only with
its block size digit and the magic of its first block (or of its end) after it, so that a text
log whose first line starts with "BZh" is still read. The tailer
skips such a file (reported once as a problem of its source, counted as
``logcap_source_errors_total{reason="compressed"}``) instead of reading it, or with
``decompress: true`` reads it decompressed (:mod:`~logcap.sources.files.decompress`).
"""

from __future__ import annotations

import os

__all__ = ["MAGIC", "compression_of", "undecided"]

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_BZIP2_BLOCKS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
"""The magic of a bzip2 block and of its end-of-stream marker, after ``BZh`` and a digit."""
_HEAD_BYTES = 10


def compression_of(fd: int) -> str | None:
    """The compression format of the open file ``fd`` by its magic number, or None (text, or
    too short to tell: an empty file is not compressed)."""
    head = os.pread(fd, _HEAD_BYTES, 0)
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[3:4] \
            and head[4:10] in _BZIP2_BLOCKS:
        return "bzip2"
    return None


def undecided(fd: int) -> bool:
    """Whether the open file ``fd`` is too short to tell yet: its bytes so far (no newline)
    are the start of a magic number (a compressor has just begun writing it)."""
    head = os.pread(fd, _HEAD_BYTES, 0)
    if not head or len(head) >= _HEAD_BYTES or b"\n" in head:
        return False
    return any(magic.startswith(head) or head.startswith(magic) for magic, _ in MAGIC) \
        or b"BZh".startswith(head[:3])
