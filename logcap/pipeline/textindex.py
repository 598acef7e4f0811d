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

__all__ = ["SEPARATOR", "TextIndex"]

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
