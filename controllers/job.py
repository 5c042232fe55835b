"""The job controller: keeps each Job's Tasks in line with its spec and reports its status.

For one Job name, :meth:`JobController.reconcile` reads the Job and every Task whose
``spec.job`` names it, asks :mod:`.job_tasks` which Task writes to make and :mod:`.job_status`
which status to report, and does it in a crash-safe order:

1. delete leftover Tasks of an earlier Job of the same name (another uid);
2. create the missing Tasks and the new attempts that replace failed (or changed) ones;
3. update Pending Tasks whose spec changed (compare-and-swap);
4. only then delete replaced attempts and Tasks of entries removed from the spec;
5. write the Job's status when it changed (compare-and-swap) and record an Event for each
   phase it reached (Running, Succeeded, Failed), plus one per batch of created tasks;
6. once the Job finished, delete it ``spec.ttlSecondsAfterFinished`` seconds after its
   ``completionTime`` (requeueing the key until then).

What is guaranteed: every step is idempotent and derived from what is in the store, so a
controller killed between any two writes and run again neither duplicates nor loses a Task;
restarts are counted from the Tasks, never incremented. Events are at most once: one lost to a
crash between a write and its Event is not recorded later. A Task name held by an object this
Job does not own is reported as a permanent error naming both, after everything else is done.

What is not: a Job being deleted (``deletionTimestamp``) is left to the store's cascade, and
the Tasks of a Job that failed keep running until the Job is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from swarmapply.api.store import AlreadyExists, Conflict, NotFound, Object, Store
from swarmapply.controllers import job_status as js
from swarmapply.controllers import job_tasks as jt
from swarmapply.controllers.events import record_event
from swarmapply.controllers.runtime import Controller, SecondaryKind, owner_keys
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.controllers.workqueue import WorkQueue
from swarmapply.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

COMPONENT = "job-controller"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


class TaskNameConflict(PermanentError):
    """A Task name the Job needs is held by a Task the Job does not own."""


class JobController:
    """Reconciles one Job at a time against the store (the imperative shell).

    Attributes:
        store: The store.
        clock: Returns the current time (injectable for tests).
        queue: The work queue to requeue keys on for TTL expiry; None to not requeue.
    """

    def __init__(
        self, store: Store, *, clock: Clock = utc_now, queue: WorkQueue | None = None
    ) -> None:
        """Create the reconciler.

        Args:
            store: The store.
            clock: Returns the current, timezone-aware time.
            queue: Where to requeue a finished Job for its TTL (set by :func:`build`).
        """
        self.store = store
        self.clock = clock
        self.queue = queue

    # -- the loop ----------------------------------------------------------------------------

    def reconcile(self, key: str) -> None:
        """Bring the Job named ``key`` and its Tasks in line (idempotent, level-triggered).

        Raises:
            TemporaryError: A store error worth retrying, e.g. a Conflict.
            PermanentError: A Task name is taken by a Task this Job does not own.
        """
        try:
            job = self.store.get("Job", key)
        except NotFound:
            self._delete_leftovers(key)
            return
        if jt.is_terminating(job):
            return
        now = self.clock()
        remaining = js.ttl_remaining(job, now)
        if remaining is not None and remaining <= 0:
            self._expire(job)
            return
        tasks = self.store.list("Task", field_selector=f"spec.job={key}").items
        plan = jt.plan_tasks(job, tasks)
        for task in plan.leftovers:
            self._delete_task(task, "it belongs to an earlier Job of the same name")
        created, conflicts = self._create(job, plan)
        self._task_events(job, plan, created)
        for task in plan.update:
            self.store.update(task)
            log.info("Job %s: updated the spec of Task %s in place", key, jt.name_of(task))
        for task in plan.delete:
            self._delete_task(task, "it was replaced or its task left the Job's spec")
        after = plan.after
        if conflicts:  # the plan did not go through: read what is there
            after = self.store.list("Task", field_selector=f"spec.job={key}").items
        status = js.aggregate(job, after, now)
        old = job.get("status") or {}
        if status != old:
            written = self.store.update_status({**job, "status": status})
            job = written
            for type_, reason, message in js.phase_events(old, status):
                self._event(job, reason, message, type_)
        if status.get("phase") == jt.FAILED:
            self._stop_remaining(job, after)
        remaining = js.ttl_remaining({**job, "status": status}, now)
        if remaining is not None and self.queue is not None:
            self.queue.add_after(key, max(remaining, 0.0))
        if conflicts:
            raise TaskNameConflict(
                "; ".join(
                    f'Task "{jt.name_of(obj)}" for task {jt.task_key(obj)!r} of Job "{key}" '
                    f"already exists and is owned by {owner} (spec.job "
                    f"{(existing.get('spec') or {}).get('job')!r}), not by this Job; delete it "
                    "or rename the Job or the task"
                    for obj, existing in conflicts
                    for owner in [_owner_text(existing)]
                )
            )

    # -- steps -------------------------------------------------------------------------------

    def _create(
        self, job: Object, plan: jt.TaskPlan
    ) -> tuple[list[str], list[tuple[Object, Object]]]:
        """Create the plan's tasks; return the names created and the name conflicts."""
        created: list[str] = []
        conflicts: list[tuple[Object, Object]] = []
        for obj in plan.create:
            name = jt.name_of(obj)
            try:
                self.store.create(obj)
            except AlreadyExists:
                try:
                    existing = self.store.get("Task", name)
                except NotFound as exc:
                    raise TemporaryError(
                        f'Task "{name}" existed when Job "{jt.name_of(job)}" created it and is '
                        "gone again; retrying"
                    ) from exc
                if jt.is_owned_by(existing, job):
                    log.info("Task %s exists already (created by an earlier run)", name)
                    continue
                conflicts.append((obj, existing))
                continue
            created.append(name)
            log.info("Job %s: created Task %s", jt.name_of(job), name)
        if conflicts:
            # A replaced attempt stays until its successor exists.
            lost = {jt.name_of(o) for o, _ in conflicts}
            kept = {r.old for r in plan.replacements if r.new in lost}
            plan.delete = [t for t in plan.delete if jt.name_of(t) not in kept]
        return created, conflicts

    def _delete_task(self, task: Object, why: str, *, unchanged: bool = False) -> bool:
        """Delete a Task; with ``unchanged``, only if it is still as read (compare-and-swap).

        Returns whether it was deleted now.
        """
        name = jt.name_of(task)
        version = (task.get("metadata") or {}).get("resourceVersion") if unchanged else None
        try:
            self.store.delete("Task", name, resource_version=version)
        except NotFound:
            log.debug("Task %s was already gone", name)
            return False
        except Conflict:  # it changed (it may have finished): its change re-runs this job
            log.debug("Task %s changed since it was read; not deleted", name)
            return False
        log.info("deleted Task %s: %s", name, why)
        return True

    def _stop_remaining(self, job: Object, tasks: list[Object]) -> None:
        """A failed job gives back its cores: its tasks still live are deleted (as Kubernetes
        deletes a failed Job's active Pods); finished ones stay for their status and logs."""
        live = [
            t
            for t in tasks
            if jt.task_phase(t) not in jt.FINISHED and not jt.is_terminating(t)
            and jt.is_owned_by(t, job)
        ]  # fmt: skip
        why = f"its Job {jt.name_of(job)} failed"
        # Only if unchanged: a task that finished meanwhile keeps its status and logs.
        stopped = [t for t in live if self._delete_task(t, why, unchanged=True)]
        if stopped:
            names = ", ".join(jt.name_of(t) for t in stopped)
            self._event(job, "TasksStopped", f"Deleted tasks {names}: the job failed", "Normal")

    def _delete_leftovers(self, job_name: str) -> None:
        """The Job is gone: delete Tasks naming it whose owning Job no longer exists."""
        tasks = self.store.list("Task", field_selector=f"spec.job={job_name}").items
        for task in tasks:
            owners = jt.job_owner_uids(task)
            if not owners or jt.is_terminating(task):
                continue
            alive = any(
                self.store.list("Job", field_selector=f"metadata.uid={uid}").items for uid in owners
            )
            if not alive:
                self._delete_task(task, f"its Job {job_name} is gone")

    def _expire(self, job: Object) -> None:
        name = jt.name_of(job)
        try:
            self.store.delete("Job", name, resource_version=job["metadata"].get("resourceVersion"))
        except NotFound:
            return
        log.info("Job %s finished more than ttlSecondsAfterFinished ago: deleted", name)

    def _task_events(self, job: Object, plan: jt.TaskPlan, created: list[str]) -> None:
        done = set(created)
        fresh = [n for n in plan.created_missing if n in done]
        if fresh:
            self._event(job, "Created", f"Created tasks {', '.join(fresh)}", "Normal")
        replaced = [r for r in plan.replacements if r.new in done]
        if replaced:
            message = "; ".join(
                f"task {r.entry}: Task {r.old} {r.why}, replaced by {r.new}" for r in replaced
            )
            self._event(job, "Replaced", message, "Normal")

    def _event(self, job: Object, reason: str, message: str, type_: str) -> None:
        record_event(self.store, job, reason, message, component=COMPONENT, type_=type_)


def _owner_text(task: Object) -> str:
    refs = (task.get("metadata") or {}).get("ownerReferences") or []
    if not refs:
        return "nobody"
    return ", ".join(f"{r.get('kind')} {r.get('name')} (uid {r.get('uid')})" for r in refs)


def build(store: Store, settings: ControllerSettings, *, clock: Clock = utc_now) -> Controller:
    """The job controller: a runtime :class:`Controller` on Jobs, following their Tasks.

    Args:
        store: The store.
        settings: Worker count and resync period.
        clock: Returns the current time (for tests).
    """
    reconciler = JobController(store, clock=clock)
    controller = Controller(
        COMPONENT,
        store,
        "Job",
        reconciler.reconcile,
        secondaries=[SecondaryKind("Task", owner_keys("Job"))],
        workers=settings.workers,
        resync=settings.resync,
    )
    reconciler.queue = controller.queue
    return controller


__all__ = ["COMPONENT", "JobController", "TaskNameConflict", "build", "utc_now"]
