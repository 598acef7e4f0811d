"""Is this compressed file the tail of a file the tailer already read?

logrotate's ``compress`` (without ``delaycompress``) turns ``app.log.1`` into
``app.log.1.gz`` right after the rotation; a glob like ``app.log*`` then matches a compressed
copy of bytes logcap has already read (maybe all of them). :func:`continued_file` compares the
first bytes of the *decompressed* stream with the fingerprint of each file the tailer
followed (:class:`~logcap.sources.files.generation.ClosedFile`: its first-bytes fingerprint,
the offset read and committed, the hash of the bytes before it): the one whose fingerprint the
stream starts with, and whose bytes before its offset are the stream's bytes there, is the
file this one was compressed from; reading continues from its offset. A fingerprint of an
empty file (``"0:…"``) proves nothing and matches nothing. A stream that does not reach far
enough yet to tell (its compressor is still writing it) raises :class:`NotYetWritten`: the
caller looks again later.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from logcap.sources.files.decompress import DecompressedStream
from logcap.sources.files.generation import ClosedFile
from logcap.state.file_identity import FINGERPRINT_BYTES, PREFIX_HASH_BYTES, digest_bytes

__all__ = ["NotYetWritten", "continued_file", "starts_with"]


class NotYetWritten(Exception):
    """The compressed file is still being written: too little of it to compare yet."""


def _read(stream: DecompressedStream, size: int, offset: int) -> bytes:
    data = stream.pread(size, offset)
    if len(data) < size and not stream.complete:
        raise NotYetWritten(f"{stream.produced} bytes decompressed so far")
    return data


def starts_with(stream: DecompressedStream, fingerprints: Collection[str]) -> set[str]:
    """Those of ``fingerprints`` (``"<n>:<hex>"``, n > 0) the decompressed stream starts
    with."""
    longest = max((int(fp.partition(":")[0]) for fp in fingerprints), default=0)
    head = _read(stream, min(longest, FINGERPRINT_BYTES), 0)
    found = set()
    for fp in fingerprints:
        length = int(fp.partition(":")[0])
        if 0 < length <= len(head) and digest_bytes(head[:length]) == fp:
            found.add(fp)
    return found


def continued_file(stream: DecompressedStream,
                   candidates: Iterable[ClosedFile]) -> ClosedFile | None:
    """The file among ``candidates`` that ``stream`` is a compressed copy of (module
    docstring), the one read furthest if several; None if none."""
    candidates = [c for c in candidates if not c.identity.fingerprint.startswith("0:")]
    fingerprints = {c.identity.fingerprint for c in candidates}
    matching = starts_with(stream, fingerprints) if fingerprints else set()
    best: ClosedFile | None = None
    for closed in sorted(candidates, key=lambda c: c.offset):  # forward: no restart
        if closed.identity.fingerprint not in matching:
            continue
        if closed.offset and closed.prefix:
            start = max(0, closed.offset - PREFIX_HASH_BYTES)
            if digest_bytes(_read(stream, closed.offset - start, start)) != closed.prefix:
                continue
        if best is None or closed.offset > best.offset:
            best = closed
    return best
