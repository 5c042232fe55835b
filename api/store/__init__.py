"""The revisioned object store: the contract, and backends chosen by URL.

* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` — the embedded default.
  Query options: ``synchronous=full|normal``, ``busy_timeout=SECONDS``.
* ``mongodb://host:port/database`` — for clusters; any MongoDB wire-protocol server. Besides
  pymongo's own options: ``min_compact_age=SECONDS`` (default 60), how old a change must be
  before compaction may remove it.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from swarmapply.api.store.base import (
    AlreadyExists,
    BackendError,
    Conflict,
    Gone,
    InvalidObject,
    ListResult,
    NotFound,
    Object,
    Store,
    StoreError,
    StoreUnavailable,
    WatchEvent,
    redact_url,
)

__all__ = [
    "AlreadyExists",
    "BackendError",
    "Conflict",
    "Gone",
    "InvalidObject",
    "ListResult",
    "NotFound",
    "Object",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "WatchEvent",
    "open_store",
    "redact_url",
]


def open_store(url: str, *, must_exist: bool = False) -> Store:
    """Open the store a URL names.

    Args:
        url: ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``mongodb://...``.
        must_exist: Refuse a SQLite file that does not exist yet instead of creating it (for
            commands that only read: a mistyped path would otherwise look like an empty
            cluster). MongoDB databases are always opened as they are.

    Raises:
        BackendError: the URL's scheme is not one swarmapply knows, or it is malformed, or
            ``must_exist`` and the SQLite file does not exist.
    """
    shown = redact_url(url)
    if url.startswith("sqlite:///"):
        from swarmapply.api.store.sqlite import SQLiteStore

        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path:
            raise BackendError(f"store URL {shown!r} names no file: use sqlite:///path/state.db")
        if must_exist and not os.path.exists(path):
            raise BackendError(
                f"no store at {os.path.abspath(path)} (from {shown!r}): nothing was applied "
                "there yet; check --store or $SWARMAPPLY_STORE"
            )
        options = {key: values[-1] for key, values in parse_qs(query).items()}
        unknown = set(options) - {"synchronous", "busy_timeout"}
        if unknown:
            raise BackendError(
                f"store URL {shown!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                "known: synchronous, busy_timeout"
            )
        try:
            busy_timeout = float(options.get("busy_timeout", 10.0))
        except ValueError:
            busy_timeout = -1.0
        if not 0 <= busy_timeout < 86400:
            raise BackendError(f"store URL {shown!r}: busy_timeout must be a number of seconds")
        return SQLiteStore(
            path,
            url=url,
            synchronous=options.get("synchronous", "full"),
            busy_timeout=busy_timeout,
        )
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from swarmapply.api.store.mongodb import MongoStore

        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        ours = dict(pair for pair in pairs if pair[0] == "min_compact_age")
        rest = urlunsplit(parts._replace(query=urlencode([p for p in pairs if p[0] not in ours])))
        try:
            min_compact_age = float(ours.get("min_compact_age", 60.0))
        except ValueError:
            min_compact_age = -1.0
        if not 0 <= min_compact_age < 10**9:
            raise BackendError(f"store URL {shown!r}: min_compact_age must be a number of seconds")
        return MongoStore(rest, min_compact_age=min_compact_age)
    scheme = urlsplit(url).scheme or url
    raise BackendError(
        f"unknown store URL {shown!r} (scheme {scheme!r}): use sqlite:///path/state.db or "
        "mongodb://host:port/database"
    )
