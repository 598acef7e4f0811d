"""State that must survive a restart: source positions, the disk buffer, in-flight batches, DLQ.

Every file here is versioned, written crash-safely (:mod:`logcap.state.atomic`: temporary file,
fsync, rename, fsync of the directory) and read defensively: a corrupt file is set aside (never
deleted), recovered from its backup or its valid prefix, and the problem is reported so the
caller logs it loudly.
"""

__all__: list[str] = []
