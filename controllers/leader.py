"""Leader election through Lease objects in the store, in the manner of client-go.

Several processes that run the same controller against one store each run a
:class:`LeaderElector` on a Lease named after the controller (``controller-scheduler``). One of
them holds the Lease and runs the controller; the others follow, and one of them takes over when
the holder stops renewing (it crashed, or lost the store) or releases the Lease (it stopped
gracefully).

How it works. Every write is a compare-and-swap on ``metadata.resourceVersion``, so of two
candidates racing for a Lease exactly one wins. A follower never compares timestamps written by
another machine: it records on its own monotonic clock when it last saw the Lease change
(holder, ``renewTime`` or resourceVersion), and considers it expired ``leaseDurationSeconds``
(as the holder wrote it) after that. Each renewal writes a new ``renewTime`` with microsecond
precision, so every renewal is a change followers see. A leader that could not renew for
``renew_deadline`` seconds (shorter than the lease duration) stops leading; a Conflict on a
renewal means another instance holds the Lease and ends the term at once.

What is guaranteed: at most one instance leads a Lease at a time, provided that a leader that
loses the Lease stops within the lease duration of its last successful renewal: ``lead`` must
return within ``lease_duration - renew_deadline`` seconds once its term's stop event is set, and
the clocks of the machines must tick at about the same rate (they need not agree on the time).
A graceful stop releases the Lease, so a follower takes over within about one renew interval;
after a crash a follower takes over within about ``lease_duration`` (rounded up to
whole seconds) ``+ renew_interval``.

What is not guaranteed: a process that is paused (a long garbage collection, SIGSTOP, a
suspended virtual machine) while it leads cannot notice that its lease expired, and may keep
acting for a moment after another instance took over, exactly as with Kubernetes leases.
Controllers must therefore still write with compare-and-swap; the scheduler does (it binds tasks
with CAS updates), so a stale leader's bindings fail with Conflict instead of double-booking
cores. Leadership is per Lease; nothing orders the terms of different Leases.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmapply.api.names import dns1123_label_error
from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Object, Store
from swarmapply.controllers.lease import (
    LEASE_KIND,
    Observation,
    acquired_lease,
    default_identity,
    default_renew_deadline,
    is_free,
    lease_duration_seconds,
    lease_record,
    observe,
    released_lease,
    renewed_lease,
    timestamp_now,
)
from swarmapply.errors import TemporaryError

log = logging.getLogger(__name__)

#: What a leader runs: it must return soon after the event (its term's stop) is set.
Lead = Callable[[threading.Event], None]
#: A monotonic clock in seconds.
Clock = Callable[[], float]

#: How often the leading thread checks its stop event, the renew deadline and its controller.
_POLL = 0.02
#: How often to say that a controller is slow to stop after its term ended.
_SLOW_STOP_WARNING = 5.0


@dataclass(frozen=True)
class ElectorStats:
    """A snapshot of an elector's state, for tests, logs and health checks.

    Attributes:
        identity: This candidate's identity.
        lease_name: The Lease.
        is_leader: True from acquiring the Lease until ``lead`` has returned.
        holder: The holder this candidate last saw (itself while leading); empty when none.
        terms: Leadership terms started.
        lost: Terms that ended because the Lease was lost (taken over, deleted, or not
            renewed in time).
        released: Times the Lease was released.
        transitions: Changes of holder this candidate saw, its own acquisitions included.
    """

    identity: str
    lease_name: str
    is_leader: bool
    holder: str
    terms: int
    lost: int
    released: int
    transitions: int


class _Lost(Exception):
    """A renewal showed that the Lease is no longer ours."""


class LeaderElector:
    """Campaigns for one Lease and runs ``lead`` while holding it (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        lease_name: str,
        identity: str | None = None,
        *,
        lease_duration: float = 4.0,
        renew_interval: float = 1.0,
        renew_deadline: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Creates an elector; nothing happens until :meth:`run`.

        Args:
            store: The store holding the Lease.
            lease_name: The Lease's name, a DNS-1123 label such as ``controller-scheduler``.
            identity: This candidate's identity, unique among candidates; default
                :func:`default_identity`.
            lease_duration: Seconds after the last renewal a follower sees before it may
                take over (written rounded up to whole seconds).
            renew_interval: Seconds between a leader's renewals and between a follower's
                attempts to acquire.
            renew_deadline: Seconds a leader keeps leading without a successful renewal;
                default :func:`default_renew_deadline`.
            clock: The monotonic clock (a fake one in tests).

        Raises:
            ValueError: A bad name, identity or durations (the message names the argument).
        """
        error = dns1123_label_error(lease_name)
        if error:
            raise ValueError(f"lease name: {error}")
        identity = default_identity() if identity is None else identity
        if not identity or identity != identity.strip():
            raise ValueError(f"identity: expected a non-empty word, got {identity!r}")
        if not (math.isfinite(lease_duration) and lease_duration > 0):
            raise ValueError("lease_duration: expected seconds > 0")
        if not 0 < renew_interval < lease_duration:
            raise ValueError("renew_interval: expected 0 < renew_interval < lease_duration")
        if renew_deadline is None:
            renew_deadline = default_renew_deadline(lease_duration, renew_interval)
        if not renew_interval <= renew_deadline <= lease_duration:
            raise ValueError(
                "renew_deadline: expected renew_interval <= renew_deadline <= lease_duration"
            )
        self.store = store
        self.lease_name = lease_name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.renew_deadline = renew_deadline
        self._clock = clock
        self._duration_seconds = lease_duration_seconds(lease_duration)
        self._cond = threading.Condition()
        self._is_leader = False
        self._holder = ""
        self._terms = 0
        self._lost = 0
        self._released = 0
        self._transitions = 0
        # Touched only by the thread in run() and, during a term, its renewer thread.
        self._observation: Observation | None = None
        self._lease: Object | None = None
        self._last_renew = 0.0
        self._store_failing = False

    # -- observability -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True from acquiring the Lease until ``lead`` has returned."""
        with self._cond:
            return self._is_leader

    def stats(self) -> ElectorStats:
        """A consistent snapshot of the state and counters."""
        with self._cond:
            return self._stats()

    def wait_until(self, predicate: Callable[[ElectorStats], bool], timeout: float) -> bool:
        """Blocks until ``predicate(stats)`` holds or ``timeout`` seconds pass.

        Returns:
            Whether the predicate held.
        """
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._stats()), timeout)

    def _stats(self) -> ElectorStats:
        return ElectorStats(
            identity=self.identity,
            lease_name=self.lease_name,
            is_leader=self._is_leader,
            holder=self._holder,
            terms=self._terms,
            lost=self._lost,
            released=self._released,
            transitions=self._transitions,
        )

    def _update(self, **changes: Any) -> None:
        with self._cond:
            for key, value in changes.items():
                setattr(self, f"_{key}", value)
            self._cond.notify_all()

    def _see_holder(self, holder: str) -> None:
        with self._cond:
            if holder == self._holder:
                return
            self._holder = holder
            if holder:
                self._transitions += 1
            self._cond.notify_all()
        if holder and holder != self.identity:
            log.info("lease %s: held by %s", self.lease_name, holder)

    # -- the campaign --------------------------------------------------------------------

    def run(self, stop: threading.Event, lead: Lead) -> None:
        """Campaigns until ``stop`` is set, running ``lead(term_stop)`` during each term.

        ``lead`` runs on its own thread. Its term ends, and ``term_stop`` is set, when the
        Lease is lost, when ``stop`` is set, or when ``lead`` returns by itself (an exception
        from it is logged); the Lease is then released unless another instance holds it,
        and after ``lead`` has returned the campaign resumes (after one renew interval).
        Store errors are logged and retried. Returns when ``stop`` is set, after ``lead``
        returned and the Lease was released.
        """
        while not stop.is_set():
            acquired_at = self._try_acquire()
            if acquired_at is None:
                stop.wait(self._follow_delay())
                continue
            ended_by_loss = self._lead_term(stop, lead, acquired_at)
            if not stop.is_set() and not ended_by_loss:
                stop.wait(self.renew_interval)

    def _follow_delay(self) -> float:
        """Seconds until the next attempt: a renew interval, or less if the Lease expires."""
        observation = self._observation
        delay = self.renew_interval
        if observation is not None and observation.holder not in ("", self.identity):
            remaining = observation.expires_at - self._clock()
            if remaining > 0:
                delay = min(delay, remaining + 0.001)
        return delay

    def _try_acquire(self) -> float | None:
        """One attempt to acquire; returns the attempt's start time when the Lease is ours."""
        started = self._clock()
        try:
            try:
                current = self.store.get(LEASE_KIND, self.lease_name)
            except NotFound:
                new = acquired_lease(
                    None, self.lease_name, self.identity, self._duration_seconds, timestamp_now()
                )
                lease = self.store.create(new)
            else:
                self._observation = observe(self._observation, current, self._clock())
                self._see_holder(self._observation.holder)
                if not is_free(self._observation, self.identity, self._clock()):
                    self._store_recovered()
                    return None
                lease = self.store.update(
                    acquired_lease(
                        current,
                        self.lease_name,
                        self.identity,
                        self._duration_seconds,
                        timestamp_now(),
                    )
                )
        except (AlreadyExists, Conflict) as exc:
            log.debug("lease %s: another candidate was faster: %s", self.lease_name, exc)
            self._store_recovered()
            return None
        except TemporaryError as exc:
            self._store_trouble(exc)
            return None
        except Exception as exc:  # a bug or a broken store: keep campaigning, but say so
            self._store_trouble(exc, unexpected=True)
            return None
        self._store_recovered()
        self._lease = lease
        self._observation = observe(None, lease, self._clock())
        record = lease_record(lease)
        self._see_holder(self.identity)
        self._update(is_leader=True, terms=self._terms + 1)
        log.info(
            "lease %s: acquired by %s (transitions: %d)",
            self.lease_name,
            self.identity,
            record.transitions,
        )
        return started

    def _store_trouble(self, exc: BaseException, *, unexpected: bool = False) -> None:
        """Logs a failed store call: the first of a series as a warning, the rest quietly."""
        if unexpected:
            log.error("lease %s: unexpected store error", self.lease_name, exc_info=exc)
        elif not self._store_failing:
            log.warning("lease %s: store unavailable, retrying: %s", self.lease_name, exc)
        else:
            log.debug("lease %s: store still unavailable: %s", self.lease_name, exc)
        self._store_failing = True

    def _store_recovered(self) -> None:
        if self._store_failing:
            log.info("lease %s: store reachable again", self.lease_name)
            self._store_failing = False

    def _lead_term(self, stop: threading.Event, lead: Lead, acquired_at: float) -> bool:
        """Runs one term; returns True when it ended because the Lease was lost."""
        term_stop = threading.Event()
        lead_done = threading.Event()
        lost = threading.Event()
        lost_reason: list[str] = []
        self._last_renew = acquired_at

        def run_lead() -> None:
            try:
                lead(term_stop)
            except Exception:
                log.exception("lease %s: the leader's work failed", self.lease_name)
            finally:
                lead_done.set()

        def renew_loop() -> None:
            while not term_stop.wait(self.renew_interval):
                started = self._clock()
                try:
                    self._renew()
                except _Lost as exc:
                    lost_reason.append(str(exc))
                    lost.set()
                    return
                except TemporaryError as exc:
                    self._store_trouble(exc)
                except Exception as exc:
                    self._store_trouble(exc, unexpected=True)
                else:
                    self._store_recovered()
                    self._last_renew = max(self._last_renew, started)

        leader = threading.Thread(target=run_lead, name=f"{self.lease_name}-lead", daemon=True)
        renewer = threading.Thread(target=renew_loop, name=f"{self.lease_name}-renew", daemon=True)
        leader.start()
        renewer.start()
        reason = ""
        while not reason:
            if stop.is_set():
                reason = "stopping"
            elif lost.is_set():
                reason = lost_reason[0] if lost_reason else "lost"
            elif lead_done.is_set():
                reason = "the leader's work ended by itself"
            elif self._clock() - self._last_renew >= self.renew_deadline:
                reason = f"not renewed for {self.renew_deadline:g}s"
            else:
                lead_done.wait(_POLL)
        term_stop.set()
        if stop.is_set():
            log.debug("lease %s: ending the term (%s)", self.lease_name, reason)
        elif lead_done.is_set():
            log.info("lease %s: ending the term (%s)", self.lease_name, reason)
        else:
            log.warning("lease %s: lost (%s)", self.lease_name, reason)
        waited = 0.0
        while not lead_done.wait(_SLOW_STOP_WARNING):
            waited += _SLOW_STOP_WARNING
            log.warning(
                "lease %s: the leader's work has not stopped %gs after its term ended",
                self.lease_name,
                waited,
            )
        leader.join()
        renewer.join(self.lease_duration)
        if renewer.is_alive():
            log.warning("lease %s: a renewal is still in progress", self.lease_name)
        ended_by_loss = lost.is_set() and not stop.is_set()
        counts: dict[str, Any] = {"is_leader": False}
        if lost.is_set() or reason.startswith("not renewed"):
            counts["lost"] = self._lost + 1
        self._update(**counts)
        if not lost.is_set():
            self._release()
        return ended_by_loss

    def _renew(self) -> None:
        """One CAS renewal of the Lease; raises _Lost when another instance holds it."""
        lease = self._lease
        if lease is None:
            raise _Lost("no Lease to renew")
        try:
            self._lease = self.store.update(renewed_lease(lease, timestamp_now()))
            return
        except NotFound:
            raise _Lost("the Lease was deleted") from None
        except Conflict:
            pass
        # Someone wrote the Lease since our last write: another candidate, or our own renewal
        # whose answer was lost (only this candidate writes its identity).
        try:
            current = self.store.get(LEASE_KIND, self.lease_name)
        except NotFound:
            raise _Lost("the Lease was deleted") from None
        holder = lease_record(current).holder
        if holder != self.identity:
            self._see_holder(holder)
            raise _Lost(f"taken over by {holder}" if holder else "released by someone else")
        self._lease = self.store.update(renewed_lease(current, timestamp_now()))

    def _release(self) -> None:
        """Gives the Lease up so that a follower takes over at once (best effort, logged)."""
        lease = self._lease
        if lease is None:
            return
        try:
            try:
                released = self.store.update(released_lease(lease, timestamp_now()))
            except Conflict:
                current = self.store.get(LEASE_KIND, self.lease_name)
                if lease_record(current).holder != self.identity:
                    log.info("lease %s: not released: no longer ours", self.lease_name)
                    return
                released = self.store.update(released_lease(current, timestamp_now()))
        except Exception as exc:
            log.warning(
                "lease %s: could not release it (%s); others take over when it expires",
                self.lease_name,
                exc,
            )
            return
        self._lease = None
        self._observation = observe(None, released, self._clock())
        with self._cond:
            self._released += 1
            self._holder = ""
            self._cond.notify_all()
        log.info("lease %s: released by %s", self.lease_name, self.identity)


__all__ = ["Clock", "ElectorStats", "Lead", "LeaderElector"]
