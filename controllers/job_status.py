"""The job controller's status decisions, as pure functions of a Job and its Tasks.

Nothing here reads or writes the store or the clock (the current time is an argument): the
controller (:mod:`.job`) asks :func:`aggregate` for the Job's status, :func:`phase_events` for
the Events a status change deserves and :func:`ttl_remaining` for when a finished Job is due
for deletion, and carries the result out. Which Tasks are live and what the restart policy
decides come from :mod:`.job_tasks`, so the status and the Task plan always agree.

What it guarantees: the same inputs give the same status, and a status computed again from
unchanged inputs equals the previous one (times and condition transitions are kept), so the
controller writes only on change. A finished Job's phase, reason, times and conditions are
final. What it does not: a ``completionTime`` that cannot be read disables the TTL.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from swarmapply.api.store.lifecycle import format_rfc3339, parse_time
from swarmapply.controllers.conditions import find_condition, set_condition
from swarmapply.controllers.job_tasks import (
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    Object,
    is_bound,
    job_tasks,
    live_tasks,
    restart_decision,
    task_phase,
)


def unschedulable_message(task: Mapping[str, Any] | None) -> str | None:
    """The scheduler's explanation when it could not place the task, else None.

    Read from a condition ``{type: Scheduled, status: "False", reason: Unschedulable}`` (or,
    failing that, ``status.reason == Unschedulable``).
    """
    if task is None or is_bound(task):
        return None
    status = task.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            isinstance(condition, Mapping)
            and condition.get("type") == "Scheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return str(condition.get("message") or "Unschedulable")
    if status.get("reason") == "Unschedulable":
        return str(status.get("message") or "Unschedulable")
    return None


def aggregate(job: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], now: datetime) -> Object:
    """The Job's status for its tasks (pure).

    Phase: Failed when a task failed and the restart policy gives up; Succeeded when every
    task succeeded; Running when every task is Running or Succeeded and one is Running;
    Scheduled when every task is bound; Pending otherwise (a missing task, or one a restart
    replaces, is Pending). A finished Job keeps its phase, reason, message, times and
    conditions; only the counts follow its tasks.

    ``startTime`` is set the first time the Job is Running (or, finishing without that, from
    its tasks' earliest start) and kept; ``completionTime`` is set once, when it finishes.
    While Pending, a task the scheduler could not place gives reason ``Unschedulable`` and
    its message. Conditions ``Scheduled`` (always), ``Complete`` and ``Failed`` (when true)
    keep their ``lastTransitionTime`` until their status flips.

    Args:
        job: The Job (its ``status`` is the previous status).
        tasks: The Job's tasks (any; the live attempt of each entry is picked here).
        now: The current time.
    """
    old: Mapping[str, Any] = job.get("status") or {}
    stamp = format_rfc3339(now)
    entries = job_tasks(job)
    order = [str(e["name"]) for e in entries]
    live = live_tasks(job, tasks)
    decision = restart_decision(job, live)
    replaced = set(decision.replace)
    phases = [PENDING if n in replaced else task_phase(live.get(n)) for n in order]
    bound = [n not in replaced and is_bound(live.get(n)) for n in order]
    total = len(order)
    counts = {
        "tasksTotal": total,
        "tasksReady": phases.count(RUNNING),
        "tasksSucceeded": phases.count(SUCCEEDED),
        "tasksFailed": phases.count(FAILED),
        "restarts": decision.restarts,
    }
    generation = (job.get("metadata") or {}).get("generation")
    status: Object = {}
    if old.get("phase") in FINISHED:
        status = {k: copy.deepcopy(v) for k, v in old.items()}
        status.update(counts)
        if generation is not None:
            status["observedGeneration"] = int(generation)
        return status

    reason: str | None = None
    message: str | None = None
    waiting = [n for n, b in zip(order, bound, strict=True) if not b]
    if decision.give_up is not None:
        phase = FAILED
        reason, message = decision.give_up
    elif total and phases.count(SUCCEEDED) == total:
        phase = SUCCEEDED
        reason, message = "Completed", f"all {total} tasks succeeded"
    elif total and all(p in (RUNNING, SUCCEEDED) for p in phases) and RUNNING in phases:
        phase = RUNNING
    elif total and not waiting:
        phase = SCHEDULED
    else:
        phase = PENDING
        for n in waiting:
            unschedulable = None if n in replaced else unschedulable_message(live.get(n))
            if unschedulable is not None:
                reason, message = "Unschedulable", unschedulable
                break

    status = {"phase": phase, **counts}
    start = old.get("startTime")
    if start is None and phase == RUNNING:
        start = stamp
    if start is None and phase in FINISHED:
        starts = [
            t
            for t in (parse_time((x.get("status") or {}).get("startTime")) for x in live.values())
            if t is not None
        ]
        start = format_rfc3339(min(starts)) if starts else None
    if start is not None:
        status["startTime"] = start
    if phase in FINISHED:
        status["completionTime"] = old.get("completionTime") or stamp
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if generation is not None:
        status["observedGeneration"] = int(generation)

    if not waiting:
        scheduled = ("True", "Scheduled", f"all {total} tasks are placed")
    elif reason == "Unschedulable":
        scheduled = ("False", "Unschedulable", str(message))
    else:
        scheduled = (
            "False",
            "Pending",
            f"{len(waiting)} of {total} tasks wait to be placed: {', '.join(waiting)}",
        )
    wanted = [("Scheduled", *scheduled)]
    if phase == SUCCEEDED:
        wanted.append(("Complete", "True", str(reason), str(message)))
    if phase == FAILED:
        wanted.append(("Failed", "True", str(reason), str(message)))
    conditions: list[Object] = []
    for type_, state, why, text in wanted:
        previous = find_condition(old, type_)
        before = [] if previous is None else [previous]
        conditions += set_condition(before, type_, state, why, text, now=stamp)
    status["conditions"] = conditions
    return status


def phase_events(
    old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """The Events a status change deserves, as ``(type, reason, message)`` (pure).

    One when the phase changes to Running, Succeeded or Failed; none otherwise, so writing
    the same status again (or not writing it) records nothing.
    """
    before = (old or {}).get("phase")
    after = new.get("phase")
    if after == before:
        return []
    total = new.get("tasksTotal", 0)
    if after == RUNNING:
        return [("Normal", "Running", f"all {total} tasks are running or done")]
    if after == SUCCEEDED:
        return [("Normal", "Completed", str(new.get("message") or f"all {total} tasks succeeded"))]
    if after == FAILED:
        return [("Warning", str(new.get("reason") or "Failed"), str(new.get("message") or ""))]
    return []


def ttl_remaining(job: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds until a finished Job is due for deletion (<= 0: due now), else None.

    None when the Job has no ``spec.ttlSecondsAfterFinished``, is not finished, or has no
    readable ``status.completionTime``.
    """
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    status = job.get("status") or {}
    if ttl is None or status.get("phase") not in FINISHED:
        return None
    completed = parse_time(status.get("completionTime"))
    if completed is None:
        return None
    try:
        due = completed + timedelta(seconds=int(ttl))
    except OverflowError:
        return None
    return (due - now).total_seconds()


__all__ = [
    "aggregate",
    "phase_events",
    "ttl_remaining",
    "unschedulable_message",
]
