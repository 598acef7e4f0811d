"""Byte-level text helpers shared by the sources: cutting a line without splitting a character.

:func:`cut_utf8` is how every source truncates an overlong line (files in
:mod:`logcap.sources.files.reader`, containers in :mod:`logcap.sources.containers.lines`), so a
truncated line never ends in half a UTF-8 character.
"""

from __future__ import annotations

__all__ = ["cut_utf8"]

_MAX_UTF8_CHAR_BYTES = 4
"""A UTF-8 character is at most 4 bytes."""


def cut_utf8(data: bytes, limit: int) -> bytes:
    """``data[:limit]``, backed off so that it does not end inside a UTF-8 character.

    Bytes that are not valid UTF-8 are cut as they are (at most ``limit`` bytes are kept)."""
    head = data[:limit]
    for back in range(1, min(_MAX_UTF8_CHAR_BYTES, len(head)) + 1):
        byte = head[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: ASCII or a lead byte
            if byte >= 0xC0:
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if need > back:
                    return head[:-back]
            return head
    return head
