"""The line block of a disk-buffer record body: a batch's lines <-> bytes, in one call each.

Layout (codec.py's body, after the meta)::

    4 * N    u32 little-endian length of each line in code points
    rest     the lines concatenated, UTF-8 with ``surrogatepass`` (lone surrogates survive)

:func:`pack` writes ``head`` followed by the block, as one ``bytes`` (so the body is built in
one allocation); :func:`unpack` reads the ``count`` lines of the block that starts at ``offset``
of a body, whose text runs to the body's end. A block that does not decode (lengths past the
end, text that is not UTF-8, lengths that do not add up to the text) raises ``ValueError``.

Two implementations do the same: :func:`pack_python` and :func:`unpack_python`, this module's
code, the specification and the fallback; and the compiled ``_line_block`` (``_line_block.c``),
chosen when the package was built with it (:data:`COMPILED`). The Python ones spend per line a
``len`` in an ``array``, a slice and a ``str`` (about 1,100 instructions per 200-byte line to
unpack, 330 to pack besides the copies); the compiled ones write the lengths while they copy
the text, and make each ``str`` straight from the bytes when the text is ASCII (the usual
case; otherwise the text is decoded once and sliced, as the Python one does).
:func:`pair_sets` rebuilds a record's per-line metadata from the names' table and the values
the line block holds (``pair_sets_python`` the specification; compiled, each line's tuple of
pairs is made straight from the lists, without a slice or a ``zip`` per line);
:func:`split_pair_sets` takes it apart into those (compiled, a line whose names are the very
objects of the line before's reuses its place in the table without making a tuple).
"""

from __future__ import annotations

import array
import itertools
import operator
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["COMPILED", "pack", "pack_python", "pair_sets", "pair_sets_python",
           "split_pair_sets", "split_pair_sets_python", "unpack", "unpack_python"]

_U32 = "I" if array.array("I").itemsize == 4 else "L"
_SWAP = sys.byteorder != "little"


def _compiled_module() -> ModuleType | None:
    try:
        from logcap.state.buffer import _line_block
    except ImportError:  # built without a C compiler: the Python code runs
        return None
    return _line_block


COMPILED = _compiled_module()
"""The compiled module, or None where it was not built."""


def pack_python(head: Buffer, lines: list[str]) -> bytes:
    """``head``, then the length of each of ``lines`` (u32, code points), then their UTF-8
    text (``surrogatepass``). A line of 2**32 code points or more raises OverflowError."""
    lengths = array.array(_U32, map(len, lines))
    if _SWAP:
        lengths.byteswap()
    text = "".join(lines).encode("utf-8", "surrogatepass")
    return b"".join((head, lengths.tobytes(), text))


def unpack_python(body: Buffer, offset: int, count: int) -> list[str]:
    """The ``count`` lines of the block at ``offset`` of ``body`` (the text runs to its end)."""
    if offset < 0 or count < 0:
        raise ValueError("negative offset or count")
    view = memoryview(body).cast("B")
    lengths_end = offset + 4 * count
    lengths = array.array(_U32)
    lengths.frombytes(view[offset:lengths_end])
    if len(lengths) != count:
        raise ValueError("body too short for its line lengths")
    if _SWAP:
        lengths.byteswap()
    text = str(view[lengths_end:], "utf-8", "surrogatepass")
    ends = list(itertools.accumulate(lengths))
    if (ends[-1] if ends else 0) != len(text):
        raise ValueError("line lengths do not match the text")
    starts = [0, *ends[:-1]] if ends else []
    return [text[start:end] for start, end in zip(starts, ends, strict=True)]


def pair_sets_python(shapes: list[tuple[str, ...]], index: list[int], values: list[str],
                     ) -> list[tuple[tuple[str, str], ...]]:
    """Per line ``i``, the names ``shapes[index[i]]`` zipped with the next of ``values`` (a
    record's per-line metadata, whose values are in its line block), every value used once.
    An index out of the table or values that do not add up raise ValueError."""
    if any(not 0 <= at < len(shapes) for at in index):
        raise ValueError("an index out of the table")
    lines = list(map(shapes.__getitem__, index))
    ends = list(itertools.accumulate(map(len, lines)))
    if (ends[-1] if ends else 0) != len(values):
        raise ValueError("per-line metadata do not match their values")
    chunks = map(values.__getitem__, map(slice, [0, *ends[:-1]], ends))
    return list(map(tuple, map(zip, lines, chunks)))  # each line's pairs, no Python per line


def split_pair_sets_python(sets: list[tuple[tuple[str, str], ...]], values: list[str],
                           ) -> tuple[list[tuple[str, ...]], list[int]]:
    """The inverse of :func:`pair_sets`: every pair's value appended to ``values``, and the
    table of the distinct tuples of names (in order of first use) with each line's place in
    it. A line or a pair that is not a tuple (a pair: of two) raises TypeError."""
    if any(type(pairs) is not tuple for pairs in sets) or any(
            type(pair) is not tuple or len(pair) != 2 for pair in itertools.chain(*sets)):
        raise TypeError("a line's metadata, or a pair, that is not a tuple of two")
    values.extend(itertools.chain.from_iterable(map(map, itertools.repeat(_VALUE), sets)))
    places: dict[tuple[str, ...], int] = {}
    shapes = map(tuple, map(map, itertools.repeat(_NAME), sets))
    index = [places.setdefault(names, len(places)) for names in shapes]
    return list(places), index


_NAME = operator.itemgetter(0)
_VALUE = operator.itemgetter(1)


pack: Callable[[Buffer, list[str]], bytes] = (
    pack_python if COMPILED is None else COMPILED.pack)
unpack: Callable[[Buffer, int, int], list[str]] = (
    unpack_python if COMPILED is None else COMPILED.unpack)
pair_sets: Callable[[list[tuple[str, ...]], list[int], list[str]],
                    list[tuple[tuple[str, str], ...]]] = (
    pair_sets_python if COMPILED is None else COMPILED.pair_sets)
split_pair_sets: Callable[[list[tuple[tuple[str, str], ...]], list[str]],
                          tuple[list[tuple[str, ...]], list[int]]] = (
    split_pair_sets_python if COMPILED is None else COMPILED.split_pair_sets)
