"""Snappy block-format compression (the compiled module ``_snappy.c``)."""

from typing_extensions import Buffer

RELEASE_GIL_BYTES: int
"""Inputs at least this long are compressed with the GIL released."""

def compress(data: Buffer, /) -> bytes:
    """``data`` (below 4 GiB) in snappy's block format: the uncompressed length as a varint,
    then literal and copy elements; no stream framing."""
