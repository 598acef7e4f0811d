"""Crash-safe replacement of a small file: write a temporary, fsync, rename, fsync the directory.

:func:`atomic_write_bytes` guarantees that after a crash at any instant (``kill -9`` or power
loss) ``path`` holds either its old content or its new content, complete, never a mix or a
truncated file. The sequence:

1. write ``data`` to a new temporary file in the same directory (``<path>.tmp-<pid>.<random>``,
   created exclusively), ``fsync`` it, close it;
2. with ``keep_backup``: make ``<path>.bak`` the previous content of ``path``, by hard-linking
   the current file to a temporary name and renaming that over ``<path>.bak`` (no copy, and
   ``path`` itself is never missing); on a file system without hard links, copy + fsync;
3. ``os.replace`` the temporary over ``path`` (atomic on POSIX);
4. ``fsync`` the directory, so the renames are durable.

A crash leaves at worst a stray temporary file, which :func:`remove_stale_temp_files` deletes
(the positions store calls it on load).

:func:`create_for_append` makes a new append-only file (a buffer or DLQ segment) whose name
survives a crash before it is first written.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import time

__all__ = [
    "BACKUP_SUFFIX",
    "TEMP_INFIX",
    "atomic_write_bytes",
    "create_for_append",
    "fsync_directory",
    "move_aside",
    "remove_stale_temp_files",
]

BACKUP_SUFFIX = ".bak"
TEMP_INFIX = ".tmp-"
DEFAULT_FILE_MODE = 0o644
_RANDOM_BYTES = 4
_ASIDE_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_MAX_ASIDE_ATTEMPTS = 1000
_NO_HARD_LINKS = (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK)


def _temp_name(path: str) -> str:
    return f"{path}{TEMP_INFIX}{os.getpid()}.{secrets.token_hex(_RANDOM_BYTES)}"


def fsync_directory(dirpath: str) -> None:
    """Make the directory's entries (creations, renames) durable."""
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``data``, fsynced; remove it again on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _refresh_backup(path: str, mode: int) -> None:
    """Make ``path + BACKUP_SUFFIX`` hold what ``path`` holds now (nothing if it does not exist)."""
    backup = path + BACKUP_SUFFIX
    temp = _temp_name(backup)
    try:
        os.link(path, temp)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:
            with open(path, "rb") as current:
                previous = current.read()
        except FileNotFoundError:
            return
        _write_new(temp, previous, mode)
    try:
        os.replace(temp, backup)
    except BaseException:
        _unlink_quietly(temp)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    keep_backup: bool = False,
    mode: int = DEFAULT_FILE_MODE,
) -> None:
    """Replace ``path``'s content with ``data``, crash-safely (see the module docstring).

    With ``keep_backup``, the previous content (if any) is kept as ``path + ".bak"``.
    Raises OSError (ENOSPC, EACCES ...) with ``path`` unchanged and no temporary left behind.
    """
    target = os.fspath(path)
    dirpath = os.path.dirname(target) or "."
    temp = _temp_name(target)
    _write_new(temp, data, mode)
    try:
        if keep_backup:
            _refresh_backup(target, mode)
        os.replace(temp, target)
    except BaseException:
        _unlink_quietly(temp)
        raise
    fsync_directory(dirpath)


def create_for_append(path: str, mode: int = DEFAULT_FILE_MODE) -> int:
    """Create ``path`` (it must not exist) for appending and make its directory entry durable;
    returns the open descriptor. On an error nothing is left behind and OSError is raised."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        fsync_directory(os.path.dirname(path) or ".")
    except OSError:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[str]:
    """Delete temporaries a crash left next to ``path`` (and its backup); return their paths."""
    target = os.fspath(path)
    removed = []
    for prefix in (target + TEMP_INFIX, target + BACKUP_SUFFIX + TEMP_INFIX):
        for stale in glob.glob(glob.escape(prefix) + "*"):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                continue
            removed.append(stale)
    return removed


def move_aside(path: str | os.PathLike[str], infix: str, now: float) -> str:
    """Rename ``path`` to ``<path><infix><UTC time of now>[-n]``, never overwriting; return it.

    For files found corrupt: they are kept for a post-mortem, never deleted. The new name is
    claimed with a hard link (which fails if it exists) and the old name then removed, so two
    corrupt files set aside in the same second both survive. Raises OSError if ``path`` cannot
    be renamed.
    """
    source = os.fspath(path)
    stamp = time.strftime(_ASIDE_TIME_FORMAT, time.gmtime(now))
    base = f"{source}{infix}{stamp}"
    for attempt in range(_MAX_ASIDE_ATTEMPTS):
        target = base if attempt == 0 else f"{base}-{attempt}"
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if os.path.exists(target):
                continue
            os.rename(source, target)
        else:
            os.unlink(source)
        fsync_directory(os.path.dirname(source) or ".")
        return target
    raise FileExistsError(errno.EEXIST, "too many files already set aside", base)
