"""Informers: a local cache of one kind, kept current from the store's list and watch.

An :class:`Informer` lists one kind, then watches it from the revision the list returned,
keeping a cache (name -> object) and calling handlers for adds, updates and deletes.

What is guaranteed: handlers see every change in revision order, or, after a watch fell behind
compaction (:class:`Gone`), a relist whose differences with the cache are delivered as
synthetic add/update/delete calls, after which the cache equals the store as of the relist
revision. Temporary store errors (and unexpected ones) are logged and retried with exponential
backoff; they never end the informer thread, only its stop event does.

What is not: delivery of intermediate states a relist skipped. Cached objects are shared;
handlers must not modify them (:meth:`Informer.get` and :meth:`Informer.list` return copies).
"""

from __future__ import annotations

import builtins
import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenacity import wait_exponential

from swarmapply.api.store import Gone, Object, Store, WatchEvent
from swarmapply.controllers.workqueue import strategy_delay
from swarmapply.errors import TemporaryError

log = logging.getLogger(__name__)

AddHandler = Callable[[Object], None]
UpdateHandler = Callable[[Object, Object], None]
DeleteHandler = Callable[[Object], None]


def object_name(obj: Object) -> str:
    """The name of an object (its key in a cache and a work queue)."""
    return str(obj["metadata"]["name"])


def resource_version(obj: Object) -> str | None:
    """The object's ``metadata.resourceVersion``, if any."""
    value = obj.get("metadata", {}).get("resourceVersion")
    return None if value is None else str(value)


@dataclass(frozen=True)
class Change:
    """One difference between a cache and a fresh list (pure data)."""

    type: str  # "ADDED", "MODIFIED" or "DELETED"
    old: Object | None
    new: Object | None


def diff_snapshot(cache: dict[str, Object], items: Sequence[Object]) -> list[Change]:
    """The changes that turn ``cache`` into ``items`` (compared by resourceVersion).

    Args:
        cache: The current cache, name -> object.
        items: A fresh list of all objects.

    Returns:
        Deletions first (sorted by name), then additions and modifications in list order.
    """
    fresh = {object_name(o): o for o in items}
    changes = [Change("DELETED", cache[n], None) for n in sorted(cache) if n not in fresh]
    for obj in items:
        old = cache.get(object_name(obj))
        if old is None:
            changes.append(Change("ADDED", None, obj))
        elif resource_version(old) != resource_version(obj):
            changes.append(Change("MODIFIED", old, obj))
    return changes


@dataclass
class Handlers:
    """Callbacks an informer calls from its thread; exceptions are logged, not propagated."""

    on_add: AddHandler | None = None
    on_update: UpdateHandler | None = None
    on_delete: DeleteHandler | None = None


class Informer:
    """List + watch of one kind into a local cache, with handlers and periodic resync."""

    def __init__(
        self,
        store: Store,
        kind: str,
        *,
        handlers: Sequence[Handlers] = (),
        resync: float | None = None,
        watch_timeout: float = 5.0,
        retry_base: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        """Create an informer; nothing happens until :meth:`run`.

        Args:
            store: The store to list and watch.
            kind: The kind to follow.
            handlers: Callbacks for changes; resync calls ``on_update(obj, obj)``.
            resync: Seconds between resyncs of every cached object; None for never.
            watch_timeout: Seconds after which an idle watch is restarted (from the same
                revision), so that stop and resync are noticed promptly.
            retry_base: First delay after a failed list or watch, in seconds.
            retry_max: Largest delay between retries, in seconds.
        """
        self.store = store
        self.kind = kind
        self.handlers = list(handlers)
        self.resync = resync
        self.watch_timeout = watch_timeout
        self._retry = wait_exponential(multiplier=retry_base, max=retry_max)
        self._lock = threading.Lock()
        self._cache: dict[str, Object] = {}
        self._revision = 0  # what the cache reflects (the informer thread writes it)
        self._handled = 0  # the revision whose handlers have all returned
        self._synced = threading.Event()
        self.relists = 0
        self.failures = 0

    # -- reading the cache -------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list has been applied to the cache."""
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until :attr:`has_synced`; return whether it is."""
        return self._synced.wait(timeout)

    @property
    def last_revision(self) -> int:
        """The revision up to which the cache is applied and every handler has returned.

        It moves only with changes of this informer's kind (and relists), so it may stay
        behind the store's revision while other kinds change.
        """
        with self._lock:
            return self._handled

    def get(self, name: str) -> Object | None:
        """A copy of the cached object, or None."""
        with self._lock:
            obj = self._cache.get(name)
        return None if obj is None else copy.deepcopy(obj)

    def list(self) -> builtins.list[Object]:
        """Copies of all cached objects, sorted by name (as :meth:`Store.list`)."""
        with self._lock:
            items = [self._cache[n] for n in sorted(self._cache)]
        return copy.deepcopy(items)

    def keys(self) -> builtins.list[str]:
        """The names of all cached objects."""
        with self._lock:
            return sorted(self._cache)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set; never raises for store errors."""
        attempt = 0
        need_list = True
        next_resync = None if self.resync is None else time.monotonic() + self.resync
        while not stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                next_resync = self._watch(stop, next_resync)
                attempt = 0
            except Gone as exc:
                log.info(
                    "%s informer: watch fell behind compaction (%s); relisting", self.kind, exc
                )
                need_list = True
                attempt = 0
            except Exception as exc:  # logged, retried: never kills the thread
                attempt += 1
                self.failures += 1
                delay = strategy_delay(self._retry, attempt)
                if isinstance(exc, TemporaryError):
                    log.warning("%s informer: %s; retrying in %.2fs", self.kind, exc, delay)
                else:
                    log.error(
                        "%s informer: unexpected error; retrying in %.2fs",
                        self.kind,
                        delay,
                        exc_info=exc,
                    )
                stop.wait(delay)

    def _relist(self) -> None:
        result = self.store.list(self.kind)
        with self._lock:
            changes = diff_snapshot(self._cache, result.items)
            self._cache = {object_name(o): o for o in result.items}
            self._revision = result.revision
        if self._synced.is_set():
            self.relists += 1
        for change in changes:
            self._dispatch(change.type, change.old, change.new)
        with self._lock:
            self._handled = result.revision
        self._synced.set()

    def _watch(self, stop: threading.Event, next_resync: float | None) -> float | None:
        timeout = self.watch_timeout
        if next_resync is not None:
            timeout = max(0.0, min(timeout, next_resync - time.monotonic()))
        with self._lock:
            since = self._revision
        events = self.store.watch(self.kind, since, stop=stop, timeout=timeout)
        for event in events:
            self._apply(event)
            next_resync = self._maybe_resync(next_resync)
            if stop.is_set():
                break
        return self._maybe_resync(next_resync)

    def _apply(self, event: WatchEvent) -> None:
        name = object_name(event.object)
        with self._lock:
            if event.revision <= self._revision:
                return  # already seen (a list at a later revision covered it)
            self._revision = event.revision
            old = self._cache.get(name)
            if event.type == "DELETED":
                self._cache.pop(name, None)
            else:
                self._cache[name] = event.object
        if event.type == "DELETED":
            self._dispatch("DELETED", old or event.object, None)
        elif old is None:
            self._dispatch("ADDED", None, event.object)
        else:
            self._dispatch("MODIFIED", old, event.object)
        with self._lock:
            self._handled = event.revision

    def _maybe_resync(self, next_resync: float | None) -> float | None:
        if next_resync is None or self.resync is None or time.monotonic() < next_resync:
            return next_resync
        with self._lock:
            items = list(self._cache.values())
        for obj in items:
            self._dispatch("MODIFIED", obj, obj)
        return time.monotonic() + self.resync

    def _dispatch(self, type_: str, old: Object | None, new: Object | None) -> None:
        for handlers in self.handlers:
            try:
                if type_ == "ADDED" and handlers.on_add and new is not None:
                    handlers.on_add(new)
                elif type_ == "MODIFIED" and handlers.on_update and new is not None:
                    handlers.on_update(old if old is not None else new, new)
                elif type_ == "DELETED" and handlers.on_delete and old is not None:
                    handlers.on_delete(old)
            except Exception:
                log.exception("%s informer: %s handler failed", self.kind, type_)
