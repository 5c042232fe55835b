"""One scheduling pass, decided purely: store objects in, the writes to make out.

:func:`plan_pass` takes the Nodes, Tasks and Jobs as listed from the store and returns a
:class:`PassPlan`: which pending tasks to bind where, which jobs wait and why, which jobs to
evict for a higher-priority one (preemption, when enabled), and the allocation view every Node
should show afterwards. :mod:`swarmapply.controllers.scheduler` carries the plan out;
``swarmapply plan`` uses :func:`cluster_snapshot` to ask the same placement core what-if.

Rules:

* A task is *live* until its phase is Succeeded or Failed; a live task bound to a node
  (``status.node``) holds its ``status.cpuset`` and ``status.memory`` there.
* A job is queued when it exists, is not being deleted, has a live task for every entry of
  ``spec.tasks`` (the job controller may still be creating them; a job is never placed in
  part), and some of them are unbound. The unbound ones are placed together (all or none);
  bound ones keep their cores. A job whose Task objects do not all exist yet is left alone.
* A job's place in the queue is the creation time of its oldest unbound task (FIFO); its
  strategy is ``spec.placement.strategy``, else the cluster's.
* Preemption (opt-in) runs for at most one waiting job per pass, the first in processing
  order for which :func:`~.preemption.choose_victims` finds victims among jobs already bound
  before this pass; the victims' live tasks are evicted (deleted, so their job controller
  creates them again and they queue anew) and the job is placed on the freed capacity.

Not guaranteed here: that bound tasks never overlap. That is the invariant the scheduler keeps
by being the only writer of bindings; this module reports overlaps it finds
(:attr:`PassPlan.conflicts`) but does not repair them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api.quantity import format_cpuset, parse_cpuset
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.job_tasks import TASK_LABEL
from swarmapply.controllers.placement import schedule
from swarmapply.controllers.placement_model import (
    Decision,
    JobRequest,
    NodeState,
    Placement,
    with_released,
    with_taken,
)
from swarmapply.controllers.preemption import RunningJob, choose_victims
from swarmapply.controllers.refit import (
    Reservation,
    Resize,
    ResizeWaiting,
    Unreservable,
    plan_reservations,
    plan_resizes,
)
from swarmapply.controllers.requests import task_request
from swarmapply.controllers.settings import SchedulerSettings
from swarmapply.controllers.usage import Hold, Usage, allocation_view, is_live, task_hold, usage

Object = dict[str, Any]


@dataclass(frozen=True)
class Binding:
    """Bind ``task`` (of ``job``) to ``node``, cores ``cpuset`` and ``memory`` bytes."""

    job: str
    task: str
    node: str
    cpuset: str
    memory: int


@dataclass(frozen=True)
class Waiting:
    """A job that stays queued: its unbound tasks and the reason."""

    job: str
    tasks: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class Eviction:
    """Evict every live task of ``job`` so that ``by`` fits."""

    job: str
    tasks: tuple[str, ...]
    by: str
    message: str


@dataclass(frozen=True)
class PassPlan:
    """What one pass decided; see the module docstring."""

    bindings: tuple[Binding, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    evictions: tuple[Eviction, ...] = ()
    allocations: dict[str, Object] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    resizes: tuple[Resize, ...] = ()
    resizes_waiting: tuple[ResizeWaiting, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    unreservable: tuple[Unreservable, ...] = ()


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def cluster_snapshot(
    nodes: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]
) -> list[NodeState]:
    """The nodes' free cores and memory given the live bound tasks (for what-if questions)."""
    return usage(tasks).states(nodes)


def _submitted(tasks: Sequence[Mapping[str, Any]]) -> float:
    times = [parse_time(t["metadata"].get("creationTimestamp")) for t in tasks]
    known = [t.timestamp() for t in times if t is not None]
    return min(known) if known else 0.0


def _queue(
    tasks: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]
) -> tuple[list[JobRequest], dict[str, list[str]]]:
    """The queued jobs (unbound tasks only) and each one's unbound task names."""
    by_job: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    present_by_job: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        job_name = str((task.get("spec") or {}).get("job", ""))
        # A finished task still counts as present: its job is complete, not half-created.
        present_by_job[job_name].add(str((task["metadata"].get("labels") or {}).get(TASK_LABEL)))
        if is_live(task):
            by_job[job_name].append(task)
    queue: list[JobRequest] = []
    pending: dict[str, list[str]] = {}
    for job in jobs:
        name = _name(job)
        if job["metadata"].get("deletionTimestamp"):
            continue
        live = by_job.get(name, [])
        wanted = {str(t["name"]) for t in (job.get("spec") or {}).get("tasks") or []}
        unbound = [t for t in live if not (t.get("status") or {}).get("node")]
        if not unbound or not wanted <= present_by_job[name]:
            continue
        unbound.sort(key=_name)
        spec = job.get("spec") or {}
        queue.append(
            JobRequest(
                name=name,
                tasks=tuple(task_request(_name(t), t.get("spec") or {}) for t in unbound),
                priority=int(spec.get("priority", 0)),
                submitted=_submitted(unbound),
                strategy=(spec.get("placement") or {}).get("strategy"),
            )
        )
        pending[name] = [_name(t) for t in unbound]
    return queue, pending


def _running(
    tasks: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]
) -> list[RunningJob]:
    """Jobs holding cores before this pass, as preemption candidates."""
    job_by_name = {_name(j): j for j in jobs}
    held: dict[str, list[tuple[Mapping[str, Any], Placement]]] = defaultdict(list)
    for task in tasks:
        found = task_hold(task)
        job = str((task.get("spec") or {}).get("job", ""))
        if found is not None:
            node, hold = found
            held[job].append(
                (task, Placement(job, _name(task), node, tuple(sorted(hold.cores)), hold.memory))
            )
    running = []
    for job, items in sorted(held.items()):
        spec = (job_by_name.get(job) or {}).get("spec") or {}
        running.append(
            RunningJob(
                name=job,
                priority=int(spec.get("priority", 0)),
                submitted=_submitted([t for t, _ in items]),
                placements=tuple(p for _, p in items),
            )
        )
    return running


def _live_names_by_job(tasks: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = defaultdict(list)
    for task in sorted(tasks, key=_name):
        if is_live(task):
            names[str((task.get("spec") or {}).get("job", ""))].append(_name(task))
    return names


def plan_pass(
    nodes: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    jobs: Sequence[Mapping[str, Any]],
    settings: SchedulerSettings,
    now: float,
    migrations: Sequence[Mapping[str, Any]] = (),
) -> PassPlan:
    """Decide one scheduling pass (see the module docstring).

    Args:
        nodes: Every Node object.
        tasks: Every Task object.
        jobs: Every Job object.
        settings: The scheduler's settings.
        now: The current time in seconds since the epoch (for starvation).
        migrations: Every Migration object.
    """
    held = usage(tasks, migrations)
    resizes, resizes_waiting = plan_resizes(held, nodes, tasks, migrations)
    reservations, unreservable = plan_reservations(
        held, nodes, tasks, migrations, settings.strategy
    )
    states = held.states(nodes)
    queue, pending = _queue(tasks, jobs)
    decisions = schedule(
        states,
        queue,
        settings.strategy,
        now=now,
        starvation_seconds=settings.starvation_seconds,
    )
    placed = [p for d in decisions if d.placements for p in d.placements]
    evictions: list[Eviction] = []
    if settings.preemption:
        requests = {job.name: job for job in queue}
        running = _running(tasks, jobs)
        after = with_taken(states, placed)
        for decision in decisions:
            if decision.placements is not None:
                continue
            job = requests[decision.job]
            victims = choose_victims(after, running, job, job.strategy or settings.strategy)
            if not victims:
                continue
            freed = [r for r in running if r.name in victims]
            # A victim is evicted whole: what it was given in this pass is not bound either.
            kept = [p for p in placed if p.job not in victims]
            states_freed = with_released(
                with_taken(states, kept), (p for v in freed for p in v.placements)
            )
            [redo] = schedule(states_freed, [job], settings.strategy)
            if redo.placements is None:  # pragma: no cover - choose_victims checked this
                continue
            decisions = [
                redo
                if d.job == job.name
                else Decision(d.job, None, f"preempted by job {job.name}")
                if d.job in victims
                else d
                for d in decisions
            ]
            placed = kept + list(redo.placements)
            live_by_job = _live_names_by_job(tasks)
            for victim in freed:
                evictions.append(
                    Eviction(
                        job=victim.name,
                        tasks=tuple(live_by_job[victim.name]),
                        by=job.name,
                        message=(
                            f"preempted by job {job.name} (priority {job.priority}, "
                            f"above {victim.priority})"
                        ),
                    )
                )
            break
    bindings = tuple(
        Binding(p.job, p.task, p.node, format_cpuset(p.cpuset), p.memory) for p in placed
    )
    waiting = tuple(
        Waiting(d.job, tuple(pending[d.job]), d.reason or "")
        for d in decisions
        if d.placements is None
    )
    return PassPlan(
        bindings=bindings,
        waiting=waiting,
        evictions=tuple(evictions),
        allocations=_allocations(nodes, tasks, held, bindings, evictions),
        conflicts=tuple(held.conflicts),
        resizes=tuple(resizes),
        resizes_waiting=tuple(resizes_waiting),
        reservations=tuple(reservations),
        unreservable=tuple(unreservable),
    )


def _allocations(
    nodes: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    held: Usage,
    bindings: Sequence[Binding],
    evictions: Sequence[Eviction],
) -> dict[str, Object]:
    """Each node's view after the pass: what was held, less the evicted, plus the new bindings."""
    evicted = {t for e in evictions for t in e.tasks}
    holders: dict[str, list[Hold]] = defaultdict(list)
    for node, holds in held.holders.items():
        holders[node] = [h for h in holds if h.name not in evicted]
    by_name = {_name(t): t for t in tasks}
    for b in bindings:
        holders[b.node].append(Hold(by_name[b.task], frozenset(parse_cpuset(b.cpuset)), b.memory))
    return {_name(n): allocation_view(holders.get(_name(n), [])) for n in nodes}


__all__ = [
    "Binding",
    "Eviction",
    "PassPlan",
    "Waiting",
    "allocation_view",
    "cluster_snapshot",
    "is_live",
    "plan_pass",
]
