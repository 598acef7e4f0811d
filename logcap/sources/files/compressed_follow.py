"""Compressed files in a tailer (by magic number, never by name): skipped and reported, or
with ``decompress`` read whole, decompressed, as a rotated file.

A compressed file is read through a :class:`~logcap.sources.files.decompress.DecompressedStream`
(offsets in the decompressed stream), from the offset of the followed file it is a compressed
copy of (:func:`~logcap.sources.files.compressed_tail.continued_file`), else from 0; not while
that file is still open or the stream too short to tell (the next scan looks again). A stream
without its end waits ``drain_grace_s`` after it stops growing, then keeps its whole lines and
is reported; corrupt data is reported and the rest skipped. A file opened empty (by the
watcher) is checked for a magic number before its first read.
"""

from __future__ import annotations

import os

from logcap.sources.files.compressed_tail import NotYetWritten, continued_file, starts_with
from logcap.sources.files.compression import compression_of, undecided
from logcap.sources.files.decompress import CorruptCompressedFile, DecompressedStream
from logcap.sources.files.file_table import FileTable, SkippedFile, log
from logcap.sources.files.generation import (
    ClosedFile,
    Generation,
)
from logcap.state.file_identity import (
    FileIdentity,
    fingerprint_matches,
    identity_of,
)


class CompressedFiles(FileTable):
    """The tailer's handling of compressed files (module docstring)."""

    def _check_compressed(self, path: str, fd: int, identity: FileIdentity) -> str | None:
        """The compression format of ``fd`` to read it decompressed (``decompress``), or None
        (a plain file); a compressed file without ``decompress`` is closed and skipped."""
        compressed = compression_of(fd)
        if compressed is not None and not self.settings.decompress:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            raise SkippedFile(f"compressed ({compressed}): skipped, never shipped as text")
        self._skipped.pop(path, None)
        return compressed

    def _still_skipped(self, path: str, st: os.stat_result) -> bool:
        """``path`` is the compressed file we skipped (same dev and inode)."""
        return self._skipped.get(path) == (st.st_dev, st.st_ino)

    def _known_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str) -> bool:
        """A compressed file read before (renamed since: ``app.log.1.gz`` -> ``.2.gz``) is
        not read again; one that grew since (its compressor was still writing it) is read on
        from its offset."""
        key = (identity.dev, identity.ino)
        done = self.finished.get(key)
        if done is None:
            return False
        if not fingerprint_matches(done.identity.fingerprint, fd):
            del self.finished[key]  # a reused inode
            return False
        if done.unchanged(os.fstat(fd)):
            os.close(fd)
            return True
        del self.finished[key]
        self._follow_compressed(path, fd, identity, fmt, resume=done)
        return True

    def _discover_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str,
                             first: bool) -> None:
        """A compressed file found by a scan: resumed from its stored position (decompressed
        again and skipped to the offset), else followed; present at the first scan with
        ``start_at: end``, only if it continues a file of the last run (like the history of
        plain files, it is not read otherwise)."""
        stored = self._stored.pop(path, [])
        mine = [p for p in stored if p.key == (identity.dev, identity.ino)
                and fingerprint_matches(p.fingerprint, fd)]
        self._pending_forget.extend(p.key for p in stored if p not in mine)
        if mine:
            pos = mine[0]
            offset = self._past_buffered(fd, identity, pos.offset, compressed=True)
            resume = ClosedFile(pos.path, identity, offset, 0, 0, "")
            self._follow_compressed(path, fd, identity, fmt, resume=resume)
        else:
            self._follow_compressed(path, fd, identity, fmt,
                                    only_continued=first and self.settings.start_at == "end")

    def _follow_compressed(self, path: str, fd: int, identity: FileIdentity, fmt: str,
                           resume: ClosedFile | None = None,
                           only_continued: bool = False) -> None:
        """Read the compressed file ``fd`` (at ``path``) decompressed, to its end, as a
        rotated file: from ``resume``'s offset, or from the offset of the followed file it is
        a compressed copy of (:func:`continued_file`, under that file's stream: one read in
        this run, or a stored position of the last run), or from 0 (``only_continued``: not
        at all, it is remembered as read).

        Not yet when it is a copy of a file still open (being read, or drained after its
        rotation: that file's reads decide the offset; a compressed copy of a live file is
        never read, its lines come from the live file), nor while it is too short to tell
        (being written): the descriptor is closed and the next scan looks again. A corrupt
        one is skipped and reported."""
        stream = DecompressedStream(fd, fmt)
        try:
            if resume is not None:
                offset, stream_path = resume.offset, resume.path
            else:
                open_plain = {gen.identity.fingerprint
                              for gen in [*self.retired, *self.current.values()]
                              if gen.stream is None and not gen.exhausted
                              and not gen.identity.fingerprint.startswith("0:")}
                if open_plain and starts_with(stream, open_plain):
                    os.close(fd)
                    return
                stored = [ClosedFile(p.path, p.identity, p.offset, 0, 0, p.prefix_hash)
                          for positions in self._stored.values() for p in positions]
                closed = continued_file(stream, [*self.finished.values(),
                                                 *self.dormant.values(), *self.gone, *stored])
                offset, stream_path = (closed.offset, closed.path) if closed else (0, path)
                if closed is None and only_continued:
                    st = os.fstat(fd)
                    os.close(fd)
                    self._remember(ClosedFile(path, identity, 0, st.st_size, st.st_mtime_ns, ""))
                    return
        except NotYetWritten:
            os.close(fd)
            return
        except CorruptCompressedFile as exc:
            os.close(fd)
            self._skipped[path] = (identity.dev, identity.ino)
            self._report_corrupt(path, exc)
            return
        if offset:
            log.info("%s: %s (%s) continues %s: reading it decompressed from offset %d",
                     self.settings.source, path, fmt, stream_path, offset)
        else:
            log.info("%s: reading %s decompressed (%s)", self.settings.source, path, fmt)
        gen = self._new_gen(stream_path, fd, identity, offset, stream)
        gen.file_path = path
        gen.retired = True
        self.retired.append(gen)

    def _report_corrupt(self, path: str, exc: CorruptCompressedFile) -> None:
        reason = (f"corrupt compressed file ({exc}): the lines before it were read, the rest "
                  "is skipped")
        self._note_problem(path, reason)

    def _truncated_for_good(self, gen: Generation) -> None:
        """A compressed file whose stream has no end and that has not grown for
        ``rotate_wait``: its complete lines were read; its partial last line is not shipped
        (it was cut); if it grows again it is read on from there."""
        gen.finished = True
        name = gen.file_path or gen.path
        fmt, size = (gen.stream.format, gen.stream.compressed_read) if gen.stream else ("?", 0)
        reason = (f"truncated compressed file ({fmt} stream without its end after {size} "
                  "bytes, unchanged for rotate_wait): its complete lines were read, its partial "
                  "last line is not shipped; read on if it grows")
        self._note_problem(name, reason)

    def _turned_compressed(self, gen: Generation) -> bool:
        """A file opened before it had bytes (the watcher opens new files at once) that turns
        out to be compressed, or may still be (the start of a magic number): not read as
        text. Then True, and it is skipped, followed decompressed, or looked at again (only a
        current file waits on a possible magic number: a rotated one is read to its end)."""
        if not gen.retired and undecided(gen.fd):
            return True
        fmt = compression_of(gen.fd)
        if fmt is None:
            return False
        path = gen.file_path or gen.path
        if gen.retired:
            self.retired.remove(gen)
        elif self.current.get(path) is gen:
            del self.current[path]
        self.generations.pop(gen.gen_id, None)
        identity = identity_of(gen.fd)
        if self.settings.decompress:
            self._follow_compressed(path, gen.fd, identity, fmt)
            return True
        os.close(gen.fd)
        self._skipped[path] = (identity.dev, identity.ino)
        reason = f"compressed ({fmt}): skipped, never shipped as text"
        self._note_problem(path, reason)
        return True
