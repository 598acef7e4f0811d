"""The container source's pure parts: frames, lines, resume cursors and filters (no I/O)."""
