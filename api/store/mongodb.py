"""The MongoDB store: several writer processes, no transactions, no change streams.

Design (after kine, which runs Kubernetes on SQL databases the same way), relying on one
primitive only: an insert that a unique index rejects. That is atomic on every server speaking
the protocol; filtered updates and ``$inc`` are not on FerretDB 1.x (checked), so nothing here
depends on them for correctness.

* ``changes`` is the source of truth: one record per change, ``_id`` = its revision, with the
  object key and ``prev``, the revision it replaces. The unique index on ``(key, prev)`` is the
  compare-and-swap: of two writers that read the same state only one can record a successor.
  A revision taken twice (a counter that lost an increment) fails on ``_id``: retried.
* Revisions come from a counter, so a writer may record revision 7 after another recorded 8.
  Readers trust only the *contiguous* prefix of the log; a hole that stays longer than
  ``gap_timeout`` (a writer that died between taking a revision and recording it) is plugged
  with a fill record. A late writer then fails on the duplicate ``_id`` and retries under a new
  revision, so nothing is lost or delivered out of order.
* ``objects`` is a cache of the newest state per key and ``links`` (``_id`` = ``key#prev``) an
  insert-only index from a revision to its successor, both written after the record. Readers
  follow links from the cached revision to the newest one and roll the cache forward, so a
  cache that lags (a writer died) or regressed (two late writers) is corrected on read; a
  missing link shows up as a unique-index conflict, after which the successor is looked up in
  the log itself. All hot-path lookups are by ``_id``.
* ``list`` returns the state as of one contiguous revision R, reconstructing from the log any
  object changed after R. Objects are stored as JSON text and queried only through fields the
  store derives itself, so user data never becomes a MongoDB operator or field path.

Not guaranteed: a create racing with compaction of that name's old tombstone may succeed twice
(compact only well-aged revisions); a cascade interrupted by a crash leaves orphans for the
pruner.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import bson.errors
import pymongo
import pymongo.errors
from pymongo import ReturnDocument
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from swarmapply.api.selectors import Requirement
from swarmapply.api.store.base import (
    BackendError,
    Gone,
    InvalidObject,
    Object,
    StoreUnavailable,
    WatchEvent,
    redact_url,
)
from swarmapply.api.store.common import Planner, StoreBase
from swarmapply.api.store.lifecycle import (
    check_revision,
    now_rfc3339,
    owner_uids,
    plan_release_owner,
    stamp,
)

T = TypeVar("T")
Doc = dict[str, Any]

FILL = "FILL"
#: Attempts a write makes while other writers keep winning the race for the same object.
WRITE_ATTEMPTS = 100
#: An attempt to write that took longer than this (a stalled process) starts over rather than
#: record a change based on what it read that long ago; compaction leaves alone everything
#: younger than ``min_compact_age``, which must be well above it.
ATTEMPT_SECONDS = 10.0
#: Revisions read ahead in one query by watchers and the frontier scan. Some servers (FerretDB
#: on SQLite) answer every query, even by ``_id``, with a scan of the collection, so reading
#: the log one revision per query costs a scan per change.
READ_AHEAD = 256


@contextlib.contextmanager
def _translated(url: str) -> Iterator[None]:
    """Turn pymongo's errors into the store's temporary/permanent split."""
    try:
        yield
    except pymongo.errors.ConnectionFailure as exc:
        # pymongo appends its whole topology description: keep the part a person reads.
        reason = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]
        raise StoreUnavailable(f"MongoDB store {url} is unreachable: {reason}") from exc
    except pymongo.errors.PyMongoError as exc:
        raise BackendError(f"MongoDB store {url}: {exc}") from exc
    except bson.errors.InvalidDocument as exc:  # e.g. an object over the 16 MiB limit
        raise InvalidObject(f"MongoDB store {url}: {exc}") from exc


def _read_retrying() -> Retrying:
    """Reads are idempotent: retry them when the server is briefly unreachable."""
    return Retrying(
        retry=retry_if_exception_type(StoreUnavailable),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        reraise=True,
    )


def _cache_document(record: Doc) -> Doc:
    """The ``objects`` document that caches ``record`` as its key's newest state."""
    obj = json.loads(record["data"])
    return {
        "kind": record["kind"],
        "name": record["name"],
        "rev": record["_id"],
        "prev": record["prev"],
        "deleted": record["deleted"],
        "data": record["data"],
        "owners": owner_uids(obj),
    }


def _state(doc: Doc | None) -> Object | None:
    if doc is None or doc["deleted"]:
        return None
    obj: Object = json.loads(doc["data"])
    return obj


def _link_id(key: str, prev: int) -> str:
    return f"{key}#{prev}"


class _Stalled(Exception):
    """A write attempt cannot record what it planned (too slow, or a stale revision)."""


class MongoStore(StoreBase):
    """A store in a MongoDB database (FerretDB works too).

    Args:
        url: ``mongodb://host:port/database``; the database defaults to ``swarmapply``.
        gap_timeout: seconds a hole in the revision log may stay before it is filled.
        poll_interval: seconds between a watcher's looks at the log.
        min_compact_age: seconds a change must have been recorded before compaction may
            remove it (it guards writers that read the state it replaced).
    """

    def __init__(
        self,
        url: str,
        *,
        gap_timeout: float = 1.0,
        poll_interval: float = 0.05,
        min_compact_age: float = 60.0,
    ):
        self.url = redact_url(url)  # for messages; the client gets the real one
        self.gap_timeout = gap_timeout
        self.min_compact_age = min_compact_age
        self.poll_interval = poll_interval
        self._gaps: dict[int, float] = {}
        self._gaps_lock = threading.Lock()
        with _translated(self.url):
            try:
                self._client: pymongo.MongoClient[Doc] = pymongo.MongoClient(
                    url, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000
                )
            except (pymongo.errors.ConfigurationError, ValueError) as exc:
                raise BackendError(f"bad MongoDB store URL {self.url!r}: {exc}") from exc
            db = self._client.get_default_database("swarmapply")
            self._changes = db["changes"]
            self._objects = db["objects"]
            self._links = db["links"]
            self._compactions = db["compactions"]
            self._meta = db["meta"]
            self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        """The compare-and-swap index, and one index for each query that is not by ``_id``."""
        self._changes.create_index([("key", 1), ("prev", 1)], unique=True, name="key_prev")
        self._changes.create_index([("prev", 1)], name="prev")  # list: is a cache entry stale?
        self._objects.create_index([("kind", 1)], name="kind")  # list
        self._objects.create_index([("owners", 1)], name="owners")  # cascading deletes

    def close(self) -> None:
        self._client.close()

    # -- revisions ----------------------------------------------------------------------
    def _meta_value(self, key: str) -> int:
        doc = self._meta.find_one({"_id": key})
        return int(doc["value"]) if doc else 0

    def _raise_meta(self, key: str, value: int) -> None:
        """Advance a hint (frontier, applied); on servers where ``$max`` races it may lag."""
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self._meta.update_one({"_id": key}, {"$max": {"value": value}}, upsert=True)

    def _compacted(self) -> int:
        """The revision up to which history may have been removed.

        Compactions announce themselves with an insert each (inserts are atomic everywhere,
        ``$max`` is not), before they remove anything.
        """
        newest = self._compactions.find_one(sort=[("_id", -1)])
        return int(newest["_id"]) if newest else 0

    def _allocate(self) -> int:
        """A revision number (unique where ``$inc`` is atomic; otherwise inserts catch it)."""
        for _ in range(3):
            try:
                doc = self._meta.find_one_and_update(
                    {"_id": "revision"},
                    {"$inc": {"value": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                if doc is not None:
                    return int(doc["value"])
            except pymongo.errors.DuplicateKeyError:  # two first-ever upserts raced
                continue
        raise StoreUnavailable(f"MongoDB store {self.url}: could not allocate a revision")

    def _fill(self, revision: int) -> None:
        """Record that ``revision`` carries no change (its writer died or gave it up)."""
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self._changes.insert_one(
                {
                    "_id": revision,
                    "type": FILL,
                    "key": f"~fill/{revision}",
                    "prev": revision,
                    "ts": time.time(),
                }
            )

    def _gap_expired(self, revision: int) -> bool:
        """Whether the hole at ``revision`` has been seen for longer than ``gap_timeout``."""
        now = time.monotonic()
        with self._gaps_lock:
            first = self._gaps.setdefault(revision, now)
            if len(self._gaps) > 1000:
                self._gaps = {revision: first}
            return now - first >= self.gap_timeout

    def _next_record(self, after: int) -> Doc | bool | None:
        """The record at revision ``after + 1``; False when that revision is a hole.

        A hole is a revision the counter handed out that is still unrecorded; once it has
        stayed so for ``gap_timeout`` it is filled. None means nothing was written after
        ``after`` yet. Every lookup is by ``_id`` (servers that scan for ranges stay fast).
        """
        record = self._changes.find_one({"_id": after + 1})
        if record is not None:
            with self._gaps_lock:
                self._gaps.pop(after + 1, None)
            return record
        if self._meta_value("revision") <= after:
            return None
        if self._compacted() > after:
            return False  # removed by compaction, not a hole: never fill it
        if self._gap_expired(after + 1):
            self._fill(after + 1)
            return self._changes.find_one({"_id": after + 1})
        return False

    def _records_after(self, after: int) -> dict[int, Doc]:
        """The recorded revisions in ``(after, after + READ_AHEAD]``, by revision (one query)."""
        found = {
            rec["_id"]: rec
            for rec in self._changes.find({"_id": {"$gt": after, "$lte": after + READ_AHEAD}})
        }
        if found and self._gaps:
            with self._gaps_lock:
                for revision in found:
                    self._gaps.pop(revision, None)
        return found

    def _frontier(self) -> int:
        """The highest revision R such that every revision up to R is recorded."""
        start = max(self._meta_value("frontier"), self._compacted())
        frontier = start
        while True:
            window_end = frontier + READ_AHEAD
            ahead = self._records_after(frontier)
            while frontier + 1 in ahead:
                frontier += 1
            if frontier == window_end:
                continue  # the whole window was recorded: read the next one
            if not any(revision > frontier for revision in ahead):
                break  # nothing recorded after the frontier yet
            # A later revision is recorded but the next is not: a hole, filled once expired.
            record = self._next_record(frontier)
            if not isinstance(record, dict):
                break
            frontier = record["_id"]
        if frontier > start:
            self._raise_meta("frontier", frontier)
        return frontier

    # -- the cache ----------------------------------------------------------------------
    def _link(self, record: Doc) -> None:
        """Point from the revision ``record`` replaces to ``record``."""
        # Upserts race on some servers: a duplicate means another process wrote a link for
        # the same revision; whichever has no record is ignored by readers.
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self._links.replace_one(
                {"_id": _link_id(record["key"], record["prev"])},
                {"rev": record["_id"]},
                upsert=True,
            )

    def _cache(self, record: Doc) -> Doc:
        """Make ``record`` the cached state of its key and link it from its predecessor."""
        self._link(record)
        doc = {"_id": record["key"], **_cache_document(record)}
        if record["prev"] == 0 or not self._cache_if_newer(doc):
            try:
                self._objects.insert_one(doc)
            except pymongo.errors.DuplicateKeyError:  # cached meanwhile: keep the newer
                self._cache_if_newer(doc)
        return doc

    def _cache_if_newer(self, doc: Doc) -> bool:
        """Replace the cached document if it is older than ``doc``; False if none exists."""
        fields = {k: v for k, v in doc.items() if k != "_id"}
        updated = self._objects.update_one(
            {"_id": doc["_id"], "rev": {"$lt": doc["rev"]}}, {"$set": fields}
        )
        return (
            updated.matched_count == 1
            or self._objects.find_one({"_id": doc["_id"]}, {"_id": 1}) is not None
        )

    def _successor(self, key: str, revision: int, *, search_log: bool = False) -> Doc | None:
        """The change that replaced ``revision`` of ``key``, by link (or from the log)."""
        link = self._links.find_one({"_id": _link_id(key, revision)})
        if link is not None and link["rev"] > revision:
            record = self._changes.find_one({"_id": link["rev"]})
            # A link may be stale (its writer lost the race, or was handed a revision
            # already in use): only a record that names ``revision`` as its predecessor counts.
            if record is not None and record.get("key") == key and record["prev"] == revision:
                return record
        if search_log:
            return self._changes.find_one({"key": key, "prev": revision})
        return None

    def _current(self, key: str, *, search_log: bool = False) -> Doc | None:
        """The newest state of ``key``: the cache, rolled forward along the successors."""
        doc = self._objects.find_one({"_id": key})
        while True:
            successor = self._successor(key, doc["rev"] if doc else 0, search_log=search_log)
            if successor is None:
                return doc
            doc = self._cache(successor)

    # -- primitives ---------------------------------------------------------------------
    def _read(self, fn: Callable[[], T]) -> T:
        for attempt in _read_retrying():
            with attempt, _translated(self.url):
                return fn()
        raise AssertionError("unreachable: Retrying re-raises the last error")

    def _load(self, kind: str, name: str) -> Object | None:
        return self._read(lambda: _state(self._current(f"{kind}/{name}")))

    def _mutate(self, kind: str, name: str, planner: Planner, *, cascade: bool = True) -> Object:
        with _translated(self.url):
            result = self._mutate_now(kind, name, planner, cascade)
        assert result is not None  # only owner release plans nothing for a missing object
        return result

    def _mutate_now(self, kind: str, name: str, planner: Planner, cascade: bool) -> Object | None:
        key = f"{kind}/{name}"
        lost_race = False
        for attempt in range(WRITE_ATTEMPTS):
            started = time.monotonic()
            doc = self._current(key, search_log=lost_race)
            current = _state(doc)
            change = planner(current)
            if change is None:
                return current
            revision = self._allocate()
            try:
                record: Doc = {
                    "_id": revision,
                    "key": key,
                    "kind": kind,
                    "name": name,
                    "prev": doc["rev"] if doc else 0,
                    "type": change.type,
                    "deleted": change.removed,
                    "data": json.dumps(stamp(change, revision).obj, separators=(",", ":")),
                }
                if time.monotonic() - started > ATTEMPT_SECONDS or revision <= record["prev"]:
                    raise _Stalled  # read too long ago, or a counter that went backwards
                # Link first: once the record exists, readers can always find it.
                self._link(record)
                record["ts"] = time.time()
                self._changes.insert_one(record)
            except (pymongo.errors.DuplicateKeyError, _Stalled):
                # Either the revision was taken (a reader filled it, or the counter handed it
                # out twice), or another writer recorded a successor of the state we read
                # (the unique (key, prev) index), or we stalled. Give the revision up if it is
                # still free, and read again, from the log itself in case a successor is not
                # linked yet.
                stale = revision <= record["prev"]  # never fill a revision that may be old
                if not stale and self._changes.find_one({"_id": revision}, {"_id": 1}) is None:
                    self._fill(revision)
                    lost_race = True
                time.sleep(min(0.0005 * attempt, 0.02))
                continue
            except BaseException:
                with contextlib.suppress(Exception):  # do not leave a hole behind
                    self._fill(revision)
                raise
            # Links again (inside _cache): a writer that lost the race for this revision may
            # have overwritten our link between our link and our insert. One more round trip
            # keeps the newest change reachable by _id without waiting for that loser's repair.
            self._cache(record)
            if change.removed:
                self._release_dependents(change.obj["metadata"]["uid"], cascade, revision)
            return change.obj
        raise StoreUnavailable(
            f"MongoDB store {self.url}: {key} changed under every one of {WRITE_ATTEMPTS} "
            "attempts to write it; retry later"
        )

    def _release_dependents(self, uid: str, cascade: bool, revision: int) -> None:
        """Release the dependents of a removed owner, including those still being recorded."""
        deadline = time.monotonic() + 2 * self.gap_timeout + 1
        while (frontier := self._frontier()) < revision and time.monotonic() < deadline:
            time.sleep(self.poll_interval)
        self._roll_forward(frontier)
        now = now_rfc3339()
        for dep in self._objects.find({"owners": uid, "deleted": False}, {"kind": 1, "name": 1}):
            self._mutate_now(
                dep["kind"],
                dep["name"],
                lambda current: plan_release_owner(current, uid, now=now, delete_orphan=cascade),
                cascade,
            )

    def _state_at(self, doc: Doc, revision: int) -> Object | None:
        """The object as it was at ``revision``, for a document changed after it."""
        prev = doc["prev"]
        while prev > revision:
            record = self._changes.find_one({"_id": prev}, {"prev": 1})
            if record is None:
                return None
            prev = record["prev"]
        if prev == 0:
            return None
        record = self._changes.find_one({"_id": prev})
        if record is None or record.get("type") == FILL or record.get("deleted"):
            return None
        state: Object = json.loads(record["data"])
        return state

    def _roll_forward(self, upto: int) -> None:
        """Cache every change up to ``upto`` whose writer did not (it died in between)."""
        applied = self._meta_value("applied")
        if applied >= upto:
            return
        newest: dict[str, int] = {}
        for rec in self._changes.find(
            {"_id": {"$gt": applied, "$lte": upto}, "type": {"$ne": FILL}}, {"key": 1}
        ):
            newest[rec["key"]] = max(newest.get(rec["key"], 0), rec["_id"])
        if newest:
            cached = {
                doc["_id"]: doc["rev"]
                for doc in self._objects.find({"_id": {"$in": list(newest)}}, {"rev": 1})
            }
            for key, revision in newest.items():
                if cached.get(key, 0) < revision:
                    self._current(key, search_log=True)
        self._raise_meta("applied", upto)

    def _list(self, kind: str, fields: Sequence[Requirement]) -> tuple[list[Object], int]:
        for _ in range(5):
            items, revision = self._read(lambda: self._list_now(kind, fields))
            # Reconstructing a state older than the newest one needs history; if compaction
            # passed the list's revision meanwhile, that history may be gone: list again.
            if self._read(self._compacted) <= revision:
                return items, revision
        raise StoreUnavailable(f"MongoDB store {self.url}: compaction kept overtaking a list")

    def _list_now(self, kind: str, fields: Sequence[Requirement]) -> tuple[list[Object], int]:
        # Every cached object of the kind is read, whatever the selectors: a cache entry that
        # regressed could hide a match. The shared front applies the selectors exactly.
        revision = self._frontier()
        self._roll_forward(revision)
        docs = {doc["_id"]: doc for doc in self._objects.find({"kind": kind})}
        # The cache may have regressed (late writers); verify it against the log at once.
        revs = [doc["rev"] for doc in docs.values() if doc["rev"]]
        for stale in self._changes.find({"prev": {"$in": revs}}, {"key": 1}):
            if stale["key"] in docs:
                docs[stale["key"]] = self._current(stale["key"]) or docs[stale["key"]]
        items: list[Object] = []
        for doc in docs.values():
            state = _state(doc) if doc["rev"] <= revision else self._state_at(doc, revision)
            if state is not None:
                items.append(state)
        return items, revision

    def revision(self) -> int:
        return self._read(self._frontier)

    # -- watch and compaction -----------------------------------------------------------
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
        check_compaction = True
        ahead: dict[int, Doc] = {}  # records read ahead, all of them after ``last``
        while stop is None or not stop.is_set():
            record: Doc | bool | None = ahead.pop(last + 1, None)
            if record is None:
                if check_compaction:
                    # Compaction announces itself before it deletes, so a record that is
                    # missing because it was compacted is always seen here as Gone, never
                    # as a hole.
                    compacted = self._read(self._compacted)
                    if last < compacted:
                        raise Gone(last, compacted)
                ahead = self._read(partial(self._records_after, last))
                record = ahead.pop(last + 1, None)
                if record is None and ahead:
                    # Later revisions are recorded but not the next: a hole (or late writer).
                    record = self._read(partial(self._next_record, last))
            check_compaction = not isinstance(record, dict)
            if isinstance(record, dict):
                last = record["_id"]
                if record["type"] != FILL and kind in (None, record["kind"]):
                    yield WatchEvent(record["type"], json.loads(record["data"]), last)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(self.poll_interval)

    def compact(self, revision: int) -> int:
        with _translated(self.url):
            return self._compact_now(revision)

    def _settled_before(self, cutoff: float, low: int, high: int) -> int:
        """The newest revision in (low, high] recorded before ``cutoff`` (or ``low``).

        Every revision in that range is recorded, so a binary search by ``_id`` finds it.
        """
        while low < high:
            middle = (low + high + 1) // 2
            record = self._changes.find_one({"_id": middle}, {"ts": 1})
            if record is not None and record.get("ts", 0) <= cutoff:
                low = middle
            else:
                high = middle - 1
        return low

    def _compact_now(self, revision: int) -> int:
        old = self._compacted()
        frontier = self._frontier()
        target = min(check_revision(revision), frontier)
        target = self._settled_before(time.time() - self.min_compact_age, old, target)
        if target <= old:
            return 0
        self._roll_forward(target)
        # Announce first: a watcher that then finds a hole knows it is Gone, not a gap.
        with contextlib.suppress(pymongo.errors.DuplicateKeyError):
            self._compactions.insert_one({"_id": target, "ts": time.time()})
        doomed: set[int] = set()
        links: list[str] = []
        tombstones: list[Doc] = []
        for rec in self._changes.find(
            {"_id": {"$gt": old, "$lte": target}}, {"prev": 1, "type": 1, "deleted": 1, "key": 1}
        ):
            if rec["type"] == FILL:
                doomed.add(rec["_id"])
                continue
            if rec["prev"]:
                doomed.add(rec["prev"])  # superseded inside the compacted range
            links.append(_link_id(rec["key"], rec["prev"]))
            if rec.get("deleted"):
                tombstones.append(rec)
        for rec in tombstones:
            if self._changes.find_one({"key": rec["key"], "prev": rec["_id"]}) is None:
                self._objects.delete_one({"_id": rec["key"], "rev": rec["_id"], "deleted": True})
            doomed.add(rec["_id"])
        removed = 0
        batch = sorted(doomed)
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            removed += self._changes.delete_many({"_id": {"$in": chunk}}).deleted_count
        for start in range(0, len(links), 1000):
            self._links.delete_many({"_id": {"$in": links[start : start + 1000]}})
        return removed
