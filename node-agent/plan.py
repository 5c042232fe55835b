"""What a node agent must do to make its node match the Tasks bound to it (pure).

:func:`plan_node` compares the Tasks bound to one node with the containers the driver sees
there and returns a :class:`NodePlan`: containers to start, remove and resize in place, and the
new status of each Task whose status changes. It does no I/O; the agent loop applies the plan
through its driver and writes the statuses to the store.

Guarantees:

* Containers are matched to Tasks by the task uid label, never by name, so a Task deleted and
  created again under the same name never adopts the old container.
* Idempotent: applying a plan and planning again with the result asks for no start, remove or
  update; the statuses settle once the started containers are seen running (one more plan).
* A terminal phase (Succeeded, Failed) is never changed, and Running is reported only for a
  container that has started. Status fields other than ``phase``, ``containerID``,
  ``startTime``, ``finishTime``, ``exitCode``, ``reason`` and ``message`` (the scheduler's
  ``node``, ``cpuset``, ``memory``, ``conditions``, and ``restarts``...) are kept as they are.
* At most one container per task uid survives; containers of Tasks that are gone, bound
  elsewhere or being deleted are removed, and so is a still-running container of a finished
  Task (its cores have been given back to the scheduler). Exited containers of finished Tasks
  are kept for their logs, for ``finished_age`` seconds after the Task finished when the agent
  is given one (the pruner does the same on the manager's engine).

It does not restart anything: a failed container is reported (Failed with its exit code),
never started again here. Restarts are the job controller's (it replaces the Task), and a
container that vanishes from under a Task that had one is reported Failed (``ContainerLost``)
rather than silently started a second time.

Migrations: while a Task carries a migration step (``status.migration``, see
:mod:`swarmapply.agent.step_rules`) its usual handling is suspended: it is not started,
and its container stopping or vanishing is not reported (a Stop or Checkpoint step takes the
container away on purpose). A Start step on this node is planned here: a not-started container
of the task (left by an earlier attempt) is removed and a new one started, the task is reported
Running with the step ``done``, and a refusal is acknowledged in the step (``reason``/
``message``) instead of failing the task. Stop, Checkpoint and Restore are carried out by
:mod:`swarmapply.agent.steps`; a restored container is reported Running with the step ``done``.

Refused settings: a Task that would give its container the host (see
:mod:`swarmapply.agent.policy`) fails with reason ``RefusedSetting`` and a message naming the
field, unless the ClusterPolicies allow it. The check is made before a container is started,
never against one that already runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmapply.agent.model import ContainerSpec, Observed, container_spec
from swarmapply.agent.policy import NO_POLICY, Policy, refused_setting
from swarmapply.agent.step_rules import (
    RESTORE,
    START,
    Step,
    migration_step,
    step_failed,
    suspends,
    with_step,
)
from swarmapply.api.quantity import QuantityError, format_cpuset, format_memory, parse_cpuset
from swarmapply.api.store.lifecycle import format_rfc3339, parse_time

Object = dict[str, Any]

RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})

#: Container states in which the container has started (its task is Running).
STARTED = frozenset({"running", "paused", "restarting"})
#: Container states in which the container has stopped for good.
ENDED = frozenset({"exited", "dead"})

#: The status fields the node agent writes; every other status field is left as it is.
RUNTIME_FIELDS = (
    "phase",
    "containerID",
    "startTime",
    "finishTime",
    "exitCode",
    "reason",
    "message",
)

_ERROR_REASON = re.compile(r"([A-Z][A-Za-z0-9]*):\s*(.+)", re.DOTALL)


@dataclass(frozen=True)
class NodePlan:
    """What the agent should do on its node, and the Task statuses to write.

    Attributes:
        start: Containers to create and start (the driver's ``start`` is idempotent per uid,
            so a container that exists but was only created is started, not duplicated).
        remove: ``(container id, why)`` for each container to stop and remove.
        update: ``(container id, cpuset, memory in bytes)`` for each running container whose
            cores or memory limit must change in place.
        statuses: Task name -> its complete new ``status``, only for Tasks whose status
            changes.
    """

    start: tuple[ContainerSpec, ...] = ()
    remove: tuple[tuple[str, str], ...] = ()
    update: tuple[tuple[str, str, int], ...] = ()
    statuses: dict[str, Object] = field(default_factory=dict)

    @property
    def has_actions(self) -> bool:
        """True when the plan asks the driver to start, remove or update anything."""
        return bool(self.start or self.remove or self.update)

    @property
    def empty(self) -> bool:
        """True when there is nothing to do and no status to write."""
        return not self.has_actions and not self.statuses


def plan_node(
    node: str,
    tasks: Sequence[Object],
    observed: Sequence[Observed],
    *,
    now: str,
    policy: Policy = NO_POLICY,
    fresh: frozenset[str] = frozenset(),
    finished_age: float | None = None,
) -> NodePlan:
    """What to start, remove and resize on ``node``, and which Task statuses change.

    Args:
        node: This node's name.
        tasks: Task objects as read from the store: those bound to this node at least; Tasks
            bound elsewhere may be included (they make removal messages more precise).
        observed: Every managed container the driver sees on this node.
        now: The current time (RFC 3339), for times the engine did not report.
        policy: What the ClusterPolicies allow tasks to do to the node.
        fresh: Ids of containers started in this round (a migrated task's container that
            ended at once is reported ended, not replaced as left over from an earlier try).
        finished_age: Seconds the stopped container of a finished Task is kept for its logs
            after the Task's ``finishTime``; None keeps it as long as the Task exists.

    Returns:
        The plan (see :class:`NodePlan` and the module docstring for the rules).
    """
    by_uid: dict[str, Mapping[str, Any]] = {}
    for item in tasks:
        uid = _meta(item).get("uid")
        if isinstance(uid, str) and uid:
            by_uid[uid] = item
    groups: dict[str, list[Observed]] = {}
    for seen in observed:
        groups.setdefault(seen.task_uid, []).append(seen)

    start: list[ContainerSpec] = []
    remove: list[tuple[str, str]] = []
    update: list[tuple[str, str, int]] = []
    statuses: dict[str, Object] = {}

    kept: dict[str, Observed] = {}
    for uid, containers in groups.items():
        task = by_uid.get(uid)
        why = _not_ours(task, uid, containers[0], node)
        if why is not None:
            remove.extend((c.container_id, why) for c in containers)
            continue
        assert task is not None
        keep = _pick(containers, _status(task).get("containerID"))
        kept[uid] = keep
        for extra in containers:
            if extra is not keep:
                remove.append(
                    (
                        extra.container_id,
                        f"task {_name(task)} has {len(containers)} containers on node {node}; "
                        f"{keep.container_id} is kept",
                    )
                )

    for uid, task in by_uid.items():
        status = _status(task)
        if status.get("node") != node or _meta(task).get("deletionTimestamp"):
            continue
        name = _name(task)
        container = kept.get(uid)
        if status.get("phase") in TERMINAL:
            if container is not None and container.state in STARTED:
                remove.append(
                    (
                        container.container_id,
                        f"task {name} is {status['phase']}; its container must not keep "
                        "running on cores the scheduler has given back",
                    )
                )
            elif container is not None and _expired(status, now, finished_age):
                remove.append(
                    (
                        container.container_id,
                        f"task {name} finished more than {finished_age:g}s ago; its logs "
                        "are no longer kept",
                    )
                )
            continue
        if not status.get("cpuset"):
            continue  # bound only in part; the scheduler writes node and cpuset together
        step = migration_step(task)
        if suspends(step):
            assert step is not None
            new = _plan_migrating(task, step, container, node, now, policy, fresh, start, remove)
        else:
            new = _plan_task(task, container, node, now, policy, start, update)
        if new is not None and new != status:
            statuses[name] = new

    return NodePlan(tuple(start), tuple(remove), tuple(update), statuses)


def _plan_task(
    task: Mapping[str, Any],
    container: Observed | None,
    node: str,
    now: str,
    policy: Policy,
    start: list[ContainerSpec],
    update: list[tuple[str, str, int]],
) -> Object | None:
    """The new status of one live Task bound here; appends its start/update actions."""
    status = _status(task)
    name = _name(task)
    if container is None or container.state == "created" or _missing(container, error=False):
        lost = status.get("containerID")
        if container is None and lost:
            return _failed(
                status,
                "ContainerLost",
                f"container {lost} of task {name} is gone from node {node}; it is not "
                "started again here",
            )
        cannot = _queue_start(task, policy, start)
        return _failed(status, *cannot) if cannot is not None else None
    if container.state in STARTED:
        want_cpuset = str(status["cpuset"])
        want_memory = _memory(task)
        if _canonical(container.cpuset) != _canonical(want_cpuset) or (
            want_memory is not None and container.memory != want_memory
        ):
            update.append(
                (
                    container.container_id,
                    _canonical(want_cpuset),
                    want_memory if want_memory is not None else container.memory,
                )
            )
        return _running(status, container, now)
    if container.state in ENDED:
        return _ended(status, container, task, now)
    if _missing(container, error=True):
        reason, message = _error_reason(str(container.error))
        return _failed(status, reason, f"task {name}: {message}")
    return None  # a state this planner does not know (e.g. "removing"): look again later


def _plan_migrating(
    task: Mapping[str, Any],
    step: Step,
    container: Observed | None,
    node: str,
    now: str,
    policy: Policy,
    fresh: frozenset[str],
    start: list[ContainerSpec],
    remove: list[tuple[str, str]],
) -> Object | None:
    """The new status of a live Task bound here whose migration step suspends it."""
    status = _status(task)
    name = _name(task)
    acting = step.node == node and not step.acknowledged
    started = container is not None and container.state in STARTED
    if acting and step.step in (START, RESTORE) and container is not None:
        if started:
            return with_step(_running(status, container, now), done=True)
        if container.state in ENDED and container.container_id in fresh:
            return with_step(_ended(status, container, task, now), done=True)
    if not acting or step.step != START:
        return _running(status, container, now) if started and container is not None else None
    if container is not None and _missing(container, error=True):
        reason, message = _error_reason(str(container.error))
        return step_failed(status, reason, f"task {name}: {message}")
    if container is not None and container.container_id not in fresh:
        remove.append(
            (
                container.container_id,
                f"task {name} starts afresh on node {node} for migration {step.migration}; "
                f"its earlier container {container.container_id} ({container.state}) goes first",
            )
        )
    cannot = _queue_start(task, policy, start)
    return step_failed(status, *cannot) if cannot is not None else None


def _queue_start(
    task: Mapping[str, Any], policy: Policy, start: list[ContainerSpec]
) -> tuple[str, str] | None:
    """Appends the task's container to ``start``; or ``(reason, message)`` why it must not run
    (a setting the policy refuses, or a spec no container can be built from)."""
    name = _name(task)
    refused = refused_setting(task, policy)
    if refused is not None:
        return "RefusedSetting", f"task {name}: {refused}"
    try:
        start.append(container_spec(task))
    except (ValueError, KeyError, TypeError) as error:
        return "InvalidSpec", f"task {name}: cannot build its container: {error}"
    return None


def _running(status: Mapping[str, Any], container: Observed, now: str) -> Object:
    new = _runtime_cleared(status)
    new["phase"] = RUNNING
    new["containerID"] = container.container_id
    new["startTime"] = status.get("startTime") or _time(container.started_at) or now
    return new


def _ended(
    status: Mapping[str, Any], container: Observed, task: Mapping[str, Any], now: str
) -> Object:
    new = _runtime_cleared(status)
    code = container.exit_code
    cid = container.container_id
    if container.oom_killed:
        limit = container.memory or _memory(task) or 0
        reason = "OOMKilled"
        message = f"container {cid} was killed for exceeding its memory limit" + (
            f" of {format_memory(limit)}" if limit > 0 else ""
        )
        message += f" (exit code {code})" if code is not None else ""
    elif code is None:
        reason, message = "Error", f"container {cid} is {container.state} without an exit code"
    elif code == 0 and container.state == "exited":
        reason, message = "Completed", f"container {cid} exited with code 0"
    else:
        reason = "Error"
        message = f"container {cid} exited with code {code}"
        if container.state == "dead":
            message = f"container {cid} is dead (exit code {code})"
    new["phase"] = SUCCEEDED if reason == "Completed" else FAILED
    new["containerID"] = cid
    start = status.get("startTime") or _time(container.started_at)
    if start:
        new["startTime"] = start
    new["finishTime"] = _time(container.finished_at) or now
    if code is not None:
        new["exitCode"] = code
    new["reason"] = reason
    new["message"] = message
    return new


def _failed(status: Mapping[str, Any], reason: str, message: str) -> Object:
    new = _runtime_cleared(status)
    for key in ("containerID", "startTime"):
        if status.get(key):
            new[key] = status[key]
    new["phase"] = FAILED
    new["reason"] = reason
    new["message"] = message
    return new


def _runtime_cleared(status: Mapping[str, Any]) -> Object:
    return {k: v for k, v in status.items() if k not in RUNTIME_FIELDS}


def _not_ours(
    task: Mapping[str, Any] | None, uid: str, container: Observed, node: str
) -> str | None:
    """Why the containers of ``uid`` must go from ``node``; None when their Task is here."""
    if task is None:
        label = f"task {container.task}" if container.task else "its task"
        return f"{label} (uid {uid}) no longer exists"
    name = _name(task)
    if _meta(task).get("deletionTimestamp"):
        return f"task {name} is being deleted"
    bound = _status(task).get("node")
    if bound != node:
        where = f"bound to node {bound}" if bound else "not bound to a node"
        return f"task {name} is {where}, not {node}"
    return None


def _pick(containers: Sequence[Observed], recorded: object) -> Observed:
    """The one container of a task to keep: a started one, the recorded one, else the newest."""
    if len(containers) == 1:
        return containers[0]

    def rank(c: Observed) -> tuple[bool, bool, str, str]:
        when = max(_time(c.started_at) or "", _time(c.finished_at) or "")
        return (c.state in STARTED, c.container_id == recorded, when, c.container_id)

    return max(containers, key=rank)


def _expired(status: Mapping[str, Any], now: str, finished_age: float | None) -> bool:
    """Whether a finished Task's ``finishTime`` is more than ``finished_age`` seconds old."""
    finished, current = parse_time(status.get("finishTime")), parse_time(now)
    if finished_age is None or finished is None or current is None:
        return False
    return (current - finished).total_seconds() > finished_age


def _missing(container: Observed, *, error: bool) -> bool:
    return container.state == "missing" and bool(container.error) == error


def _error_reason(error: str) -> tuple[str, str]:
    """A driver error ``Reason: message`` split in two; ``EngineError`` when it has no reason."""
    match = _ERROR_REASON.fullmatch(error.strip())
    if match:
        return match[1], match[2]
    return "EngineError", error.strip() or "the engine reported an error"


def _canonical(cpuset: str) -> str:
    try:
        return format_cpuset(parse_cpuset(cpuset))
    except QuantityError:
        return cpuset


def _memory(task: Mapping[str, Any]) -> int | None:
    value = _status(task).get("memory", (task.get("spec") or {}).get("memory"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: str | None) -> str | None:
    """An engine timestamp at second precision; None for none (or Docker's year 1 "never")."""
    moment = parse_time(value)
    if moment is None or moment.year <= 1:
        return None
    return format_rfc3339(moment)


def _meta(task: Mapping[str, Any]) -> Mapping[str, Any]:
    return task.get("metadata") or {}


def _status(task: Mapping[str, Any]) -> Mapping[str, Any]:
    return task.get("status") or {}


def _name(task: Mapping[str, Any]) -> str:
    return str(_meta(task).get("name", "?"))


__all__ = [
    "ENDED",
    "RUNTIME_FIELDS",
    "STARTED",
    "NodePlan",
    "plan_node",
]
