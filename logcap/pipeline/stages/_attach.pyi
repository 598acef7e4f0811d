"""Types of the compiled labels/structured_metadata loops (``_attach.c``; ``attach.py`` is
their specification)."""

from collections.abc import Callable

Pairs = tuple[tuple[str, str], ...]
Merge = Callable[[Pairs | None, Pairs, bool], Pairs]

def attach(fields: list[dict[str, str] | None], pairs: tuple[tuple[str, str], ...],
           target: list[Pairs | None], merge: Merge, /) -> None:
    """``attach.py``'s ``_attach`` on the batch's lists, in place."""

def attach_shared(fields: list[dict[str, str] | None], names: tuple[str, ...],
                  sources: tuple[str, ...], target: list[Pairs | None],
                  cache: dict[tuple[str | None, ...], Pairs], limit: int, merge: Merge,
                  /) -> None:
    """``attach.py``'s ``_attach_shared`` on the batch's lists, in place."""
