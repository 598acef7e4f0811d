"""File sources: the pure, synchronous parts of tailing log files.

- :mod:`~logcap.state.file_identity`: which file is this? (device, inode, fingerprint of the
  first bytes) and the hash of the bytes before an offset, used to validate stored positions.
- :mod:`~logcap.sources.files.reader`: :class:`~logcap.sources.files.reader.LineReader` splits
  a file into lines in large chunks, keeps the partial last line for later, truncates huge lines.
- :mod:`~logcap.sources.files.discovery`: expands include/exclude globs into the files to tail.
- :mod:`~logcap.sources.files.compression`, :mod:`~logcap.sources.files.decompress`,
  :mod:`~logcap.sources.files.compressed_tail`: is a file compressed (by magic), its
  decompressed stream read forward in bounded chunks, and which followed file a rotated
  ``.gz`` continues.
- :mod:`~logcap.sources.files.rotation`: decides what happened to a tailed path (grew, truncated,
  rotated, deleted, inode reused) and finds a rotated copy to read an unread tail from.

Nothing here starts threads or sleeps; the tailer actors call it.
"""

__all__: list[str] = []
