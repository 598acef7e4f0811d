"""What an admin backend raises: :class:`BackendTimeout` (the routes answer 503)."""

__all__ = ["BackendTimeout"]


class BackendTimeout(Exception):
    """An actor did not answer in time (or is not running): the request gets 503."""
