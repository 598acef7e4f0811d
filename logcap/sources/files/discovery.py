"""Which files to tail: expand include globs, drop excludes, report what cannot be read.

:func:`scan` is called at start and re-called periodically (and on directory events) so new
files are picked up. It never raises for a file-system problem: unreadable directories and
files come back in :attr:`ScanResult.errors` as ``(path, reason)`` so the caller can log them
(once per path, preferably) and count them.

Semantics
    - **Patterns** follow :mod:`glob` with ``recursive=True``: ``*``, ``?``, ``[...]`` match
      within one path component; ``**`` matches zero or more directories; names starting with
      ``.`` match only a pattern component that starts with ``.`` (``*`` and ``**`` skip
      them). A trailing ``**`` matches every file below. Relative patterns are made absolute
      against the current directory, so the returned paths (position keys) do not depend on it.
      The expansion is logcap's own, not :func:`glob.glob`, because ``glob`` silently skips
      directories it cannot read; here they are reported.
    - ``**`` follows symbolic links to directories, and guards against loops (a directory
      already on the current descent is not entered again) and depth
      (:data:`MAX_RECURSION_DEPTH`).
    - **Excludes** are :func:`fnmatch.fnmatchcase` patterns on the full path (where ``*``
      also matches ``/``: ``/var/log/*.gz`` excludes ``/var/log/a/b.gz`` too).
    - **Only regular files** are kept. Directories, FIFOs, sockets and devices are skipped
      silently (a ``*`` often matches directories).
    - **Symbolic links** to regular files are followed: the *link's* path is the source path (it
      is what the user named), the ``stat`` (and so the identity) is the target's. A dangling
      link, or a link loop, is reported as an error.
    - **Aliases.** If two matched paths are the same file (a link and its target, two links, or
      hard links), only one is kept, so no file is tailed twice: the path that is not a
      symbolic link, else the smallest path. The skipped path is listed in
      :attr:`ScanResult.aliases`.
    - **Unreadable**: a directory that cannot be listed, or a file the process may not read
      (``os.access(R_OK)``), is an error ``(path, "permission denied")``, never raised.
      A file or directory that vanishes during the scan is ignored.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "MAX_RECURSION_DEPTH",
    "ScanError",
    "ScanResult",
    "has_magic",
    "matches",
    "scan",
]

MAX_RECURSION_DEPTH = 32
"""How many directories deep ``**`` descends, at most."""

REASON_PERMISSION_DENIED = "permission denied"
REASON_DANGLING_SYMLINK = "dangling symlink"
REASON_SYMLINK_LOOP = "symlink loop"

_MAGIC = re.compile(r"[*?[]")
_VANISHED = (errno.ENOENT, errno.ENOTDIR)


class ScanError(NamedTuple):
    """A path that matched but could not be examined or read, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The files to tail (path -> ``stat`` of the file, links followed), and the problems."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    errors: list[ScanError] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    """Skipped path -> the kept path that is the same file."""
    links: set[str] = field(default_factory=set)
    """The paths in ``files`` that are symbolic links (their writes make inotify events in
    the target's directory, not the link's)."""
    unmatched: list[str] = field(default_factory=list)
    """Include patterns that select no file now (none of their paths, after the excludes, is
    a file kept, an alias of one, or an error): for ``/health`` and ``check-config``."""


def has_magic(pattern: str) -> bool:
    """Whether ``pattern`` contains glob wildcards."""
    return _MAGIC.search(pattern) is not None


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return REASON_PERMISSION_DENIED
    if exc.errno == errno.ELOOP:
        return REASON_SYMLINK_LOOP
    return exc.strerror or type(exc).__name__


def _hidden(name: str) -> bool:
    return name.startswith(".")


class _Expander:
    """Expands one pattern at a time, recording directories it cannot list."""

    def __init__(self, errors: list[ScanError]) -> None:
        self._errors = errors
        self._reported: set[str] = set()

    def _error(self, path: str, exc: OSError) -> None:
        if path not in self._reported:
            self._reported.add(path)
            self._errors.append(ScanError(path, _reason(exc)))

    def _entries(self, dirpath: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(dirpath) as it:
                return list(it)
        except OSError as exc:
            if exc.errno not in _VANISHED:
                self._error(dirpath, exc)
            return []

    def expand(self, pattern: str) -> Iterator[str]:
        pattern = os.path.abspath(pattern)
        components = pattern.split(os.sep)[1:]
        if components and components[-1] == "**":
            components.append("*")
        yield from self._walk(os.sep, components, 0, frozenset(), 0)

    def _walk(
        self,
        dirpath: str,
        comps: list[str],
        i: int,
        ancestors: frozenset[tuple[int, int]],
        depth: int,
    ) -> Iterator[str]:
        if i == len(comps):
            yield dirpath
            return
        comp = comps[i]
        last = i == len(comps) - 1
        if comp == "**":
            yield from self._walk(dirpath, comps, i + 1, ancestors, depth)
            if depth >= MAX_RECURSION_DEPTH:
                return
            for entry in self._entries(dirpath):
                if _hidden(entry.name) or not _is_dir(entry):
                    continue
                key = _dir_key(entry)
                if key is None or key in ancestors:
                    continue
                yield from self._walk(entry.path, comps, i, ancestors | {key}, depth + 1)
            return
        if not has_magic(comp):
            path = os.path.join(dirpath, comp)
            if last:
                yield path
            else:
                yield from self._walk(path, comps, i + 1, ancestors, depth)
            return
        for entry in self._entries(dirpath):
            if _hidden(entry.name) and not comp.startswith("."):
                continue
            if not fnmatch.fnmatchcase(entry.name, comp):
                continue
            if last:
                yield entry.path
            elif _is_dir(entry):
                yield from self._walk(entry.path, comps, i + 1, ancestors, depth)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _dir_key(entry: os.DirEntry[str]) -> tuple[int, int] | None:
    try:
        st = entry.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _match_components(comps: list[str], names: list[str]) -> bool:
    if not comps:
        return not names
    comp = comps[0]
    if comp == "**":
        if _match_components(comps[1:], names):
            return True
        return bool(names) and len(names) > 1 and not _hidden(names[0]) \
            and _match_components(comps, names[1:])
    if not names:
        return False
    name = names[0]
    if has_magic(comp):
        if _hidden(name) and not comp.startswith("."):
            return False
        if not fnmatch.fnmatchcase(name, comp):
            return False
    elif comp != name:
        return False
    return _match_components(comps[1:], names[1:])


def matches(path: str, includes: Iterable[str], excludes: Iterable[str] = ()) -> bool:
    """Whether :func:`scan` would select ``path`` by its name (its file type not looked at):
    an include pattern matches it component by component, with the same ``**`` and hidden-name
    rules, and no exclude does. For deciding about a name from a directory event at once."""
    path = os.path.abspath(path)
    if any(fnmatch.fnmatchcase(path, ex) for ex in excludes):
        return False
    names = path.split(os.sep)[1:]
    for pattern in includes:
        comps = os.path.abspath(pattern).split(os.sep)[1:]
        if comps and comps[-1] == "**":
            comps.append("*")
        if _match_components(comps, names):
            return True
    return False


def scan(includes: Iterable[str], excludes: Iterable[str] = ()) -> ScanResult:
    """The regular files matched by ``includes`` and not by ``excludes``; see the module doc."""
    exclude_patterns = list(excludes)
    result = ScanResult()
    expander = _Expander(result.errors)
    seen: set[str] = set()
    by_identity: dict[tuple[int, int], str] = {}
    is_link: dict[str, bool] = {}

    selected: dict[str, list[str]] = {}
    for pattern in includes:
        paths = selected.setdefault(pattern, [])
        for path in expander.expand(pattern):
            if exclude_patterns and any(fnmatch.fnmatchcase(path, ex)
                                        for ex in exclude_patterns):
                continue
            paths.append(path)
            if path in seen:
                continue
            seen.add(path)
            examined = _examine(path, result.errors)
            if examined is None:
                continue
            st, link = examined
            key = (st.st_dev, st.st_ino)
            kept = by_identity.get(key)
            if kept is None:
                by_identity[key] = path
                is_link[path] = link
                result.files[path] = st
                continue
            if (link, path) < (is_link[kept], kept):
                del result.files[kept]
                result.aliases[kept] = path
                by_identity[key] = path
                is_link[path] = link
                result.files[path] = st
            else:
                result.aliases[path] = kept

    for skipped, kept in list(result.aliases.items()):
        while kept in result.aliases:
            kept = result.aliases[kept]
        result.aliases[skipped] = kept
    result.links.update(path for path in result.files if is_link[path])
    reported = {error.path for error in result.errors}
    result.unmatched.extend(
        pattern for pattern, paths in selected.items()
        if not any(p in result.files or p in result.aliases or p in reported for p in paths))
    ordered = dict(sorted(result.files.items()))
    result.files.clear()
    result.files.update(ordered)
    return result


def _examine(path: str, errors: list[ScanError]) -> tuple[os.stat_result, bool] | None:
    """``(stat, is_link)`` for a readable regular file; None otherwise (errors recorded)."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        if exc.errno not in _VANISHED:
            errors.append(ScanError(path, _reason(exc)))
        return None
    link = stat.S_ISLNK(lst.st_mode)
    if link:
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno in _VANISHED:
                errors.append(ScanError(path, REASON_DANGLING_SYMLINK))
            else:
                errors.append(ScanError(path, _reason(exc)))
            return None
    else:
        st = lst
    if not stat.S_ISREG(st.st_mode):
        return None
    if not os.access(path, os.R_OK):
        if os.path.lexists(path):  # not a file that vanished meanwhile (a rotation)
            errors.append(ScanError(path, REASON_PERMISSION_DENIED))
        return None
    return st, link
