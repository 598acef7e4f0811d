"""Which texts of a batch contain a string, found with one scan of the batch per string.

Testing each text in a Python loop costs a loop step and a test per text, for every string;
most strings a stage looks for (a ``Call-ID`` header, ``method=``) are in few lines. A
:class:`TextIndex` joins the texts once with :data:`SEPARATOR` and finds each string with
``str.find`` over the whole, jumping to the next text after each hit: the cost follows the
hits, not the number of texts. A string found in many texts costs more this way (a hit is
dearer than a test), so the scan gives up past a limit and the caller tests text by text.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from operator import add

__all__ = ["DENSE", "RETRY_AFTER", "SEPARATOR", "Needles", "TextIndex"]

SEPARATOR = "\x00"
"""Between two texts in the joined string. A string that contains it is looked for text by
text (an occurrence could span two texts)."""


class TextIndex:
    """The texts, joined (module docstring). ``texts`` is a copy of the texts given, so the
    owner can tell whether its texts are still the ones indexed (``index.texts == texts``:
    the same strings compare by identity first)."""

    __slots__ = ("_ends", "_joined", "texts")

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self._joined = SEPARATOR.join(self.texts)
        # _ends[j]: where text j+1 starts in the joined string (text j's end + the separator)
        self._ends = list(map(add, accumulate(map(len, self.texts)),
                              range(1, len(self.texts) + 1)))

    def first_positions(self, needles: Iterable[str], limit: int) -> dict[int, int] | None:
        """Text index -> the lowest position in it where one of ``needles`` starts, for each
        text that contains one; None as soon as more than ``limit`` hits were found (a
        string in most texts is cheaper tested text by text)."""
        found: dict[int, int] = {}
        texts, joined, ends = self.texts, self._joined, self._ends
        if not texts:
            return found
        hits = 0
        for needle in needles:
            if SEPARATOR in needle:
                for j, text in enumerate(texts):
                    pos = text.find(needle)
                    if pos >= 0:
                        hits += 1
                        if pos < found.get(j, pos + 1):
                            found[j] = pos
                if hits > limit:
                    return None
                continue
            find = joined.find
            k = find(needle)
            while k >= 0:
                hits += 1
                if hits > limit:
                    return None
                j = bisect_right(ends, k)
                pos = k - (ends[j - 1] if j else 0)
                if pos < found.get(j, pos + 1):
                    found[j] = pos
                k = find(needle, ends[j])
        return found


DENSE = 8
"""Strings found in more than 1/DENSE of a batch's texts are tested text by text."""
RETRY_AFTER = 16
"""Batches after such a batch before the index is tried again for those strings."""


class Needles:
    """Strings a stage looks for in each batch's texts with a :class:`TextIndex`; after a
    batch where they were in too many texts, the index is not tried for the next
    :data:`RETRY_AFTER` batches (that costs only time: the caller then tests text by text)."""

    __slots__ = ("skip", "strings")

    def __init__(self, strings: tuple[str, ...]) -> None:
        self.strings = strings
        self.skip = 0

    def positions(self, index: TextIndex, limit: int) -> dict[int, int] | None:
        """:meth:`TextIndex.first_positions` of the strings, or None when they are (or were
        lately) in more than ``limit`` texts: then the caller tests text by text."""
        if self.skip:
            self.skip -= 1
            return None
        found = index.first_positions(self.strings, limit)
        if found is None:
            self.skip = RETRY_AFTER
        return found
