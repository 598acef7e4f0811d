"""``python -m logcap`` is the ``logcap`` command."""

import sys

from logcap.cli import main

sys.exit(main())
