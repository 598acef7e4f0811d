"""One process per state directory: an exclusive ``flock`` on a lock file holding the PID.

:func:`lock_directory` creates the directory if needed, opens ``<directory>/<lock name>``
(created ``0644``, never deleted), takes ``flock(LOCK_EX | LOCK_NB)`` on it and writes the
holder's PID into it (truncated first, then ``<pid>\\n``). The lock belongs to the open file
description: it lasts while the returned descriptor is open (closing it, or the process's
end, even by ``kill -9``, releases it), and a second :func:`lock_directory` of the same
directory and name fails even inside the same process.

When the lock is held, :class:`DirectoryInUse` names the holder's PID as read from the file
(None when the holder has not written it yet, or the file is not ours). Any other problem
(the directory cannot be created, is not writable) is :class:`DirectoryUnusable` with the
``strerror``. Used for the disk buffer (``buffer.lock``), the positions (``positions.lock``)
and the DLQ (``dlq.lock``) directories.
"""

from __future__ import annotations

import errno
import fcntl
import os

__all__ = ["DirectoryInUse", "DirectoryLockError", "DirectoryUnusable", "lock_directory",
           "lock_holder"]

LOCK_FILE_MODE = 0o644
PID_READ_BYTES = 32


class DirectoryLockError(Exception):
    """The directory cannot be locked; the message names it and says why."""

    def __init__(self, message: str, directory: str) -> None:
        super().__init__(message)
        self.directory = directory


class DirectoryUnusable(DirectoryLockError):
    """The directory cannot be created, or is not readable and writable."""


class DirectoryInUse(DirectoryLockError):
    """Another open file description (another agent) holds the lock; ``pid`` is its PID as it
    wrote it, None if unknown."""

    def __init__(self, message: str, directory: str, pid: int | None) -> None:
        super().__init__(message, directory)
        self.pid = pid


def lock_holder(path: str) -> int | None:
    """The PID written in the lock file ``path`` (None if absent, empty or not a number)."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(PID_READ_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_directory(directory: str, lock_name: str, what: str) -> int:
    """Create ``directory`` if needed, lock ``lock_name`` in it and write our PID; return the
    descriptor (keep it open while the directory is in use). ``what`` names the directory in
    messages (``"positions directory"``)."""
    path = os.path.join(directory, lock_name)
    try:
        os.makedirs(directory, exist_ok=True)
        if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not readable and writable")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as exc:
        raise DirectoryUnusable(f"{what} {directory!r} is unusable: {exc.strerror or exc}",
                                directory) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise DirectoryUnusable(f"{what} {directory!r} cannot be locked: {exc.strerror}",
                                    directory) from exc
        pid = lock_holder(path)
        holder = f"PID {pid}" if pid is not None else "a process whose PID is not known yet"
        raise DirectoryInUse(f"{what} {directory!r} is in use by another logcap ({holder}, "
                             f"lock {path})", directory, pid) from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # the lock holds without the PID (a full disk): only the message loses it
        pass
    return fd
