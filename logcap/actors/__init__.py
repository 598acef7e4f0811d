"""The application actors: sources, shards, sinks, the disk buffer, the DLQ, positions."""
