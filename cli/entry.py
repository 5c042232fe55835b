"""The console entry point: run the command line, and end quietly when interrupted.

Kept apart from :mod:`swarmapply.cli.main` so that Ctrl-C while the program is still
importing its modules ends it with status 130 rather than a traceback.
"""

from __future__ import annotations

import sys


def run() -> None:
    """Run ``swarmapply`` with the process's arguments and exit with its status."""
    try:
        from swarmapply.cli.main import main

        code = main()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
