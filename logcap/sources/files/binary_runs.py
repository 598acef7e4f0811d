"""Runs of bytes that cannot be log text, dropped from lines: NULs and control characters.

A crash can leave a log file with a region of NUL bytes (the file system extended the file
but the data never reached the disk); a sparse file reads as NULs in its holes; a binary
blob written into a log is full of control bytes. Shipped as text, 64 KiB of NULs would
become one huge line in front of the next real one. :func:`drop_binary_runs` removes from
each line:

- every run of NUL characters (``\\x00``), whatever its length;
- in a line that had a NUL, also every run of :data:`MIN_CONTROL_RUN` or more other C0
  control characters or DEL (tab, ESC and the line-ending characters excepted: ESC starts
  ANSI colours, and single control characters are legitimate in some logs).

A line that was nothing but such bytes is dropped entirely; any other line keeps its text.
Detection is a ``"\\x00" in`` test over the joined batch (one ``memchr``), so a clean batch
costs a join and a scan and no per-line work. Lines are already decoded: what is compared is
the characters the decoder produced (a NUL byte decodes to ``\\x00`` in every codec logcap
accepts, since they all write ASCII as single bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MIN_CONTROL_RUN", "Cleaned", "drop_binary_runs"]

MIN_CONTROL_RUN = 4
"""Shortest run of control characters (other than NUL) dropped from a line with a NUL."""

_RUNS = re.compile(f"\x00+|[\x01-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]{{{MIN_CONTROL_RUN},}}")


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The lines with binary runs removed; ``removed_chars`` how many characters were taken
    out, ``dropped_lines`` how many lines were nothing but binary runs (and are gone)."""

    lines: list[str]
    removed_chars: int = 0
    dropped_lines: int = 0


def drop_binary_runs(lines: list[str]) -> Cleaned:
    """``lines`` without their NUL runs (and control runs, in lines with a NUL); the same
    list object when there was nothing to remove."""
    if "\x00" not in "".join(lines):
        return Cleaned(lines)
    out: list[str] = []
    removed = dropped = 0
    for line in lines:
        if "\x00" not in line:
            out.append(line)
            continue
        kept = _RUNS.sub("", line)
        removed += len(line) - len(kept)
        if kept:
            out.append(kept)
        else:
            dropped += 1
    return Cleaned(out, removed, dropped)
