"""The migrator's decisions: what a Migration's next step is, as a pure function.

:func:`decide` takes a Migration, the Tasks it moves, which nodes' agents are alive and the
time, and returns an :class:`Outcome`: the Task statuses to write, then the Migration's new
status, the Events to record, and when to look again. :mod:`.migrator` reads and writes.

The phases (see ``api/schemas/migration.json``) and who moves them on:

* *(new)* -> ``Pending``: the migrator checks that every task to move runs on a node (a
  Migration of a task that does not run fails at once, reason ``InvalidMigration``) and
  records each one's source in ``status.tasks``.
* ``Pending`` -> ``Reserved`` (or ``Failed``): the scheduler reserves targets (the only
  allocator); see :mod:`.refit`.
* ``Reserved`` -> ``Checkpointing`` (live, and auto) or ``Stopping`` (cold): the migrator
  gives each task's source agent a step in ``status.migration`` (``Checkpoint``/``Stop``).
* -> ``Transferring`` (live) / ``Starting`` (cold): when every source agent has done its step,
  each task is *committed*: bound to its target cores (``status.node``/``cpuset``/``memory``)
  with the step ``Restore``/``Start`` for the target's agent. Its old cores stay held by the
  Migration (see :mod:`.usage`) until it ends.
* ``Transferring`` -> ``Restoring`` when the target agents have the checkpoint; ->
  ``Succeeded`` when every task runs on its target; the steps are then cleared.

Failures, always leaving each task running on exactly one node:

* Before the commit: a step the source agent refuses (CRIU cannot checkpoint) falls back to
  cold under ``auto`` (an Event says so) and fails the Migration otherwise; its steps are
  withdrawn and a task whose container was already stopped is started again where it was.
* After the commit: a refused start or restore rolls the tasks that have not arrived back onto
  their source cores (still held), to be started there again; under ``auto`` a failed restore
  first falls back to a cold start on the target.
* A step that an alive agent has not begun within ``step_timeout`` seconds is a failure
  (``StepTimedOut``). A step whose agent is not alive (no heartbeat) or has begun it is waited
  for: withdrawing it could run the task twice, or lose it.

Not guaranteed: a rollback made while the target agent is starting the container (it was slow,
not dead) can leave that container running until the agent's next round removes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.job_tasks import FINISHED, JOB_LABEL

Object = dict[str, Any]

DONE = frozenset({"Succeeded", "Failed"})
#: Task status fields that describe a container on the node the task leaves.
_RUNTIME = ("containerID", "startTime", "finishTime", "exitCode", "reason", "message")
_LEAVING = {"Checkpointing": "checkpoint", "Stopping": "stop"}
_ARRIVING = {"Transferring": "transfer", "Restoring": "restore", "Starting": "start"}


@dataclass(frozen=True)
class Outcome:
    """What to write for one Migration (tasks first, then the Migration).

    Attributes:
        tasks: Task name -> its complete new status.
        status: The Migration's new status; None when it does not change.
        events: ``(reason, message, type)`` Events on the Migration.
        recheck: Seconds after which to decide again even if nothing changes (timeouts).
    """

    tasks: dict[str, Object] = field(default_factory=dict)
    status: Object | None = None
    events: tuple[tuple[str, str, str], ...] = ()
    recheck: float | None = None


@dataclass(frozen=True)
class View:
    """The inputs of :func:`decide`.

    Attributes:
        migration: The Migration object.
        tasks: The Tasks it may move, by name (the named task, or every task of the job).
        alive: Node name -> whether its agent heartbeats.
        now: Seconds since the epoch.
        stamp: ``now`` in RFC 3339 (microseconds).
        step_timeout: Seconds an alive agent has to begin a step.
        alive_since: Node -> when (seconds since the epoch) its agent began to hold its
            Lease; an agent that came back during a phase gets its whole ``step_timeout``.
    """

    migration: Mapping[str, Any]
    tasks: Mapping[str, Mapping[str, Any]]
    alive: Mapping[str, bool]
    now: float
    stamp: str
    step_timeout: float
    alive_since: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.migration["metadata"]["name"])

    @property
    def deleting(self) -> bool:
        """The Migration is being deleted: it is called off as if a step had failed."""
        return bool((self.migration.get("metadata") or {}).get("deletionTimestamp"))

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.migration.get("spec") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        return self.migration.get("status") or {}

    def marker(self, task: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The task's migration step if it is this Migration's."""
        step = ((task or {}).get("status") or {}).get("migration")
        return step if isinstance(step, Mapping) and step.get("name") == self.name else None

    def left(self, node: str) -> float:
        """Seconds the (alive) agent of ``node`` has left to begin this phase's step."""
        phase_start = self.now - self.elapsed()
        start = max(phase_start, self.alive_since.get(node, phase_start))
        return self.step_timeout - (self.now - start)

    def recheck(self, pending: Sequence[str], dead: bool) -> float:
        """When to look again: at the first deadline, soon while an agent is not alive."""
        if pending:
            return max(0.1, min(self.left(node) for node in pending))
        return min(1.0, self.step_timeout) if dead else self.step_timeout

    def elapsed(self) -> float:
        """Seconds spent in the current phase."""
        start = parse_time(self.status.get("startTime"))
        if start is None:
            return 0.0
        timings = self.status.get("timings") or {}
        spent = sum(float(v) for k, v in timings.items() if k != "total")
        return max(0.0, self.now - start.timestamp() - spent)


def _live(task: Mapping[str, Any] | None) -> bool:
    status = (task or {}).get("status") or {}
    return task is not None and status.get("phase") not in FINISHED


def _with(status: Mapping[str, Any], **changes: Any) -> Object:
    new = dict(status)
    for key, value in changes.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    return new


def _timed(view: View, stage: str, status: Object) -> Object:
    timings = dict(view.status.get("timings") or {})
    timings[stage] = round(view.elapsed(), 3)
    status["timings"] = timings
    return status


def _finished(view: View, phase: str, reason: str, message: str) -> Object:
    status = _with(
        view.status, phase=phase, reason=reason, message=message, completionTime=view.stamp
    )
    start = parse_time(view.status.get("startTime"))
    if start is not None:
        timings = dict(view.status.get("timings") or {})
        timings["total"] = round(max(0.0, view.now - start.timestamp()), 3)
        status["timings"] = timings
    return status


def _fail(view: View, reason: str, message: str, tasks: dict[str, Object] | None = None) -> Outcome:
    status = _finished(view, "Failed", reason, message)
    return Outcome(tasks or {}, status, (("MigrationFailed", message, "Warning"),))


def decide(view: View) -> Outcome:
    """The next step of ``view.migration`` (see the module docstring)."""
    phase = view.status.get("phase")
    if phase in DONE:
        return Outcome(tasks=_cleared(view))
    if view.deleting and phase in (None, "", "Pending", "Reserved"):
        return _fail(view, "Deleted", "the Migration was deleted; nothing moved", _cleared(view))
    if not phase:
        return _start(view)
    if phase == "Reserved":
        return _begin(view)
    if phase in _LEAVING:
        return _leave(view, str(phase))
    if phase in _ARRIVING:
        return _arrive(view, str(phase))
    return Outcome()  # Pending: the scheduler's turn


def _cleared(view: View) -> dict[str, Object]:
    """Steps of this (finished) Migration still on tasks, removed."""
    return {
        name: _with(task.get("status") or {}, migration=None)
        for name, task in view.tasks.items()
        if view.marker(task) is not None
    }


def _entries(view: View) -> list[Mapping[str, Any]]:
    return list(view.status.get("tasks") or [])


# -- new -------------------------------------------------------------------------------------


def _start(view: View) -> Outcome:
    spec = view.spec
    if spec.get("task"):
        name = str(spec["task"])
        task = view.tasks.get(name)
        chosen = (
            [task] if task is not None and not task["metadata"].get("deletionTimestamp") else []
        )
        if not chosen:
            return _fail(view, "InvalidMigration", f"task {name} does not exist")
    else:
        job = str(spec.get("job"))
        chosen = [
            t
            for t in view.tasks.values()
            if ((t.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL) == job
            and _live(t)
            and not (t.get("metadata") or {}).get("deletionTimestamp")
        ]
        if not chosen:
            return _fail(view, "InvalidMigration", f"job {job} has no running tasks")
    entries: list[Object] = []
    for task in sorted(chosen, key=lambda t: str(t["metadata"]["name"])):
        name = str(task["metadata"]["name"])
        status = task.get("status") or {}
        if status.get("phase") != "Running" or not status.get("node") or not status.get("cpuset"):
            phase = status.get("phase") or "Pending"
            return _fail(
                view,
                "InvalidMigration",
                f"task {name} is {phase}; only a Running task can be moved",
            )
        other = status.get("migration")
        if other:
            by = f"migration {other.get('name')}"
            return _fail(view, "InvalidMigration", f"task {name} is being moved by {by}")
        if spec.get("toNode") == status["node"]:
            return _fail(
                view, "InvalidMigration", f"task {name} already runs on node {status['node']}"
            )
        entries.append(
            {
                "task": name,
                "sourceNode": str(status["node"]),
                "sourceCpuset": str(status["cpuset"]),
                "memory": int(status.get("memory", 0)),
            }
        )
    status = _with(
        view.status,
        phase="Pending",
        tasks=entries,
        sourceNode=entries[0]["sourceNode"],
        sourceCpuset=entries[0]["sourceCpuset"],
        startTime=view.stamp,
        reason="WaitingForTarget",
        message="waiting for the scheduler to reserve a target",
    )
    return Outcome(status=status)


# -- leaving the source ----------------------------------------------------------------------


def _begin(view: View) -> Outcome:
    mode = "cold" if view.spec.get("mode") == "cold" else "live"
    step = "Stop" if mode == "cold" else "Checkpoint"
    writes: dict[str, Object] = {}
    for entry in _entries(view):
        task = view.tasks.get(str(entry["task"]))
        status = (task or {}).get("status") or {}
        if not _live(task) or status.get("node") != entry["sourceNode"]:
            return _fail(
                view,
                "TaskGone",
                f"task {entry['task']} stopped running before it moved",
                _cleared(view),
            )
        other = status.get("migration")
        if other and other.get("name") != view.name:
            message = f"task {entry['task']} is being moved by migration {other.get('name')}"
            return _fail(view, "InvalidMigration", message, _cleared(view))
        if status.get("cpuset") != entry["sourceCpuset"] or int(status.get("memory", 0)) != int(
            entry.get("memory", 0)
        ):
            message = f"task {entry['task']} was resized while the target was reserved"
            return _fail(view, "TaskChanged", message, _cleared(view))
        if view.marker(task) is None:
            marker = {"name": view.name, "step": step, "node": entry["sourceNode"]}
            writes[str(entry["task"])] = _with(status, migration=marker)
    phase = "Stopping" if mode == "cold" else "Checkpointing"
    verb = "stopping" if mode == "cold" else "checkpointing"
    sources = ", ".join(sorted({str(e["sourceNode"]) for e in _entries(view)}))
    status = _with(
        view.status, phase=phase, mode=mode, reason=phase, message=f"{verb} on {sources}"
    )
    start = parse_time(view.status.get("startTime"))
    if start is not None:  # reserving lasted until now: the step's clock starts here
        timings = dict(view.status.get("timings") or {})
        timings["reserve"] = round(max(0.0, view.now - start.timestamp()), 3)
        status["timings"] = timings
    return Outcome(writes, status, recheck=view.step_timeout)


def _file(
    view: View,
    name: str,
    node: str,
    marker: Mapping[str, Any],
    pending: dict[str, str],
    waiting: list[str],
) -> bool:
    """Files a step not done yet: ``pending`` when its alive agent has not begun it (it can time
    out), else ``waiting``; True when its agent is not alive."""
    if marker.get("started") or not view.alive.get(node, False):
        reason = "" if marker.get("started") else " (its agent is not alive)"
        waiting.append(f"task {name} on node {node}{reason}")
        return not marker.get("started")
    pending[name] = node
    return False


def _leave(view: View, phase: str) -> Outcome:
    markers = [view.marker(view.tasks.get(str(e["task"]))) for e in _entries(view)]
    # After a fall back to cold, Stop steps may be out before the phase says Stopping.
    live = phase == "Checkpointing" and not any(m and m.get("step") == "Stop" for m in markers)
    writes: dict[str, Object] = {}
    failed: list[str] = []
    timed_out: list[str] = []
    pending: dict[str, str] = {}  # task -> node whose alive agent has not begun its step
    waiting: list[str] = []
    begun = dead = False
    moving = 0
    for entry in _entries(view):
        name = str(entry["task"])
        task = view.tasks.get(name)
        if not _live(task):
            continue  # ended or deleted meanwhile: nothing left to move
        assert task is not None
        moving += 1
        marker = view.marker(task)
        if marker is not None and marker.get("step") in ("Start", "Restore"):
            continue  # committed already (the process stopped before the phase was written)
        if marker is None:  # the step was never written (a crash between writes): write it
            step = "Checkpoint" if live else "Stop"
            status = task.get("status") or {}
            writes[name] = _with(
                status, migration={"name": view.name, "step": step, "node": entry["sourceNode"]}
            )
        elif marker.get("reason"):
            failed.append(f"task {name}: {marker['reason']}: {marker.get('message', '')}")
        elif not marker.get("done"):
            begun = begun or bool(marker.get("started"))
            dead = _file(view, name, str(entry["sourceNode"]), marker, pending, waiting) or dead
    if view.deleting:
        failed.append("the Migration was deleted")
    if writes and not view.deleting:
        return Outcome(writes, recheck=view.step_timeout)
    if moving == 0:
        return _fail(view, "TaskGone", "every task stopped running before it moved")
    if not failed:
        verb = "checkpoint" if live else "stop"
        timed_out = [
            f"task {n}: StepTimedOut: its agent did not {verb} it within {view.step_timeout:g}s"
            for n, node in pending.items()
            if view.left(node) < 0
        ]
    if (failed or timed_out) and not begun:  # a step an agent has begun is waited for
        if failed and live and not view.deleting and view.spec.get("mode", "auto") == "auto":
            return _fall_back_to_stop(view, "; ".join(failed))
        return _withdraw(view, "; ".join(failed + timed_out))
    if pending or waiting:
        message = f"{'checkpointing' if live else 'stopping'}: waiting for " + ", ".join(
            waiting + [f"task {n}" for n in pending]
        )
        status = _with(view.status, message=message)
        recheck = view.recheck(list(pending.values()), dead)
        return Outcome(status=None if status == view.status else status, recheck=recheck)
    if failed:
        return Outcome(recheck=view.step_timeout)  # waiting for a begun step, see above
    return _commit(view, live)


def _fall_back_to_stop(view: View, why: str) -> Outcome:
    writes = {}
    for entry in _entries(view):
        task = view.tasks.get(str(entry["task"]))
        if _live(task):
            assert task is not None
            marker = {"name": view.name, "step": "Stop", "node": entry["sourceNode"]}
            writes[str(entry["task"])] = _with(task.get("status") or {}, migration=marker)
    message = f"live migration is not possible ({why}); moving cold instead"
    status = _with(
        view.status, phase="Stopping", mode="cold", reason="FellBackToCold", message=message
    )
    status = _timed(view, "checkpoint", status)
    return Outcome(writes, status, (("FellBackToCold", message, "Warning"),), view.step_timeout)


def _withdraw(view: View, why: str) -> Outcome:
    """Fail before the commit: steps withdrawn; a stopped task starts again where it was."""
    writes = {}
    for task in view.tasks.values():
        marker = view.marker(task)
        if marker is None:
            continue
        status = _with(task.get("status") or {}, migration=None)
        if marker.get("done"):
            status = _with(status, **dict.fromkeys(_RUNTIME))
        writes[str(task["metadata"]["name"])] = status
    reason = "StepTimedOut" if "StepTimedOut" in why else "StepFailed"
    reason = "Deleted" if view.deleting else reason
    return _fail(view, reason, f"nothing moved: {why}", writes)


def _commit(view: View, live: bool) -> Outcome:
    writes = {}
    for entry in _entries(view):
        name = str(entry["task"])
        task = view.tasks.get(name)
        if not _live(task):
            continue
        assert task is not None
        marker = view.marker(task) or {}
        if marker.get("step") in ("Start", "Restore"):
            continue  # committed already
        step: Object = {
            "name": view.name,
            "step": "Restore" if live else "Start",
            "node": entry["targetNode"],
        }
        for key in ("checkpoint", "checkpointBytes"):
            if live and key in marker:
                step[key] = marker[key]
        status = _with(task.get("status") or {}, **dict.fromkeys(_RUNTIME))
        writes[name] = _with(
            status,
            node=entry["targetNode"],
            cpuset=entry["targetCpuset"],
            memory=int(entry.get("memory", 0)),
            migration=step,
        )
    phase = "Transferring" if live else "Starting"
    targets = ", ".join(sorted({str(e["targetNode"]) for e in _entries(view)}))
    verb = "moving the checkpoint to" if live else "starting on"
    status = _with(view.status, phase=phase, reason=phase, message=f"{verb} {targets}")
    return Outcome(
        writes, _timed(view, "checkpoint" if live else "stop", status), recheck=view.step_timeout
    )


# -- arriving on the target ------------------------------------------------------------------


def _arrived(task: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    status = task.get("status") or {}
    if status.get("node") != entry.get("targetNode"):
        return False
    return status.get("phase") in FINISHED or bool(
        status.get("phase") == "Running" and status.get("containerID")
    )


def _arrive(view: View, phase: str) -> Outcome:
    failed: list[str] = []
    pending: dict[str, str] = {}  # task -> node whose alive agent has not begun its step
    waiting: list[str] = []
    transferred = True
    rolled_back = dead = begun = False
    for entry in _entries(view):
        name = str(entry["task"])
        task = view.tasks.get(name)
        if task is None:
            continue
        marker = view.marker(task)
        status = task.get("status") or {}
        if _arrived(task, entry):
            continue
        if marker is None:
            rolled_back = rolled_back or status.get("node") == entry.get("sourceNode")
            continue
        if marker.get("reason"):
            failed.append(f"task {name}: {marker['reason']}: {marker.get('message', '')}")
            continue
        transferred = transferred and bool(marker.get("transferred"))
        begun = begun or bool(marker.get("started"))
        dead = _file(view, name, str(entry["targetNode"]), marker, pending, waiting) or dead
    if rolled_back and not failed:
        failed.append("the move was rolled back")
    if view.deleting:
        failed.append("the Migration was deleted")
    if not failed:
        failed = [
            f"task {n}: StepTimedOut: the agent of its target did not start it within "
            f"{view.step_timeout:g}s"
            for n, node in pending.items()
            if view.left(node) < 0
        ]
    if failed and begun:  # a step an agent has begun is waited for, then rolled back
        return Outcome(recheck=view.recheck(list(pending.values()), dead))
    if failed:
        why = "; ".join(failed)
        auto = view.spec.get("mode", "auto") == "auto" and not view.deleting
        if phase != "Starting" and auto:
            return _fall_back_to_start(view, phase, why)
        return _roll_back(view, why)
    if pending or waiting:
        if phase == "Transferring" and transferred:
            status = _with(
                view.status,
                phase="Restoring",
                reason="Restoring",
                message="restoring from the checkpoint",
            )
            return Outcome(status=_timed(view, "transfer", status), recheck=view.step_timeout)
        return Outcome(recheck=view.recheck(list(pending.values()), dead))
    return _succeed(view, phase)


def _fall_back_to_start(view: View, phase: str, why: str) -> Outcome:
    writes = {}
    for entry in _entries(view):
        task = view.tasks.get(str(entry["task"]))
        if task is None or _arrived(task, entry) or view.marker(task) is None:
            continue
        marker = {"name": view.name, "step": "Start", "node": entry["targetNode"]}
        writes[str(entry["task"])] = _with(task.get("status") or {}, migration=marker)
    message = f"restoring from the checkpoint failed ({why}); starting cold on the target instead"
    status = _with(
        view.status, phase="Starting", mode="cold", reason="FellBackToCold", message=message
    )
    status = _timed(view, _ARRIVING[phase], status)
    return Outcome(writes, status, (("FellBackToCold", message, "Warning"),), view.step_timeout)


def _roll_back(view: View, why: str) -> Outcome:
    """Fail after the commit: tasks not on their target go back to their source cores."""
    writes = {}
    back = []
    for entry in _entries(view):
        name = str(entry["task"])
        task = view.tasks.get(name)
        if task is None:
            continue
        marker = view.marker(task) or {}
        status = _with(task.get("status") or {}, migration=None)
        if not _arrived(task, entry) and status.get("node") == entry["sourceNode"]:
            if marker.get("started") or marker.get("done"):  # its container was stopped
                status = _with(status, **dict.fromkeys(_RUNTIME))
                back.append(name)
        elif not _arrived(task, entry):
            status = _with(status, **dict.fromkeys(_RUNTIME))
            status.update(
                node=entry["sourceNode"],
                cpuset=entry["sourceCpuset"],
                memory=int(entry.get("memory", 0)),
            )
            back.append(name)
        if status != (task.get("status") or {}):
            writes[name] = status
    where = f"; {', '.join(back)} started again on the source" if back else ""
    return _fail(view, "RolledBack", f"{why}{where}", writes)


def _succeed(view: View, phase: str) -> Outcome:
    writes = _cleared(view)
    places = []
    for entry in _entries(view):
        task = view.tasks.get(str(entry["task"]))
        if task is not None:
            status = task.get("status") or {}
            places.append(
                f"{entry['task']} on node {status.get('node')}, cores {status.get('cpuset')}"
            )
    message = "moved: " + "; ".join(places) if places else "nothing left to move"
    status = _timed(view, _ARRIVING[phase], dict(view.status))
    view_done = View(
        {**view.migration, "status": status},
        view.tasks,
        view.alive,
        view.now,
        view.stamp,
        view.step_timeout,
    )
    final = _finished(view_done, "Succeeded", "Migrated", message)
    return Outcome(writes, final, (("Migrated", message, "Normal"),))


def involved_nodes(migration: Mapping[str, Any]) -> Sequence[str]:
    """Every source and target node named in a Migration's status."""
    nodes = set()
    for entry in (migration.get("status") or {}).get("tasks") or []:
        for key in ("sourceNode", "targetNode"):
            if entry.get(key):
                nodes.add(str(entry[key]))
    return sorted(nodes)


__all__ = ["DONE", "Outcome", "View", "decide", "involved_nodes"]
