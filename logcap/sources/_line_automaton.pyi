"""Types of the compiled line automaton (``_line_automaton.c``; ``line_automaton.py``'s
``stops`` is its specification)."""

import re
from collections.abc import Callable

def stops(packed: bytes, lines: list[str], on_match: bool, first: int,
          search: Callable[[str], re.Match[str] | None], /) -> list[int]:
    """``first + i`` for each line ``i`` in which the pattern finds a match (``on_match``) or
    none, ascending; ``search`` decides a line the automaton cannot."""
