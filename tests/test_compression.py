"""Compressed files are recognised by their first bytes, and text that merely looks alike is not."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from logcap.sources.files.compression import compression_of


def _kind(path: Path, data: bytes) -> str | None:
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return compression_of(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("data", "kind"), [
    (gzip.compress(b"a line\n", mtime=0), "gzip"),
    (bz2.compress(b"a line\n"), "bzip2"),
    (bz2.compress(b""), "bzip2"),
    (lzma.compress(b"a line\n"), "xz"),
    (zstandard.ZstdCompressor().compress(b"a line\n"), "zstd"),
], ids=["gzip", "bzip2", "bzip2-empty", "xz", "zstd"])
def test_each_format_is_recognised_by_its_magic(tmp_path: Path, data: bytes, kind: str) -> None:
    assert _kind(tmp_path / "x", data) == kind


@pytest.mark.parametrize("data", [b"", b"\x1f", b"BZh9 is a log line\n", b"BZh", b"plain\n",
                                  b"\x00\x00\x00\x00"])
def test_text_empty_and_short_files_are_not_compressed(tmp_path: Path, data: bytes) -> None:
    assert _kind(tmp_path / "x", data) is None
