"""The job controller's Task decisions, as pure functions of a Job and its Tasks.

Nothing here reads or writes the store or the clock: the controller (:mod:`.job`) lists a
Job's Tasks and asks :func:`plan_tasks` what to create, update and delete; :mod:`.job_status`
builds the Job's status on the same :func:`live_tasks` and :func:`restart_decision`. The same
inputs always give the same plan, so a controller killed anywhere and rerun converges.

The model:

* Each entry of ``spec.tasks`` is carried out by a series of Task objects, its *attempts*
  (annotation ``swarmapply.io/attempt``). The *live* attempt is the newest one not being
  deleted; older ones are deleted once a newer one exists. Names come from :func:`task_name`.
* A replacement (restart, or a spec change of a task already bound to a node) is made
  before it breaks: attempt ``n+1`` is created first and attempt ``n`` deleted afterwards,
  so a crash in between leaves two attempts and the rerun deletes the older one.
* The number of failures behind the live attempt travels on it (annotation
  ``swarmapply.io/failures``), so ``status.restarts`` and the ``backoffLimit`` check are
  computed from the Tasks alone, never incremented.

This module owns the Task labels and annotations (:data:`JOB_LABEL`, :data:`TASK_LABEL`,
:data:`ATTEMPT_ANNOTATION`, :data:`FAILURES_ANNOTATION`) and the phase names.

What it does not guarantee: restart history survives only on the Tasks. If a user deletes every
attempt of a task, the controller starts it again from attempt 0 with no failures counted.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Object = dict[str, Any]

API_VERSION = "swarmapply.io/v1"
#: The label naming a Task's Job.
JOB_LABEL = "swarmapply.io/job"
#: The label naming the entry of the Job's ``spec.tasks`` a Task carries out.
TASK_LABEL = "swarmapply.io/task"
#: The annotation numbering the attempts of one task (0, 1, ...).
ATTEMPT_ANNOTATION = "swarmapply.io/attempt"
#: The annotation counting the failed attempts of one task before this one.
FAILURES_ANNOTATION = "swarmapply.io/failures"

MAX_NAME = 63
HASH_CHARS = 10
DEFAULT_BACKOFF_LIMIT = 6

PENDING = "Pending"
SCHEDULED = "Scheduled"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
#: The phases a Task or Job does not leave.
FINISHED = frozenset({SUCCEEDED, FAILED})
_PHASES = (PENDING, SCHEDULED, RUNNING, SUCCEEDED, FAILED)

#: Task spec fields a bound task can take in place; any other change replaces the task.
#: ``cores``, ``cpuset`` and ``memory`` are a live resize: the scheduler re-fits the task on
#: its node and the agent changes the running container's limits.
IN_PLACE_FIELDS = frozenset({"priority", "restartPolicy", "cores", "cpuset", "memory"})
#: The fields of a Job's task entry copied onto the Task's spec.
_COPIED_FIELDS = (
    "image",
    "command",
    "cores",
    "memory",
    "node",
    "cpuset",
    "ports",
    "volumes",
    "environment",
    "securityContext",
)


# ------------------------------------------------------------------------------- naming


def task_name(job: str, task: str, attempt: int = 0) -> str:
    """The name of the Task object for attempt ``attempt`` of task ``task`` of Job ``job``.

    ``<job>-<task>`` for attempt 0 when that fits in 63 characters; otherwise a prefix of
    ``<job>-<task>`` (trailing ``-`` removed), ``-`` and the first 10 hex digits of the
    SHA-256 of ``"<job>/<task>/<attempt>"``. The result is deterministic and a DNS-1123 label
    of at most 63 characters whenever ``job`` and ``task`` are DNS-1123 labels.

    Args:
        job: The Job's name.
        task: The task's name within the Job (``spec.tasks[].name``).
        attempt: The attempt number, 0 for the first.

    Raises:
        ValueError: ``attempt`` is negative.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    base = f"{job}-{task}"
    if attempt == 0 and len(base) <= MAX_NAME:
        return base
    digest = hashlib.sha256(f"{job}/{task}/{attempt}".encode()).hexdigest()[:HASH_CHARS]
    prefix = base[: MAX_NAME - HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{digest}" if prefix else digest


# ------------------------------------------------------------------------ reading objects


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    """An object's ``metadata.name``."""
    return str(_meta(obj).get("name", ""))


def uid_of(obj: Mapping[str, Any]) -> str | None:
    """An object's ``metadata.uid``, if any."""
    uid = _meta(obj).get("uid")
    return None if uid is None else str(uid)


def _int_annotation(task: Mapping[str, Any], key: str) -> int:
    value = (_meta(task).get("annotations") or {}).get(key)
    try:
        number = int(str(value))
    except ValueError:
        return 0
    return max(number, 0)


def attempt_of(task: Mapping[str, Any]) -> int:
    """The task's attempt number (annotation ``swarmapply.io/attempt``; 0 when absent/bad)."""
    return _int_annotation(task, ATTEMPT_ANNOTATION)


def failures_of(task: Mapping[str, Any]) -> int:
    """Failed attempts before this one (annotation ``swarmapply.io/failures``; default 0)."""
    return _int_annotation(task, FAILURES_ANNOTATION)


def task_key(task: Mapping[str, Any]) -> str | None:
    """The name of the Job task entry a Task carries out (label ``swarmapply.io/task``)."""
    value = (_meta(task).get("labels") or {}).get(TASK_LABEL)
    return None if value is None else str(value)


def task_phase(task: Mapping[str, Any] | None) -> str:
    """The task's phase; Pending when it has no status or no (known) phase, or is missing."""
    if task is None:
        return PENDING
    phase = (task.get("status") or {}).get("phase")
    return phase if phase in _PHASES else PENDING


def is_bound(task: Mapping[str, Any] | None) -> bool:
    """Whether the scheduler has placed the task (it has a node, or a phase past Pending)."""
    if task is None:
        return False
    return bool((task.get("status") or {}).get("node")) or task_phase(task) != PENDING


def is_terminating(obj: Mapping[str, Any]) -> bool:
    """Whether the object is being deleted (``metadata.deletionTimestamp`` set)."""
    return bool(_meta(obj).get("deletionTimestamp"))


def job_owner_uids(task: Mapping[str, Any]) -> list[str]:
    """The uids of the Jobs named in the task's ``ownerReferences``."""
    refs = _meta(task).get("ownerReferences") or []
    return [
        str(r["uid"])
        for r in refs
        if isinstance(r, Mapping) and r.get("kind") == "Job" and "uid" in r
    ]


def is_owned_by(task: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether ``task`` names ``job`` (by uid) as an owner."""
    uid = uid_of(job)
    return uid is not None and uid in job_owner_uids(task)


# ----------------------------------------------------------------------------- the spec


def job_tasks(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The Job's ``spec.tasks`` entries."""
    return list((job.get("spec") or {}).get("tasks") or [])


def restart_policy(job: Mapping[str, Any]) -> str:
    """The Job's ``spec.restartPolicy`` (Never when omitted)."""
    return str((job.get("spec") or {}).get("restartPolicy") or "Never")


def backoff_limit(job: Mapping[str, Any]) -> int:
    """The Job's ``spec.backoffLimit`` (6 when omitted)."""
    value = (job.get("spec") or {}).get("backoffLimit")
    return DEFAULT_BACKOFF_LIMIT if value is None else int(value)


def task_spec(job: Mapping[str, Any], entry: Mapping[str, Any]) -> Object:
    """The Task ``spec`` for one entry of the Job's ``spec.tasks`` (already admitted).

    Args:
        job: The Job.
        entry: One element of ``job.spec.tasks``.
    """
    spec = job.get("spec") or {}
    result: Object = {"job": name_of(job)}
    for key in _COPIED_FIELDS:
        if key in entry:
            result[key] = copy.deepcopy(entry[key])
    result.setdefault("cores", 1)
    result["network"] = str((spec.get("network") or {}).get("name") or name_of(job))
    result["priority"] = int(spec.get("priority") or 0)
    result["restartPolicy"] = restart_policy(job)
    duration = (spec.get("simulation") or {}).get("duration")
    if duration is not None:
        result["simulation"] = {"duration": duration}
    return result


def build_task(
    job: Mapping[str, Any], entry: Mapping[str, Any], attempt: int = 0, failures: int = 0
) -> Object:
    """The Task object for attempt ``attempt`` of one entry of ``job.spec.tasks``.

    Args:
        job: The Job (with ``metadata.uid``, as read from the store).
        entry: One element of ``job.spec.tasks``.
        attempt: The attempt number.
        failures: How many attempts of this task failed before this one.
    """
    job_name = name_of(job)
    owner: Object = {
        "apiVersion": str(job.get("apiVersion") or API_VERSION),
        "kind": "Job",
        "name": job_name,
        "uid": str(uid_of(job)),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Task",
        "metadata": {
            "name": task_name(job_name, str(entry["name"]), attempt),
            "labels": {JOB_LABEL: job_name, TASK_LABEL: str(entry["name"])},
            "annotations": {
                ATTEMPT_ANNOTATION: str(attempt),
                FAILURES_ANNOTATION: str(failures),
            },
            "ownerReferences": [owner],
        },
        "spec": task_spec(job, entry),
    }


def spec_change(task: Mapping[str, Any], desired: Mapping[str, Any]) -> str:
    """How a live task takes a new spec: ``"none"``, ``"update"`` (in place) or ``"replace"``.

    A finished task (Succeeded/Failed) is never changed: it records what ran. A task the
    scheduler has not bound yet is updated in place. A bound task is updated in place only
    when nothing but :data:`IN_PLACE_FIELDS` differ (its container keeps running: a change of
    cores or memory is a live resize), or ``node`` newly names the node it is bound to;
    otherwise it is replaced by a new attempt.
    """
    current = task.get("spec") or {}
    if current == desired or task_phase(task) in FINISHED:
        return "none"
    if not is_bound(task):
        return "update"
    changed = {k for k in set(current) | set(desired) if current.get(k) != desired.get(k)}
    if desired.get("node") == (task.get("status") or {}).get("node"):
        changed.discard("node")  # pinned to where it runs already: nothing moves
    return "update" if changed <= IN_PLACE_FIELDS else "replace"


# ------------------------------------------------------------------------- live attempts


def owned_by_entry(
    job: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]]
) -> dict[str, list[Object]]:
    """The tasks owned by ``job``, grouped by task entry name, each group newest first."""
    groups: dict[str, list[Object]] = {}
    for task in tasks:
        key = task_key(task)
        if key is None or not is_owned_by(task, job):
            continue
        groups.setdefault(key, []).append(dict(task))
    for group in groups.values():
        group.sort(key=lambda t: (attempt_of(t), name_of(t)), reverse=True)
    return groups


def live_tasks(job: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]]) -> dict[str, Object]:
    """The live attempt of each entry of ``job.spec.tasks``: its newest task not being deleted.

    Tasks not owned by ``job`` (by uid), or of entries no longer in the spec, are ignored;
    entries without a live task are absent from the result.
    """
    names = {str(e["name"]) for e in job_tasks(job)}
    live: dict[str, Object] = {}
    for key, group in owned_by_entry(job, tasks).items():
        if key not in names:
            continue
        for task in group:
            if not is_terminating(task):
                live[key] = task
                break
    return live


# ------------------------------------------------------------------------------ restarts


@dataclass(frozen=True)
class RestartDecision:
    """What the restart policy says about a Job's live tasks.

    Attributes:
        replace: Entry names whose live task is replaced by a new attempt, in spec order.
        failures: Failed attempts so far, including live tasks that failed just now.
        restarts: Failed tasks replaced, counting the replacements in ``replace``.
        give_up: ``(reason, message)`` when the Job fails (the policy does not restart a
            failed task), else None.
    """

    replace: tuple[str, ...] = ()
    failures: int = 0
    restarts: int = 0
    give_up: tuple[str, str] | None = None


def restart_decision(
    job: Mapping[str, Any], live: Mapping[str, Mapping[str, Any]]
) -> RestartDecision:
    """Apply ``spec.restartPolicy`` and ``spec.backoffLimit`` to the live tasks.

    * ``Never``: a Failed task fails the Job (reason ``TaskFailed``).
    * ``OnFailure``/``Always``: every Failed task is replaced, as long as the failures so
      far (those recorded on the live tasks plus the tasks failed now) do not exceed
      ``backoffLimit``; beyond it nothing is replaced and the Job fails (reason
      ``BackoffLimitExceeded``). So ``backoffLimit: 0`` fails on the first failure.
    * ``Always`` also replaces Succeeded tasks; that is not a failure and does not count
      against ``backoffLimit`` (nor in ``restarts``).

    A finished Job (``status.phase`` Succeeded or Failed) is final: nothing is replaced.

    Args:
        job: The Job.
        live: Entry name -> live task (see :func:`live_tasks`).
    """
    order = [str(e["name"]) for e in job_tasks(job)]
    policy = restart_policy(job)
    limit = backoff_limit(job)
    recorded = sum(failures_of(t) for t in live.values())
    failed = [n for n in order if n in live and task_phase(live[n]) == FAILED]
    succeeded = [n for n in order if n in live and task_phase(live[n]) == SUCCEEDED]
    failures = recorded + len(failed)
    if (job.get("status") or {}).get("phase") in FINISHED:
        return RestartDecision((), failures, recorded, None)
    if failed and (policy == "Never" or failures > limit):
        reason = _failure_reason(live, failed, policy, failures, limit)
        return RestartDecision((), failures, recorded, reason)
    if policy == "Never":
        return RestartDecision((), failures, recorded, None)
    again = set(failed) | (set(succeeded) if policy == "Always" else set())
    replace = tuple(n for n in order if n in again)
    return RestartDecision(replace, failures, recorded + len(failed), None)


def _how_it_ended(task: Mapping[str, Any]) -> str:
    """How a finished task ended, for messages: ``failed with exit code 137 (OOMKilled)``,
    ``failed (ImagePullFailed)`` and so on."""
    if task_phase(task) != FAILED:
        return "succeeded (restartPolicy Always)"
    status = task.get("status") or {}
    code, reason = status.get("exitCode"), status.get("reason")
    ended = "failed" if code is None else f"failed with exit code {code}"
    return f"{ended} ({reason})" if reason and reason != "Error" else ended


def _failure_reason(
    live: Mapping[str, Mapping[str, Any]],
    failed: Sequence[str],
    policy: str,
    failures: int,
    limit: int,
) -> tuple[str, str]:
    first = live[failed[0]]
    detail = f"task {failed[0]} (Task {name_of(first)}) {_how_it_ended(first)}"
    if len(failed) > 1:
        detail += f" ({len(failed)} tasks failed: {', '.join(failed)})"
    if policy == "Never":
        return "TaskFailed", f"{detail}; restartPolicy is Never"
    return (
        "BackoffLimitExceeded",
        f"{detail}; {failures} failures exceed spec.backoffLimit {limit}",
    )


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Replacement:
    """One live task replaced by a new attempt (for the Event message)."""

    entry: str
    old: str
    new: str
    why: str


@dataclass
class TaskPlan:
    """What to write so that a Job's Tasks match its spec (carry out in this order).

    Attributes:
        leftovers: Tasks of an earlier Job with the same name (another uid): delete first.
        create: New Task objects: missing tasks (attempt 0 or next) and replacements.
        created_missing: Names of the created tasks that were missing (not replacements).
        replacements: The replacements among ``create``.
        update: Tasks with a new spec, to update in place (compare-and-swap).
        delete: Older attempts, replaced tasks, and tasks of entries no longer in the spec;
            deleted only after ``create`` succeeded.
        after: The Job's tasks as they will be once the plan is carried out.
    """

    leftovers: list[Object] = field(default_factory=list)
    create: list[Object] = field(default_factory=list)
    created_missing: list[str] = field(default_factory=list)
    replacements: list[Replacement] = field(default_factory=list)
    update: list[Object] = field(default_factory=list)
    delete: list[Object] = field(default_factory=list)
    after: list[Object] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.leftovers or self.create or self.update or self.delete)


def plan_tasks(job: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> TaskPlan:
    """Decide the Task writes that bring ``tasks`` in line with ``job``.

    Args:
        job: The Job as read from the store (with uid), not being deleted.
        tasks: Every Task whose ``spec.job`` is the Job's name.

    Returns:
        The plan. A finished Job gets no new, replaced or updated tasks; its leftovers,
        older attempts and tasks of removed entries are still deleted. A Job that failed
        leaves its remaining live tasks alone.
    """
    plan = TaskPlan()
    finished = (job.get("status") or {}).get("phase") in FINISHED
    plan.leftovers = [
        dict(t)
        for t in tasks
        if job_owner_uids(t) and not is_owned_by(t, job) and not is_terminating(t)
    ]
    groups = owned_by_entry(job, tasks)
    live = live_tasks(job, tasks)
    decision = restart_decision(job, live)
    keep: set[str] = set()
    for entry in job_tasks(job):
        entry_name = str(entry["name"])
        group = groups.get(entry_name, [])
        next_attempt = max((attempt_of(t) for t in group), default=-1) + 1
        current = live.get(entry_name)
        if finished:  # a finished Job keeps the tasks it has
            if current is not None:
                keep.add(name_of(current))
            continue
        if current is None:
            failures = max((failures_of(t) for t in group), default=0)
            new = build_task(job, entry, next_attempt, failures)
            plan.create.append(new)
            plan.created_missing.append(name_of(new))
            keep.add(name_of(new))
            continue
        desired = task_spec(job, entry)
        restart = entry_name in decision.replace
        change = "replace" if restart else spec_change(current, desired)
        if change == "none":
            keep.add(name_of(current))
        elif change == "update":
            updated = copy.deepcopy(dict(current))
            updated["spec"] = desired
            plan.update.append(updated)
            keep.add(name_of(current))
        else:
            failed = restart and task_phase(current) == FAILED
            new = build_task(job, entry, next_attempt, failures_of(current) + (1 if failed else 0))
            plan.create.append(new)
            why = _how_it_ended(current) if restart else "spec changed"
            plan.replacements.append(Replacement(entry_name, name_of(current), name_of(new), why))
            keep.add(name_of(new))
    for _entry, group in sorted(groups.items()):
        for task in group:
            if is_terminating(task) or name_of(task) in keep:
                continue
            plan.delete.append(task)
    updated_names = {name_of(t): t for t in plan.update}
    deleted = {name_of(t) for t in plan.delete} | {name_of(t) for t in plan.leftovers}
    plan.after = [
        updated_names.get(name_of(t), dict(t)) for t in tasks if name_of(t) not in deleted
    ] + plan.create
    return plan


__all__ = [
    "ATTEMPT_ANNOTATION",
    "FAILED",
    "FAILURES_ANNOTATION",
    "FINISHED",
    "JOB_LABEL",
    "PENDING",
    "RUNNING",
    "SCHEDULED",
    "SUCCEEDED",
    "TASK_LABEL",
    "Replacement",
    "RestartDecision",
    "TaskPlan",
    "attempt_of",
    "backoff_limit",
    "build_task",
    "failures_of",
    "is_bound",
    "is_owned_by",
    "is_terminating",
    "job_owner_uids",
    "job_tasks",
    "live_tasks",
    "name_of",
    "plan_tasks",
    "restart_decision",
    "spec_change",
    "task_key",
    "task_name",
    "task_phase",
    "task_spec",
    "uid_of",
]
