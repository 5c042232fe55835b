"""The migrator: carries out Migrations, and fails Checkpoints no agent can take.

Each reconcile of a Migration reads it, the Tasks it moves and the heartbeat Leases of the
nodes involved, asks :func:`~.migration_steps.decide` for the next step and writes it: the
Tasks' ``status.migration`` steps (and, at the commit, their new binding) first, then the
Migration's status, each a compare-and-swap. A conflicting write (an agent acknowledged a step
meanwhile) is a temporary error: the key is reconciled again from fresh reads, so a migrator
killed anywhere converges when it runs again. Agents carry out the steps and acknowledge them
on the Task; their writes wake this loop up (Tasks are watched and mapped to the Migration
named in their step). Timeouts are checked by looking again when they are due.

Checkpoints: the agent of the task's node takes them; this loop fails those whose task does
not exist, is not bound to a node or has finished (reason ``TaskNotRunning``), which no agent
would ever answer.

The migrator never chooses cores: the scheduler reserves targets (:mod:`.refit`), and the
commit binds a task only to the cores reserved for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.events import record_event
from swarmapply.controllers.job_tasks import FINISHED, JOB_LABEL
from swarmapply.controllers.lease import (
    lease_record,
    live_holder,
    node_lease_name,
    timestamp_now,
)
from swarmapply.controllers.migration_steps import DONE, View, decide, involved_nodes
from swarmapply.controllers.runtime import Controller, SecondaryKind
from swarmapply.controllers.settings import ControllerSettings, MigratorSettings
from swarmapply.errors import TemporaryError

log = logging.getLogger(__name__)

Object = dict[str, Any]
COMPONENT = "migrator"
#: Holds a Migration that has not finished, so that deleting it first calls the move off.
FINALIZER = "swarmapply.io/migration"


class StepConflict(TemporaryError):
    """An object changed between the migrator's read and its write; decide again."""


def migration_of(task: Object) -> list[str]:
    """The Migration a Task's current step belongs to (a key mapper for the Task watch)."""
    step = (task.get("status") or {}).get("migration")
    return [str(step["name"])] if isinstance(step, Mapping) and step.get("name") else []


class Migrator:
    """Reconciles Migrations and Checkpoints (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: MigratorSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or MigratorSettings()
        self.clock = clock
        self.requeue: Callable[[str, float], None] | None = None

    # -- Migrations ---------------------------------------------------------------------------

    def reconcile(self, key: str) -> None:
        """One step of Migration ``key``."""
        try:
            migration = self.store.get("Migration", key)
        except NotFound:
            return
        held = self._finalizer(migration)
        if held is None:
            return
        migration = held
        tasks = self._tasks(migration)
        agents = {node: self._agent(node) for node in involved_nodes(migration)}
        view = View(
            migration,
            tasks,
            {node: since is not None for node, since in agents.items()},
            self.clock(),
            timestamp_now(),
            self.settings.step_timeout,
            {node: since for node, since in agents.items() if since is not None},
        )
        outcome = decide(view)
        for name, status in outcome.tasks.items():
            self._write(tasks[name], status)
        if outcome.status is not None:
            written = self._write(migration, outcome.status)
            before, after = view.status.get("phase"), outcome.status.get("phase")
            if after != before:
                log.info(
                    "migration %s: %s -> %s: %s",
                    key,
                    before or "new",
                    after,
                    outcome.status.get("message", ""),
                )
            migration = written or migration
        for reason, message, type_ in outcome.events:
            record_event(self.store, migration, reason, message, component=COMPONENT, type_=type_)
        if (outcome.status or {}).get("phase") in DONE and not outcome.tasks:
            self._finalizer(migration)  # finished, and its steps are cleared: let it go
        if outcome.recheck is not None and self.requeue is not None:
            self.requeue(key, outcome.recheck)

    def _finalizer(self, migration: Object) -> Object | None:
        """Holds an unfinished Migration with :data:`FINALIZER`, so that deleting it calls the
        move off first; releases a finished one. Returns the Migration as it is now (None when
        it is gone)."""
        meta = migration["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        done = (migration.get("status") or {}).get("phase") in DONE
        if done and FINALIZER in finalizers:
            finalizers.remove(FINALIZER)
        elif not done and FINALIZER not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append(FINALIZER)
        else:
            return migration
        try:
            return self.store.update({**migration, "metadata": {**meta, "finalizers": finalizers}})
        except Conflict as exc:
            raise StepConflict(f"Migration {meta['name']} changed meanwhile") from exc
        except NotFound:
            return None

    def _tasks(self, migration: Object) -> dict[str, Object]:
        spec = migration.get("spec") or {}
        found: dict[str, Object] = {}
        if spec.get("job"):
            selector = f"{JOB_LABEL}={spec['job']}"
            found = {t["metadata"]["name"]: t for t in self.store.list("Task", selector).items}
        names = {str(e["task"]) for e in (migration.get("status") or {}).get("tasks") or []}
        if spec.get("task"):
            names.add(str(spec["task"]))
        for name in names - set(found):
            try:
                found[name] = self.store.get("Task", name)
            except NotFound:
                continue
        return found

    def _agent(self, node: str) -> float | None:
        """Since when the node's agent holds its Lease, if it renewed it within the Lease's
        duration (seconds since the epoch); None when it is not alive."""
        try:
            lease = self.store.get("Lease", node_lease_name(node))
        except NotFound:
            return None
        if live_holder(lease, datetime.fromtimestamp(self.clock(), timezone.utc)) is None:
            return None
        record = lease_record(lease)
        since = parse_time(record.acquire_time or record.renew_time)
        return since.timestamp() if since is not None else None

    def _write(self, obj: Object, status: Object) -> Object | None:
        try:
            return self.store.update_status({**obj, "status": status})
        except Conflict as exc:
            kind, name = obj.get("kind"), obj["metadata"]["name"]
            raise StepConflict(f"{kind} {name} changed meanwhile; deciding again") from exc
        except NotFound:
            return None

    # -- Checkpoints --------------------------------------------------------------------------

    def reconcile_checkpoint(self, key: str) -> None:
        """Fail Checkpoint ``key`` if its task cannot be checkpointed by any agent."""
        try:
            checkpoint = self.store.get("Checkpoint", key)
        except NotFound:
            return
        status = checkpoint.get("status") or {}
        if status.get("phase") in DONE:
            return
        name = str((checkpoint.get("spec") or {}).get("task"))
        try:
            task = self.store.get("Task", name)
        except NotFound:
            self._fail_checkpoint(checkpoint, "TaskNotFound", f"task {name} does not exist")
            return
        task_status = task.get("status") or {}
        phase = task_status.get("phase") or "Pending"
        if phase in FINISHED or not task_status.get("node"):
            why = f"task {name} is {phase}" + ("" if phase in FINISHED else ", not on a node yet")
            self._fail_checkpoint(checkpoint, "TaskNotRunning", why)

    def _fail_checkpoint(self, checkpoint: Object, reason: str, message: str) -> None:
        status = {
            **(checkpoint.get("status") or {}),
            "phase": "Failed",
            "reason": reason,
            "message": message,
        }
        written = self._write(checkpoint, status)
        if written is not None:
            record_event(
                self.store,
                written,
                "CheckpointFailed",
                message,
                component=COMPONENT,
                type_="Warning",
            )


class MigratorLoops:
    """The migrator as one runnable: a controller for Migrations and one for Checkpoints."""

    name = COMPONENT

    def __init__(self, migrations: Controller, checkpoints: Controller) -> None:
        self.controllers = (migrations, checkpoints)

    def run(self, stop: threading.Event) -> None:
        """Run both controllers until ``stop`` is set."""
        threads = [
            threading.Thread(target=c.run, args=(stop,), name=c.name, daemon=True)
            for c in self.controllers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def build(
    store: Store, settings: ControllerSettings, *, clock: Callable[[], float] = time.time
) -> MigratorLoops:
    """The migrator as ``swarmapply controllers`` runs it."""
    migrator = Migrator(store, settings.migrator, clock=clock)
    migrations = Controller(
        COMPONENT,
        store,
        "Migration",
        migrator.reconcile,
        secondaries=[SecondaryKind("Task", migration_of)],
        workers=settings.workers,
        resync=settings.resync,
    )
    migrator.requeue = migrations.queue.add_after
    checkpoints = Controller(
        f"{COMPONENT}-checkpoints",
        store,
        "Checkpoint",
        migrator.reconcile_checkpoint,
        workers=1,
        resync=settings.resync,
    )
    return MigratorLoops(migrations, checkpoints)


__all__ = ["COMPONENT", "Migrator", "MigratorLoops", "build", "migration_of"]
