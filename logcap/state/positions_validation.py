"""Whether a stored file position can still be used: :func:`validate_file` and :class:`Validity`.

On restart, each file source asks before resuming from its stored position: the file at the
stored path may be the same file, unchanged up to the offset (resume), another file (restart
from 0), gone, or the same inode cut or rewritten (truncated). The answer is taken from the file
as it is now (its ``stat``, its first bytes and the bytes before the offset, compared with the
entry's ``(dev, ino)``, ``fingerprint`` and ``prefix_hash``); see :func:`validate_file` for the
exact rules. Checking never raises and never changes the file or the store.
"""

from __future__ import annotations

import enum
import os
import stat

from logcap.state.file_identity import fingerprint_matches, hash_prefix
from logcap.state.positions_entries import FilePosition

__all__ = ["Validity", "validate_file"]


class Validity(enum.Enum):
    """Whether a stored file position can be used (see :func:`validate_file`)."""

    RESUME = "resume"
    """Same file, unchanged up to the offset: continue from the offset."""
    RESTART_FROM_ZERO = "restart_from_zero"
    """Another file lives at the path now: read it from 0 (and look for the old one renamed)."""
    MISSING = "missing"
    """The path does not name a readable regular file any more."""
    TRUNCATED = "truncated"
    """Same inode, but cut or rewritten before the offset: read the tail from a rotated copy if
    there is one, then the file from 0."""


def validate_file(pos: FilePosition) -> Validity:
    """Can ``pos`` be resumed? Looks at the file at ``pos.path`` now; never raises.

    - MISSING: the path does not exist, is not a regular file, or cannot be opened.
    - RESTART_FROM_ZERO: another inode lives at the path, or the same inode no longer starts
      with the stored fingerprint (inode reuse).
    - TRUNCATED: same file, but it is shorter than the offset or than ``size_at_commit``, or the
      bytes before the offset changed (``prefix_hash``): it was truncated, perhaps rewritten.
    - RESUME: same ``(dev, ino)``, same first bytes, same bytes before the offset. Also when
      only ``st_dev`` changed but the inode, the fingerprint and the prefix hash all match:
      device numbers are not stable across reboots for some file systems and bind mounts.
    """
    try:
        fd = os.open(pos.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return Validity.MISSING
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Validity.MISSING
        if st.st_ino != pos.ino:
            return Validity.RESTART_FROM_ZERO
        shrunk = st.st_size < pos.offset or st.st_size < pos.size_at_commit
        head_same = fingerprint_matches(pos.fingerprint, fd)
        tail_same = not pos.prefix_hash or hash_prefix(fd, pos.offset) == pos.prefix_hash
        if st.st_dev != pos.dev:
            if shrunk or not head_same or not tail_same:
                return Validity.RESTART_FROM_ZERO
            return Validity.RESUME
        if shrunk:
            return Validity.TRUNCATED
        if not head_same:
            return Validity.RESTART_FROM_ZERO
        if not tail_same:
            return Validity.TRUNCATED
        return Validity.RESUME
    except OSError:
        return Validity.MISSING
    finally:
        os.close(fd)
