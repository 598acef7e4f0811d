"""The ``logcap`` command line: :mod:`~logcap.cli.main` (run, check-config, version) and
:mod:`~logcap.cli.dlq` (dlq stats|list|show|reprocess, buffer verify)."""

from logcap.cli.main import main

__all__ = ["main"]
