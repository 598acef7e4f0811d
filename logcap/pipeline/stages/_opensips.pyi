"""Types of the compiled opensips stage (``_opensips.c``; ``opensips.py`` is its specification)."""

from collections.abc import Callable

def parse(lines: list[str], fields: list[dict[str, str] | None], stamps: list[int],
          convert: Callable[[str, int], int | None], /) -> tuple[int, int]:
    """The opensips stage on one batch's lists, in place: ``#015#012`` to CR LF in ``lines``,
    the header's and identifiers' fields into ``fields``, ``convert(time, stamp)`` (once per
    distinct time text) into ``stamps``; the numbers of entries without a header and with a
    time that does not convert."""

def parse_attach(lines: list[str], stamps: list[int], convert: Callable[[str, int], int | None],
                 label_plan: tuple[tuple[str, int], ...],
                 labels: list[tuple[tuple[str, str], ...] | None],
                 cache: dict[tuple[str | None, ...], tuple[tuple[str, str], ...]], limit: int,
                 metadata_plan: tuple[tuple[str, int], ...],
                 metadata: list[tuple[tuple[str, str], ...] | None],
                 merge: Callable[[tuple[tuple[str, str], ...] | None,
                                  tuple[tuple[str, str], ...], bool],
                                 tuple[tuple[str, str], ...]], /) -> tuple[int, int]:
    """``parse`` with the labels and structured_metadata stages after it (``fused.py``), in
    place: the lines and stamps as ``parse`` makes them, and no fields: each entry's label
    pairs (``label_plan``: ``(name, field number)`` sorted by name; one tuple per combination
    of values, through ``cache`` of at most ``limit``) and metadata pairs (``metadata_plan``,
    in order) merged into ``labels`` and ``metadata`` with ``merge``; the numbers of entries
    without a header and with a time that does not convert."""
