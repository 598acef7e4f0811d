"""Types of the compiled opensips stage (``_opensips.c``; ``opensips.py`` is its specification)."""

from collections.abc import Callable

def parse(lines: list[str], fields: list[dict[str, str] | None], stamps: list[int],
          convert: Callable[[str, int], int | None], /) -> tuple[int, int]:
    """The opensips stage on one batch's lists, in place: ``#015#012`` to CR LF in ``lines``,
    the header's and identifiers' fields into ``fields``, ``convert(time, stamp)`` (once per
    distinct time text) into ``stamps``; the numbers of entries without a header and with a
    time that does not convert."""
