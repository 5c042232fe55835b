"""The scheduler's writes for re-fitted tasks: resizes and migration reservations.

:mod:`.refit` decides; this carries the decisions out for the scheduler, each write a
compare-and-swap on the object as the pass read it. A write that conflicts (the agent or the
migrator wrote meanwhile) or finds the object gone is dropped and the pass is marked dirty, so
the next pass decides again from fresh objects: nothing is half-applied, since each decision is
one object's status.

Writes:

* a resize: the Task's ``status.cpuset``/``memory``, a ``Resized=True`` condition and a
  ``Resized`` Event; a resize that waits: ``Resized=False`` (reason ``InsufficientResources``)
  and a ``ResizeWaiting`` Event whenever its message changes;
* a reservation: the Migration's phase ``Reserved`` with ``status.tasks`` targets (and the
  first task's target in ``targetNode``/``targetCpuset``) and the time it took; a Migration
  that cannot get a target: phase ``Failed``, reason ``Unschedulable``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.api.store.lifecycle import now_rfc3339, parse_time
from swarmapply.controllers.conditions import find_condition, set_condition
from swarmapply.controllers.events import record_event
from swarmapply.controllers.lease import timestamp_now
from swarmapply.controllers.refit import Reservation, Resize, ResizeWaiting, Unreservable

log = logging.getLogger(__name__)

Object = dict[str, Any]


class RefitWriter:
    """Writes resizes and reservations for one scheduler (see the module docstring)."""

    def __init__(self, store: Store, name: str, dirty: threading.Event) -> None:
        self.store = store
        self.name = name
        self.dirty = dirty
        self.resized = 0
        self.reserved = 0

    def _write(self, obj: Object, status: Object) -> Object | None:
        try:
            return self.store.update_status({**obj, "status": status})
        except (Conflict, NotFound):
            self.dirty.set()  # changed or gone meanwhile: decide again in the next pass
            return None

    def _event(self, obj: Object, reason: str, message: str, type_: str) -> None:
        record_event(self.store, obj, reason, message, component=self.name, type_=type_)

    def resize(
        self,
        resizes: Sequence[Resize],
        waiting: Sequence[ResizeWaiting],
        tasks: Mapping[str, Object],
    ) -> None:
        """Write the resizes that fit and mark those that wait."""
        now = now_rfc3339()
        for resize in resizes:
            task = tasks[resize.task]
            status = dict(task.get("status") or {})
            status.update(cpuset=resize.cpuset, memory=resize.memory)
            status["conditions"] = set_condition(
                status.get("conditions"), "Resized", "True", "Resized", resize.message, now=now
            )
            if self._write(task, status) is not None:
                self.resized += 1
                log.info("%s: task %s %s", self.name, resize.task, resize.message)
                self._event(task, "Resized", resize.message, "Normal")
        for wait in waiting:
            task = tasks[wait.task]
            old = task.get("status") or {}
            before = find_condition(old, "Resized") or {}
            if before.get("status") == "False" and before.get("message") == wait.message:
                continue
            status = dict(old)
            status["conditions"] = set_condition(
                old.get("conditions"), "Resized", "False", "InsufficientResources", wait.message,
                now=now,
            )  # fmt: skip
            if self._write(task, status) is not None:
                self._event(task, "ResizeWaiting", wait.message, "Warning")

    def reserve(
        self,
        reservations: Sequence[Reservation],
        failures: Sequence[Unreservable],
        migrations: Mapping[str, Object],
    ) -> None:
        """Record the reserved targets, and fail the Migrations that cannot get one."""
        now = now_rfc3339()
        for reservation in reservations:
            migration = migrations[reservation.migration]
            status = dict(migration.get("status") or {})
            first = reservation.tasks[0]
            status.update(
                phase="Reserved",
                tasks=list(reservation.tasks),
                targetNode=first["targetNode"],
                targetCpuset=first["targetCpuset"],
                reason="Reserved",
                message=reservation.message,
            )
            started = parse_time(status.get("startTime"))
            moment = parse_time(timestamp_now())  # to the microsecond, as startTime is
            if started is not None and moment is not None:
                timings = dict(status.get("timings") or {})
                timings["reserve"] = round(max(0.0, (moment - started).total_seconds()), 3)
                status["timings"] = timings
            if self._write(migration, status) is not None:
                self.reserved += 1
                log.info("%s: migration %s: %s", self.name, reservation.migration,
                         reservation.message)  # fmt: skip
        for failure in failures:
            migration = migrations[failure.migration]
            status = dict(migration.get("status") or {})
            status.update(
                phase="Failed", reason="Unschedulable", message=failure.message,
                completionTime=now,
            )  # fmt: skip
            if self._write(migration, status) is not None:
                log.info("%s: migration %s failed: %s", self.name, failure.migration,
                         failure.message)  # fmt: skip
                self._event(migration, "FailedScheduling", failure.message, "Warning")


__all__ = ["RefitWriter"]
