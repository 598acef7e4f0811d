"""Log sources: where lines come from.

``logcap.sources.files`` holds the synchronous logic for tailing files (identity, line reading,
discovery, rotation decisions); the actors that drive it live in ``logcap.actors``.
"""

__all__: list[str] = []
