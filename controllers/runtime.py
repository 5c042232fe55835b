"""The reusable controller runtime: informers (:mod:`.informer`) feeding a worker pool.

A :class:`Controller` feeds the keys those handlers produce into a :class:`WorkQueue` and runs
``reconcile(key)`` on worker threads.

What is guaranteed (the informers' own guarantees are in :mod:`.informer`):

* ``reconcile`` is never run for one key on two workers at once. A key changed while it is
  reconciled is reconciled again afterwards (once, however many changes came in).
* A :class:`TemporaryError` (or any unexpected exception, which is logged with its traceback)
  requeues the key with per-key exponential backoff; a :class:`PermanentError` records a
  Warning Event ``ReconcileFailed`` on the object (when it still exists) and drops the key
  until it changes again.

What is not guaranteed: that ``reconcile`` sees the newest state (it must read what it needs
and be idempotent, level-triggered), or that a reconcile still running after the shutdown
timeout is waited for (it is logged). Leader election is not part of this module.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from swarmapply.api.store import NotFound, Object, Store
from swarmapply.controllers.events import record_event
from swarmapply.controllers.informer import Handlers, Informer, object_name
from swarmapply.controllers.workqueue import WorkQueue
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

KeyMapper = Callable[[Object], Iterable[str]]
Reconcile = Callable[[str], None]

LATENCY_RESERVOIR = 1024


def owner_keys(owner_kind: str) -> KeyMapper:
    """A key mapper from an object to the names of its owners of ``owner_kind``.

    For example ``owner_keys("Job")`` maps a Task to the Job that owns it.
    """

    def mapper(obj: Object) -> list[str]:
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        return [str(r["name"]) for r in refs if r.get("kind") == owner_kind and r.get("name")]

    return mapper


@dataclass(frozen=True)
class SecondaryKind:
    """A kind a controller watches besides its primary, mapped to primary keys.

    Attributes:
        kind: The secondary kind, e.g. ``Task``.
        keys: Object -> names of primary objects to reconcile (e.g. ``owner_keys("Job")``).
    """

    kind: str
    keys: KeyMapper


@dataclass(frozen=True)
class ControllerStats:
    """A snapshot of a controller's counters (latencies in seconds)."""

    reconciles: int
    successes: int
    temporary_errors: int
    permanent_errors: int
    unexpected_errors: int
    queue_depth: int
    latency_count: int
    latency_sum: float
    latency_max: float
    latency_p50: float
    latency_p99: float

    @property
    def errors(self) -> int:
        """All failed reconciles."""
        return self.temporary_errors + self.permanent_errors + self.unexpected_errors


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank; 0.0 when empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


class Controller:
    """Informers for a primary kind (and secondaries) feeding ``reconcile`` on N workers."""

    def __init__(
        self,
        name: str,
        store: Store,
        kind: str,
        reconcile: Reconcile,
        *,
        secondaries: Sequence[SecondaryKind] = (),
        workers: int = 2,
        resync: float | None = None,
        queue: WorkQueue | None = None,
        shutdown_timeout: float = 5.0,
        watch_timeout: float = 1.0,
    ) -> None:
        """Create a controller; nothing happens until :meth:`run`.

        Args:
            name: The component name (Event source, log and thread names).
            store: The store.
            kind: The primary kind; its names are the queue keys.
            reconcile: Called with a key; raises TemporaryError/PermanentError on failure.
            secondaries: Other kinds to watch, with their mapping to primary keys.
            workers: Number of worker threads.
            resync: Seconds between re-enqueues of every primary object; None for never.
            queue: The work queue (default: a new one with the default limits).
            shutdown_timeout: Seconds to wait for in-flight reconciles when stopping.
            watch_timeout: Seconds after which idle watches restart (see Informer).
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.name = name
        self.store = store
        self.kind = kind
        self.reconcile = reconcile
        self.workers = workers
        self.shutdown_timeout = shutdown_timeout
        self.queue = queue if queue is not None else WorkQueue()
        self.informers: dict[str, Informer] = {}
        primary = Handlers(
            on_add=lambda o: self.queue.add(object_name(o)),
            on_update=lambda _old, new: self.queue.add(object_name(new)),
            on_delete=lambda o: self.queue.add(object_name(o)),
        )
        self.informers[kind] = Informer(
            store, kind, handlers=[primary], resync=resync, watch_timeout=watch_timeout
        )
        for secondary in secondaries:
            self.informers[secondary.kind] = Informer(
                store,
                secondary.kind,
                handlers=[self._secondary_handlers(secondary.keys)],
                watch_timeout=watch_timeout,
            )
        self._lock = threading.Lock()
        self._reconciles = 0
        self._successes = 0
        self._temporary = 0
        self._permanent = 0
        self._unexpected = 0
        self._lat_count = 0
        self._lat_sum = 0.0
        self._lat_max = 0.0
        self._samples: deque[float] = deque(maxlen=LATENCY_RESERVOIR)
        self._started = threading.Event()

    def _secondary_handlers(self, keys: KeyMapper) -> Handlers:
        def enqueue(*objs: Object) -> None:
            for obj in objs:
                for key in keys(obj):
                    self.queue.add(key)

        return Handlers(on_add=enqueue, on_update=enqueue, on_delete=enqueue)

    @property
    def primary(self) -> Informer:
        """The informer of the primary kind."""
        return self.informers[self.kind]

    def has_synced(self) -> bool:
        """True when every informer has applied its first list."""
        return all(i.has_synced for i in self.informers.values())

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until the caches synced and the workers started."""
        return self._started.wait(timeout)

    def stats(self) -> ControllerStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            samples = list(self._samples)
            return ControllerStats(
                reconciles=self._reconciles,
                successes=self._successes,
                temporary_errors=self._temporary,
                permanent_errors=self._permanent,
                unexpected_errors=self._unexpected,
                queue_depth=len(self.queue),
                latency_count=self._lat_count,
                latency_sum=self._lat_sum,
                latency_max=self._lat_max,
                latency_p50=percentile(samples, 0.5),
                latency_p99=percentile(samples, 0.99),
            )

    def summary(self) -> str:
        """The counters in one line, for logs."""
        st = self.stats()
        return (
            f"reconciles {st.reconciles} (errors: {st.temporary_errors} temporary, "
            f"{st.permanent_errors} permanent, {st.unexpected_errors} unexpected), queue "
            f"{st.queue_depth}, latency p50 {st.latency_p50 * 1000:.1f} ms, "
            f"p99 {st.latency_p99 * 1000:.1f} ms"
        )

    def run(self, stop: threading.Event) -> None:
        """Run informers and workers until ``stop`` is set, then shut down gracefully.

        Informers are stopped, the queue hands out no further keys, and reconciles in
        flight are waited for up to ``shutdown_timeout`` seconds.
        """
        inner = threading.Event()
        informer_threads = [
            threading.Thread(
                target=informer.run, args=(inner,), name=f"{self.name}-informer-{kind}", daemon=True
            )
            for kind, informer in self.informers.items()
        ]
        for thread in informer_threads:
            thread.start()
        workers: list[threading.Thread] = []
        try:
            while not stop.is_set() and not self.has_synced():
                stop.wait(0.01)
            if not stop.is_set():
                workers = [
                    threading.Thread(target=self._work, name=f"{self.name}-worker-{i}", daemon=True)
                    for i in range(self.workers)
                ]
                for thread in workers:
                    thread.start()
                self._started.set()
                stop.wait()
        finally:
            inner.set()
            self.queue.shutdown()
            deadline = time.monotonic() + self.shutdown_timeout
            for thread in workers + informer_threads:
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning(
                        "%s: %s still running after shutdown timeout", self.name, thread.name
                    )

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self._process(key)
            finally:
                self.queue.done(key)

    def _process(self, key: str) -> None:
        started = time.monotonic()
        outcome = "success"
        try:
            self.reconcile(key)
        except TemporaryError as exc:
            outcome = "temporary"
            delay = self.queue.add_rate_limited(key)
            log.warning("%s: reconcile %s: %s; retrying in %.3fs", self.name, key, exc, delay)
        except PermanentError as exc:
            outcome = "permanent"
            log.error("%s: reconcile %s failed permanently: %s", self.name, key, exc)
            self.queue.forget(key)
            self._record_failure(key, exc)
        except Exception:
            outcome = "unexpected"
            delay = self.queue.add_rate_limited(key)
            log.exception(
                "%s: reconcile %s: unexpected error; retrying in %.3fs", self.name, key, delay
            )
        else:
            self.queue.forget(key)
        finally:
            elapsed = time.monotonic() - started
            self._count(outcome, elapsed)

    def _count(self, outcome: str, elapsed: float) -> None:
        with self._lock:
            self._reconciles += 1
            if outcome == "success":
                self._successes += 1
            elif outcome == "temporary":
                self._temporary += 1
            elif outcome == "permanent":
                self._permanent += 1
            else:
                self._unexpected += 1
            self._lat_count += 1
            self._lat_sum += elapsed
            self._lat_max = max(self._lat_max, elapsed)
            self._samples.append(elapsed)

    def _record_failure(self, key: str, error: BaseException) -> None:
        try:
            obj = self.store.get(self.kind, key)
        except NotFound:
            log.info("%s: %s %s is gone; no Event recorded", self.name, self.kind, key)
            return
        except Exception:
            log.exception("%s: could not read %s %s to record an Event", self.name, self.kind, key)
            return
        record_event(self.store, obj, "ReconcileFailed", str(error), component=self.name,
                     type_="Warning")  # fmt: skip


__all__ = [
    "Controller",
    "ControllerStats",
    "SecondaryKind",
    "owner_keys",
    "percentile",
]
