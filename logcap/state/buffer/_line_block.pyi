"""Types of the compiled line block (``_line_block.c``; ``line_block.py`` is its
specification)."""

from typing_extensions import Buffer

def pack(head: Buffer, lines: list[str], /) -> bytes:
    """``line_block.pack_python``: ``head``, the u32 code-point lengths, the UTF-8 text."""

def unpack(body: Buffer, offset: int, count: int, /) -> list[str]:
    """``line_block.unpack_python``: the ``count`` lines of the block at ``offset``."""

def pair_sets(shapes: list[tuple[str, ...]], index: list[int], values: list[str], /,
              ) -> list[tuple[tuple[str, str], ...]]:
    """``line_block.pair_sets_python``: each line's names zipped with its values."""

def split_pair_sets(sets: list[tuple[tuple[str, str], ...]], values: list[str], /,
                    ) -> tuple[list[tuple[str, ...]], list[int]]:
    """``line_block.split_pair_sets_python``: the names' table and index; values appended."""
