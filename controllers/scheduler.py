"""The scheduler loop: binds queued tasks to nodes and cores, says why jobs wait.

Each pass lists Nodes, Tasks, Jobs and Migrations from the store (one consistent view per
kind, fresh rather than from a cache, so a pass never works from bindings older than its own
writes), asks :func:`~.scheduling.plan_pass` what to do, and writes:

1. evictions (preemption): Events on both jobs, then the victims' tasks deleted;
2. re-fits (:mod:`.refit`, written by :mod:`.refit_writer`): live resizes of bound tasks on
   their nodes, and the targets reserved for pending Migrations, decided before any queued
   job is placed so that running tasks come first;
3. bindings, job by job: each Task's ``status.node``/``cpuset``/``memory`` and phase
   ``Scheduled``, written with compare-and-swap on the Task's resourceVersion. When one write
   of a job fails, the job's tasks bound earlier in the pass are unbound again, so a job is
   left placed in part only if the process dies in between; the next pass then places the
   rest of it (the bound part keeps its cores, nothing is bound twice);
4. waiting jobs: a ``Scheduled=False`` condition (reason ``Unschedulable``) on each unbound
   task, and a ``FailedScheduling`` Event on the Job whenever the reason changes;
5. each Node's ``status.allocated`` (totals and the per-task core map), when it differs.

A pass runs after any change to a Job or a Migration, or to a Node or Task that placement
depends on (a watch on the store sets a flag; heartbeats and the scheduler's own notes do not
count), after
``batch_window`` seconds more when set, and at least every ``resync`` seconds. Failed passes
are retried with exponential backoff; nothing is lost by a crash since each pass starts from
the store. Only one scheduler may run per store (leader election in ``swarmapply
controllers`` sees to it): this loop is the single writer of bindings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tenacity import wait_exponential

from swarmapply.api.store import Conflict, Gone, NotFound, Store
from swarmapply.api.store.lifecycle import now_rfc3339
from swarmapply.controllers.conditions import find_condition, set_condition
from swarmapply.controllers.events import record_event
from swarmapply.controllers.refit_writer import RefitWriter
from swarmapply.controllers.requests import condition_true
from swarmapply.controllers.scheduling import (
    Binding,
    Eviction,
    PassPlan,
    Waiting,
    is_live,
    plan_pass,
)
from swarmapply.controllers.settings import ControllerSettings, SchedulerSettings
from swarmapply.controllers.workqueue import strategy_delay
from swarmapply.errors import TemporaryError

log = logging.getLogger(__name__)

Object = dict[str, Any]


class BindingFailed(TemporaryError):
    """A job's tasks could not all be bound in this pass; the pass is retried."""


class Scheduler:
    """The scheduler loop (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: SchedulerSettings | None = None,
        *,
        name: str = "scheduler",
        resync: float = 30.0,
        watch_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create a scheduler; nothing happens until :meth:`run` or :meth:`schedule_once`.

        Args:
            store: The store.
            settings: Strategy, preemption, batching window and starvation limit.
            name: The component name on Events and in logs.
            resync: Seconds between passes when nothing changes.
            watch_timeout: Seconds after which an idle watch restarts (to notice stop).
            clock: Seconds since the epoch (for the starvation limit).
        """
        self.store = store
        self.settings = settings or SchedulerSettings()
        self.name = name
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.clock = clock
        self.passes = 0
        self.bound = 0
        self.failures = 0
        self.last_pass_seconds = 0.0
        self._dirty = threading.Event()
        self._seen: dict[tuple[str, str], str] = {}
        self.refits = RefitWriter(store, name, self._dirty)

    def summary(self) -> str:
        """The counters in one line, for logs."""
        return (
            f"passes {self.passes}, tasks bound {self.bound}, failed passes {self.failures}, "
            f"last pass {self.last_pass_seconds * 1000:.1f} ms"
        )

    # -- one pass ----------------------------------------------------------------------------

    def schedule_once(self) -> int:
        """Run one scheduling pass; returns the number of tasks bound.

        Raises:
            TemporaryError: A write conflicted or the store was unavailable; run again.
        """
        started = time.monotonic()
        # Migrations before Tasks: an older view of a Migration beside newer Tasks holds more
        # than needed (a move that just ended), never less (a rollback that just happened).
        migrations = self.store.list("Migration").items
        nodes = self.store.list("Node").items
        tasks = self.store.list("Task").items
        jobs = self.store.list("Job").items
        plan = plan_pass(nodes, tasks, jobs, self.settings, self.clock(), migrations)
        for conflict in plan.conflicts:
            log.error("%s: invariant broken: %s", self.name, conflict)
        task_by_name = {t["metadata"]["name"]: t for t in tasks}
        job_by_name = {j["metadata"]["name"]: j for j in jobs}
        self._evict(plan.evictions, job_by_name)
        self.refits.resize(plan.resizes, plan.resizes_waiting, task_by_name)
        self.refits.reserve(
            plan.reservations, plan.unreservable, {m["metadata"]["name"]: m for m in migrations}
        )
        bound = self._bind_all(plan, task_by_name)
        self._mark_waiting(plan.waiting, task_by_name, job_by_name)
        self._write_allocations(plan.allocations, {n["metadata"]["name"]: n for n in nodes})
        self.passes += 1
        self.bound += bound
        self.last_pass_seconds = time.monotonic() - started
        return bound

    def _evict(self, evictions: Sequence[Eviction], jobs: Mapping[str, Object]) -> None:
        for eviction in evictions:
            victim, by = jobs.get(eviction.job), jobs.get(eviction.by)
            if victim is not None:
                self._event(victim, "Preempted", eviction.message, "Warning")
            if by is not None:
                self._event(by, "Preempting", f"evicting job {eviction.job} to make room", "Normal")
            for task in eviction.tasks:
                with contextlib.suppress(NotFound):  # already gone: nothing to evict
                    self.store.delete("Task", task)
            log.info("%s: %s", self.name, eviction.message)

    def _bind_all(self, plan: PassPlan, tasks: Mapping[str, Object]) -> int:
        by_job: dict[str, list[Binding]] = defaultdict(list)
        for binding in plan.bindings:
            by_job[binding.job].append(binding)
        bound, failed = 0, []
        for job, bindings in by_job.items():
            try:
                bound += self._bind_job(bindings, tasks)
            except (Conflict, NotFound) as exc:
                failed.append(f"job {job}: {exc}")
        if failed:
            raise BindingFailed("could not bind " + "; ".join(failed))
        return bound

    def _bind_job(self, bindings: Sequence[Binding], tasks: Mapping[str, Object]) -> int:
        now = now_rfc3339()
        done: list[tuple[Object, Object]] = []  # (task before, task as written)
        try:
            for b in bindings:
                task = tasks[b.task]
                status = dict(task.get("status") or {})
                status.pop("reason", None)
                status.pop("message", None)
                status.update(phase="Scheduled", node=b.node, cpuset=b.cpuset, memory=b.memory)
                status["conditions"] = set_condition(
                    status.get("conditions"),
                    "Scheduled",
                    "True",
                    "Scheduled",
                    f"bound to node {b.node}, cores {b.cpuset}",
                    now=now,
                )
                written = self.store.update_status({**task, "status": status})
                done.append((task, written))
        except Exception:
            for before, written in reversed(done):
                self._unbind(before, written)
            raise
        if bindings:
            nodes = sorted({b.node for b in bindings})
            log.info(
                "%s: bound job %s (%d tasks) to %s",
                self.name,
                bindings[0].job,
                len(bindings),
                ", ".join(nodes),
            )
        return len(done)

    def _unbind(self, before: Object, written: Object) -> None:
        try:
            self.store.update_status({**written, "status": before.get("status") or {}})
        except Exception:
            log.exception(
                "%s: could not unbind task %s after its job failed to bind; the next pass "
                "places the rest of the job",
                self.name,
                written["metadata"]["name"],
            )

    def _mark_waiting(
        self, waiting: Sequence[Waiting], tasks: Mapping[str, Object], jobs: Mapping[str, Object]
    ) -> None:
        now = now_rfc3339()
        for wait in waiting:
            changed = False
            for name in wait.tasks:
                task = tasks[name]
                old = task.get("status") or {}
                before = find_condition(old, "Scheduled")
                status = {**old, "phase": "Pending", "reason": "Unschedulable"}
                status["message"] = wait.message
                status["conditions"] = set_condition(
                    old.get("conditions"), "Scheduled", "False", "Unschedulable", wait.message,
                    now=now,
                )  # fmt: skip
                if status == old:
                    continue
                changed = changed or (before or {}).get("message") != wait.message
                try:
                    self.store.update_status({**task, "status": status})
                except (Conflict, NotFound):
                    self._dirty.set()  # it changed meanwhile: look again in the next pass
            job = jobs.get(wait.job)
            if changed and job is not None:
                self._event(job, "FailedScheduling", wait.message, "Warning")

    def _write_allocations(self, views: Mapping[str, Object], nodes: Mapping[str, Object]) -> None:
        for name, view in views.items():
            node = nodes[name]
            for _ in range(5):
                status = dict(node.get("status") or {})
                if status.get("allocated") == view:
                    break
                status["allocated"] = view
                try:
                    self.store.update_status({**node, "status": status})
                    break
                except Conflict:
                    node = self.store.get("Node", name)  # the agent heartbeat; read again
                except NotFound:
                    break
            else:
                self._dirty.set()

    def _event(self, obj: Object, reason: str, message: str, type_: str) -> None:
        record_event(self.store, obj, reason, message, component=self.name, type_=type_)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Schedule until ``stop`` is set: a pass after every change (see the module doc)."""
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name=f"{self.name}-watch", daemon=True
        )
        watcher.start()
        backoff = wait_exponential(multiplier=0.05, max=5.0)
        failures = 0
        self._dirty.set()
        try:
            while not stop.is_set():
                deadline = time.monotonic() + self.resync
                while not stop.is_set() and time.monotonic() < deadline:
                    if self._dirty.wait(min(self.watch_timeout, deadline - time.monotonic())):
                        break
                if stop.is_set():
                    break
                if self.settings.batch_window and stop.wait(self.settings.batch_window):
                    break
                self._dirty.clear()
                try:
                    self.schedule_once()
                    failures = 0
                except Exception as exc:
                    failures += 1
                    self.failures += 1
                    delay = strategy_delay(backoff, failures)
                    if isinstance(exc, TemporaryError):
                        log.warning("%s: pass failed: %s; retrying in %.2fs", self.name, exc, delay)
                    else:
                        log.exception("%s: pass failed; retrying in %.2fs", self.name, delay)
                    self._dirty.set()
                    stop.wait(delay)
        finally:
            watcher.join(self.watch_timeout + 1.0)

    def _matters(self, type_: str, obj: Mapping[str, Any]) -> bool:
        """Whether a change can alter placement (heartbeats and our own notes cannot)."""
        kind = obj.get("kind")
        if kind in ("Job", "Migration"):
            return True
        if kind not in ("Node", "Task"):
            return False
        key = (str(kind), str(obj["metadata"]["name"]))
        if type_ == "DELETED":
            self._seen.pop(key, None)
            return True
        mark = placement_fingerprint(obj)
        if self._seen.get(key) == mark:
            return False
        self._seen[key] = mark
        return True

    def _watch(self, stop: threading.Event) -> None:
        since: int | None = None
        backoff = wait_exponential(multiplier=0.05, max=5.0)
        failures = 0
        while not stop.is_set():
            try:
                if since is None:
                    since = self.store.revision()
                    self._dirty.set()
                for event in self.store.watch(None, since, stop=stop, timeout=self.watch_timeout):
                    since = max(since, event.revision)
                    if self._matters(event.type, event.object):
                        self._dirty.set()
                failures = 0
            except Gone:
                since = None
            except Exception as exc:
                failures += 1
                log.warning("%s: watch failed: %s", self.name, exc)
                since = None
                stop.wait(strategy_delay(backoff, failures))


def placement_fingerprint(obj: Mapping[str, Any]) -> str:
    """The parts of a Node or Task that placement depends on, as one comparable string.

    A Node's heartbeat time and allocation view, and a Task's conditions, messages, runtime
    details and its phase as long as it stays live (Scheduled to Running), are left out:
    changes to those alone need no scheduling pass.
    """
    status = obj.get("status") or {}
    if obj.get("kind") == "Node":
        parts: Any = [obj.get("spec"), status.get("capacity"), condition_true(obj, "Ready")]
    else:
        # Only whether the task still holds its cores matters, not Scheduled versus Running.
        bound: dict[str, Any] = {k: status.get(k) for k in ("node", "cpuset", "memory")}
        bound["live"] = is_live(obj)
        meta = obj.get("metadata") or {}
        parts = [obj.get("spec"), bound, meta.get("labels"), meta.get("deletionTimestamp")]
    return json.dumps(parts, sort_keys=True, default=str)


def build(store: Store, settings: ControllerSettings) -> Scheduler:
    """The scheduler as ``swarmapply controllers`` runs it."""
    return Scheduler(store, settings.scheduler)


__all__ = ["BindingFailed", "Scheduler", "build"]
