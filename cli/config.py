"""Where the command finds its store: ``--store``, then ``SWARMAPPLY_STORE``, then a default.

The default is an SQLite file under the user's state directory
(``${XDG_STATE_HOME:-~/.local/state}/swarmapply/state.db``); the SQLite backend creates the
directory and gives a new file mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STORE_ENV = "SWARMAPPLY_STORE"


def default_store_url(environ: Mapping[str, str] = os.environ) -> str:
    """The embedded store's URL for this user."""
    state_home = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return "sqlite:///" + str(Path(state_home) / "swarmapply" / "state.db")


def store_url(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The store URL to use, by precedence: the flag, the environment, the default."""
    return flag or environ.get(STORE_ENV) or default_store_url(environ)
