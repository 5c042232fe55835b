"""Allows ``python -m swarmapply``."""

from swarmapply.cli.entry import run

run()
