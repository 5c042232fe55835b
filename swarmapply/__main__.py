"""Allows ``python -m swarmapply``."""

from swarmapply.cli.main import main

raise SystemExit(main())
