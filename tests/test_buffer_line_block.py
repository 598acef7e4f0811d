"""The line block of a record body: the compiled ``_line_block`` against its Python
specification (``line_block.py``) on generated lines and on damaged blocks, and no leaks; its
per-line metadata pairs (``pair_sets``) the same way."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcap.state.buffer import codec, line_block
from logcap.state.buffer.line_block import (
    COMPILED,
    pack_python,
    pair_sets_python,
    split_pair_sets_python,
    unpack_python,
)
from tests.pipeline_kit import entries

compiled_only = pytest.mark.skipif(COMPILED is None, reason="_line_block not built")

# Any code point, lone surrogates included (they come from escaped non-UTF-8 input), with
# ASCII lines common as in real logs.
LINES = st.lists(st.one_of(st.text(st.characters(codec="ascii")), st.text(),
                           st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))),
                 max_size=30)


def outcome(call: object, *args: object) -> object:
    """What a call returns, or the class of ValueError it raises (the two raise the same)."""
    try:
        return call(*args)  # type: ignore[operator]
    except ValueError:
        return ValueError


def test_the_compiled_block_is_built_and_chosen() -> None:
    assert COMPILED is not None
    assert line_block.pack is COMPILED.pack and line_block.unpack is COMPILED.unpack
    assert line_block.pair_sets is COMPILED.pair_sets
    assert line_block.split_pair_sets is COMPILED.split_pair_sets


@compiled_only
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=8), LINES)
def test_the_compiled_pack_writes_what_the_python_one_writes(head: bytes, lines: list[str]
                                                             ) -> None:
    assert COMPILED is not None
    packed = COMPILED.pack(head, lines)
    assert packed == pack_python(head, lines)
    assert COMPILED.unpack(packed, len(head), len(lines)) == lines
    assert unpack_python(packed, len(head), len(lines)) == lines


@compiled_only
@settings(max_examples=500, deadline=None)
@given(LINES, st.data())
def test_the_compiled_unpack_reads_damaged_blocks_as_the_python_one_does(
        lines: list[str], data: st.DataObject) -> None:
    assert COMPILED is not None
    block = bytearray(pack_python(b"", lines))
    for _ in range(data.draw(st.integers(0, 3))):  # flipped bytes, a cut, a wrong count
        if block:
            at = data.draw(st.integers(0, len(block) - 1))
            block[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        block = block[:data.draw(st.integers(0, len(block)))]
    count = len(lines) + data.draw(st.integers(-2, 2))
    offset = data.draw(st.integers(-1, 6))
    body = bytes(block)
    assert outcome(COMPILED.unpack, body, offset, count) == outcome(unpack_python, body, offset,
                                                                    count)


@compiled_only
@given(st.binary(max_size=64), st.integers(-1, 20), st.integers(-1, 20))
def test_the_compiled_unpack_reads_noise_as_the_python_one_does(body: bytes, offset: int,
                                                                count: int) -> None:
    assert COMPILED is not None
    assert outcome(COMPILED.unpack, body, offset, count) == outcome(unpack_python, body, offset,
                                                                    count)


@compiled_only
def test_one_non_ascii_character_anywhere_in_a_long_block_is_decoded() -> None:
    assert COMPILED is not None
    for at in range(100):  # every place in the 32- and 8-byte steps of the ASCII check
        lines = ["a" * 37, "b" * 63]
        text = "".join(lines)
        changed = text[:at] + "é" + text[at + 1:]
        lines = [changed[:37], changed[37:]]
        packed = pack_python(b"", lines)
        assert COMPILED.unpack(packed, 0, 2) == lines
        assert outcome(COMPILED.unpack, packed[:-1], 0, 2) is ValueError


@pytest.mark.parametrize("pack", [pack_python, *([COMPILED.pack] if COMPILED else [])])
def test_a_line_that_is_not_a_str_is_a_type_error(pack: object) -> None:
    with pytest.raises(TypeError):
        pack(b"", ["a", 3])  # type: ignore[operator]
    with pytest.raises(TypeError):
        pack(b"", ["a", b"b"])  # type: ignore[operator]


@compiled_only
def test_the_compiled_block_reads_any_buffer_and_str_subclasses() -> None:
    assert COMPILED is not None

    class Line(str):
        pass

    packed = COMPILED.pack(memoryview(b"hd"), [Line("x é"), "y"])
    assert packed == pack_python(b"hd", ["x é", "y"])
    assert COMPILED.unpack(memoryview(packed), 2, 2) == ["x é", "y"]
    assert COMPILED.unpack(bytearray(packed), 2, 2) == ["x é", "y"]


def test_the_codec_decodes_what_either_block_wrote() -> None:
    batch = [entries(["plain", "ünïcode", "\udcff escaped", "", "multi\nline"])]
    with mock.patch.object(line_block, "pack", pack_python):
        by_python = codec.encode_batch(batch)
    assert codec.encode_batch(batch) == by_python
    with mock.patch.object(line_block, "unpack", unpack_python):
        assert codec.decode_batch(by_python) == batch
    assert codec.decode_batch(by_python) == batch


@compiled_only
def test_packing_and_unpacking_do_not_leak() -> None:
    assert COMPILED is not None
    head = b"head"
    lines = [f"line {n} " + "x" * (n % 50) for n in range(500)] + ["é", "\udcff", ""]
    packed = COMPILED.pack(head, lines)

    def run(times: int) -> None:
        for _ in range(times):
            COMPILED.pack(head, lines)
            COMPILED.unpack(packed, len(head), len(lines))
            outcome(COMPILED.unpack, packed, len(head), len(lines) + 1)
            outcome(COMPILED.unpack, packed[:-1], len(head), len(lines))
            with pytest.raises(TypeError):
                COMPILED.pack(head, [*lines[:3], None])

    assert_no_leak(run, 500, (head, packed, lines[0], lines[-2]))


def assert_no_leak(run: Callable[[int], None], times: int, watched: tuple[object, ...]) -> None:
    """``run(times)`` keeps no memory (traced, after a warm-up) and no references to
    ``watched``."""
    run(50)
    gc.collect()
    counts = [sys.getrefcount(o) for o in watched]
    tracemalloc.start()
    try:
        run(20)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run(times)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown
    assert [sys.getrefcount(o) for o in watched] == counts


NAMES = st.lists(st.lists(st.text(max_size=3), max_size=4).map(tuple), min_size=1, max_size=5)
"""A names table: tuples of metadata names, the empty one among them."""


@compiled_only
@settings(max_examples=500, deadline=None)
@given(NAMES, st.data())
def test_the_compiled_pair_sets_match_the_python_ones_and_fail_alike(
        shapes: list[tuple[str, ...]], data: st.DataObject) -> None:
    assert COMPILED is not None
    index = data.draw(st.lists(st.integers(0, len(shapes) - 1), max_size=20))
    values = [f"v{n}" for n in range(sum(len(shapes[at]) for at in index))]
    made = COMPILED.pair_sets(shapes, index, values)
    assert made == pair_sets_python(shapes, index, values)
    assert [tuple(name for name, _ in pairs) for pairs in made] == [shapes[at] for at in index]
    assert [value for pairs in made for _, value in pairs] == values
    if data.draw(st.booleans()):  # damaged: a value more or less, an index off the table
        values = [*values, "extra"] if data.draw(st.booleans()) else values[:-1]
    if data.draw(st.booleans()):
        index = [*index, data.draw(st.sampled_from([-1, len(shapes)]))]
    assert outcome(COMPILED.pair_sets, shapes, index, values) \
        == outcome(pair_sets_python, shapes, index, values)


@compiled_only
def test_pair_sets_do_not_leak_and_refuse_what_is_not_lists_of_tuples() -> None:
    assert COMPILED is not None
    shapes = [("call_id", "method"), ("a",)]
    index = [0, 1, 0] * 100
    values = [f"value {n}" for n in range(500)]

    def run(times: int) -> None:
        for _ in range(times):
            COMPILED.pair_sets(shapes, index, values)
            outcome(COMPILED.pair_sets, shapes, index, values[:-1])
            outcome(COMPILED.pair_sets, shapes, [*index, 2], values)

    assert_no_leak(run, 300, (shapes[0][0], values[0], values[-1]))
    with pytest.raises(TypeError):
        COMPILED.pair_sets([["a"]], [0], ["v"])  # a shape that is a list
    with pytest.raises(TypeError):
        COMPILED.pair_sets(tuple(shapes), index, values)  # a tuple


PAIR_SETS = st.lists(st.lists(st.tuples(st.sampled_from(["call_id", "method", "c"]),
                                        st.text(max_size=3)), max_size=3).map(tuple),
                     max_size=20)
"""Lines' metadata: few distinct names, as a pipeline makes them."""


@compiled_only
@settings(max_examples=500, deadline=None)
@given(PAIR_SETS, st.booleans())
def test_the_compiled_split_matches_the_python_one_and_pair_sets_undo_it(
        sets: list[tuple[tuple[str, str], ...]], copied_names: bool) -> None:
    assert COMPILED is not None
    if copied_names:  # equal names that are not the same objects: found by value
        sets = [tuple(("".join(list(name)), value) for name, value in pairs) for pairs in sets]
    values: list[str] = ["before"]
    table, index = COMPILED.split_pair_sets(sets, values)
    expected: list[str] = ["before"]
    assert (table, index) == split_pair_sets_python(sets, expected)
    assert values == expected
    assert len(set(table)) == len(table)
    assert COMPILED.pair_sets(table, index, values[1:]) == sets


@compiled_only
@pytest.mark.parametrize("sets", [[[("a", "1")]], [(("a", "1", "x"),)], [(["a", "1"],)],
                                  [("a",)]])
def test_a_split_of_what_is_not_tuples_of_pairs_is_a_type_error(sets: list[object]) -> None:
    assert COMPILED is not None
    for split in (COMPILED.split_pair_sets, split_pair_sets_python):
        with pytest.raises(TypeError):
            split(sets, [])  # type: ignore[arg-type]


@compiled_only
def test_splitting_does_not_leak() -> None:
    assert COMPILED is not None
    sets: list[tuple[tuple[str, str], ...]] = [
        (("call_id", f"id {n}"), ("method", "INVITE")) for n in range(300)]
    sets += [(("other", "x"),), ()]

    def run(times: int) -> None:
        for _ in range(times):
            COMPILED.split_pair_sets(sets, [])
            with pytest.raises(TypeError):
                COMPILED.split_pair_sets([*sets, (("bad",),)], [])

    assert_no_leak(run, 300, (sets[0][0][0], sets[0][0][1], sets[-2][0]))
