"""The embedded default store: one SQLite file, shared by any number of local processes.

Every write is one ``BEGIN IMMEDIATE`` transaction that reads the object, bumps the global
revision, writes the new state and appends to the change log; SQLite serialises writers, so
revisions commit in order and a watcher can simply read the log forward. WAL mode lets
readers (lists, watchers) run beside the writer; a busy timeout makes writers queue instead
of failing, and a writer that still finds the file locked retries with backoff before
reporting :class:`StoreUnavailable`. A cascade of deletions happens inside the same
transaction as the removal that causes it.

Watchers in other processes notice new changes by polling the log (every 50 ms by default).
Not for: several machines sharing one file over a network filesystem (use MongoDB).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from swarmapply.api.selectors import Requirement, equality_terms
from swarmapply.api.store.base import (
    BackendError,
    Gone,
    Object,
    StoreUnavailable,
    WatchEvent,
)
from swarmapply.api.store.common import Planner, StoreBase
from swarmapply.api.store.lifecycle import (
    Change,
    check_revision,
    now_rfc3339,
    owner_uids,
    plan_release_owner,
    stamp,
)

SCHEMA_VERSION = 1

#: Field selector -> column of the objects table.
COLUMNS = {
    "metadata.name": "name",
    "metadata.uid": "uid",
    "spec.job": "spec_job",
    "spec.node": "spec_node",
    "status.node": "status_node",
    "status.phase": "phase",
    "involvedObject.uid": "involved_uid",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL, rev INTEGER NOT NULL,
    spec_job TEXT, spec_node TEXT, status_node TEXT, phase TEXT, involved_uid TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_spec_job ON objects (kind, spec_job);
CREATE INDEX IF NOT EXISTS objects_spec_node ON objects (kind, spec_node);
CREATE INDEX IF NOT EXISTS objects_status_node ON objects (kind, status_node);
CREATE INDEX IF NOT EXISTS objects_phase ON objects (kind, phase);
CREATE INDEX IF NOT EXISTS objects_involved_uid ON objects (kind, involved_uid);
CREATE INDEX IF NOT EXISTS objects_uid ON objects (uid);
CREATE TABLE IF NOT EXISTS owner_refs (
    owner_uid TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (owner_uid, kind, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS owner_refs_dependent ON owner_refs (kind, name);
CREATE TABLE IF NOT EXISTS changes (
    rev INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_kind ON changes (kind, rev);
"""

_retry_locked = retry(
    retry=retry_if_exception_type(StoreUnavailable),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=2.0),
    reraise=True,
)


def _wrap(exc: sqlite3.Error, path: str) -> Exception:
    """A lock held too long is temporary; anything else (no such file, read-only, corrupt,
    disk full) needs a person."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreUnavailable(f"SQLite store {path}: {exc}")
    return BackendError(f"SQLite store {path}: {exc}")


def _column_values(obj: Object) -> tuple[Any, ...]:
    spec, status = obj.get("spec"), obj.get("status")
    spec = spec if isinstance(spec, dict) else {}
    status = status if isinstance(status, dict) else {}
    involved = obj.get("involvedObject")
    involved = involved if isinstance(involved, dict) else {}
    values = (spec.get("job"), spec.get("node"), status.get("node"), status.get("phase"))
    return tuple(v if isinstance(v, str) else None for v in (*values, involved.get("uid")))


class SQLiteStore(StoreBase):
    """A store in one SQLite file.

    Args:
        path: the database file; its directory is created, a new file gets mode 0600.
        synchronous: SQLite's ``synchronous`` setting: ``full`` (the default) survives power
            loss; ``normal`` survives process crashes and is faster.
        busy_timeout: seconds a writer waits for the lock before retrying.
        poll_interval: seconds between a watcher's looks at the change log.
    """

    def __init__(
        self,
        path: str,
        *,
        url: str | None = None,
        synchronous: str = "full",
        busy_timeout: float = 10.0,
        poll_interval: float = 0.05,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise BackendError(f"synchronous must be full, normal, extra or off: {synchronous!r}")
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._prepare_file()
        self._init_schema()

    # -- connections --------------------------------------------------------------------
    def _prepare_file(self) -> None:
        file = Path(self.path)
        try:
            file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not file.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise BackendError(f"SQLite store {self.path}: cannot create it: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise BackendError(f"SQLite store {self.path} is closed")
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            except sqlite3.Error as exc:
                raise _wrap(exc, self.path) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @_retry_locked
    def _init_schema(self) -> None:
        conn = self._conn()
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BackendError(
                    f"SQLite store {self.path} has schema version {version}; this swarmapply "
                    f"understands up to {SCHEMA_VERSION}: upgrade swarmapply"
                )
            if version < SCHEMA_VERSION:
                # Every statement is idempotent, so processes racing to initialise agree.
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise _wrap(exc, self.path) from exc

    @contextlib.contextmanager
    def _transaction(self, immediate: bool) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise _wrap(exc, self.path) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _wrap(exc, self.path) from exc
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- primitives ---------------------------------------------------------------------
    @staticmethod
    def _read(conn: sqlite3.Connection, kind: str, name: str) -> Object | None:
        row = conn.execute(
            "SELECT data FROM objects WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def _load(self, kind: str, name: str) -> Object | None:
        with self._transaction(immediate=False) as conn:
            return self._read(conn, kind, name)

    @_retry_locked
    def _mutate(self, kind: str, name: str, planner: Planner, *, cascade: bool = True) -> Object:
        with self._transaction(immediate=True) as conn:
            current = self._read(conn, kind, name)
            change = planner(current)
            if change is None:
                assert current is not None  # planners only skip writes to existing objects
                return current
            return self._write(conn, kind, name, change, cascade)

    def _write(
        self, conn: sqlite3.Connection, kind: str, name: str, change: Change, cascade: bool
    ) -> Object:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        revision = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
        obj = stamp(change, revision).obj
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True)
        conn.execute("DELETE FROM owner_refs WHERE kind = ? AND name = ?", (kind, name))
        if change.removed:
            conn.execute("DELETE FROM objects WHERE kind = ? AND name = ?", (kind, name))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO objects (kind, name, uid, rev, spec_job, spec_node, "
                "status_node, phase, involved_uid, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, name, obj["metadata"]["uid"], revision, *_column_values(obj), data),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO owner_refs (owner_uid, kind, name) VALUES (?, ?, ?)",
                [(uid, kind, name) for uid in owner_uids(obj)],
            )
        conn.execute(
            "INSERT INTO changes (rev, kind, name, type, data) VALUES (?, ?, ?, ?, ?)",
            (revision, kind, name, change.type, data),
        )
        if change.removed:
            self._release_dependents(conn, obj["metadata"]["uid"], cascade)
        return obj

    def _release_dependents(self, conn: sqlite3.Connection, uid: str, cascade: bool) -> None:
        dependents = conn.execute(
            "SELECT kind, name FROM owner_refs WHERE owner_uid = ? ORDER BY kind, name", (uid,)
        ).fetchall()
        now = now_rfc3339()
        for dep_kind, dep_name in dependents:
            current = self._read(conn, dep_kind, dep_name)
            change = plan_release_owner(current, uid, now=now, delete_orphan=cascade)
            if change is not None:
                self._write(conn, dep_kind, dep_name, change, cascade)

    @_retry_locked
    def _list(self, kind: str, fields: Sequence[Requirement]) -> tuple[list[Object], int]:
        sql = "SELECT data FROM objects WHERE kind = ?"
        params: list[Any] = [kind]
        for field, value in equality_terms(fields).items():
            if field in COLUMNS:
                sql += f" AND {COLUMNS[field]} = ?"
                params.append(value)
            elif field == "metadata.ownerReferences.uid":
                sql += (
                    " AND EXISTS (SELECT 1 FROM owner_refs o WHERE o.kind = objects.kind"
                    " AND o.name = objects.name AND o.owner_uid = ?)"
                )
                params.append(value)
        with self._transaction(immediate=False) as conn:
            revision = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
            rows = conn.execute(sql, params).fetchall()
        return [json.loads(row[0]) for row in rows], revision

    @_retry_locked
    def revision(self) -> int:
        with self._transaction(immediate=False) as conn:
            value: int = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
        return value

    @_retry_locked
    def _history(self, kind: str | None, after: int) -> tuple[list[tuple[Any, ...]], int]:
        sql = "SELECT rev, type, data FROM changes WHERE rev > ?"
        params: list[Any] = [after]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._transaction(immediate=False) as conn:
            compacted = conn.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()[0]
            rows = conn.execute(sql + " ORDER BY rev LIMIT 1000", params).fetchall()
        return rows, compacted

    def watch(
        self,
        kind: str | None,
        since: int,
        *,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[WatchEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = check_revision(since)
        while stop is None or not stop.is_set():
            rows, compacted = self._history(kind, last)
            if last < compacted:
                raise Gone(last, compacted)
            for revision, type_, data in rows:
                last = revision
                yield WatchEvent(type_, json.loads(data), revision)
            if rows:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(self.poll_interval)

    @_retry_locked
    def compact(self, revision: int) -> int:
        with self._transaction(immediate=True) as conn:
            current = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
            target = min(revision, current)
            removed = conn.execute("DELETE FROM changes WHERE rev <= ?", (target,)).rowcount
            conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (target,))
        return int(removed)
