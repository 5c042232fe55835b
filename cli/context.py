"""What every command gets: a store client, the output streams, and how to print.

Commands reach the store only through :meth:`Context.store`, which returns the store
Protocol; how it is reached (an embedded file, MongoDB, later an API server) is decided here
and nowhere else. Output is plain unless stdout is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

from swarmapply.api.store import Store, open_store
from swarmapply.cli.config import store_url


@dataclass
class Context:
    """Per-invocation settings shared by all commands."""

    store_flag: str | None = None
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    debug: bool = False
    _store: Store | None = None

    @property
    def store_url(self) -> str:
        return store_url(self.store_flag)

    def store(self, *, must_exist: bool = False) -> Store:
        """The store client (opened on first use, closed by :meth:`close`).

        Args:
            must_exist: For commands that only read: an embedded store file that does not
                exist is an error rather than an empty cluster.
        """
        if self._store is None:
            self._store = open_store(self.store_url, must_exist=must_exist)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def color(self) -> bool:
        """Whether to use colour: a terminal, and NO_COLOR unset or empty (no-color.org)."""
        return self.stdout.isatty() and not os.environ.get("NO_COLOR")

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def err(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)
