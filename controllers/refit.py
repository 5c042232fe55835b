"""Re-fitting tasks that already hold cores: live resizes and migration targets (pure).

Two requests change what a bound task holds, and both are decided by the scheduler, the only
writer of allocation, before it places queued jobs in a pass:

* **Resize** (:func:`plan_resizes`): a live bound task whose spec now asks for other cores or
  memory than its status holds (the job controller updates ``cores``, ``cpuset`` and
  ``memory`` of a bound task in place) is re-fitted *on its node*. Shrinking keeps the
  lowest-numbered of its cores; growing keeps all of them and adds the lowest-numbered free
  ones; a pinned ``cpuset`` is taken as asked when those cores are free. When it does not fit,
  the task keeps what it has and the change waits with a reason (:class:`ResizeWaiting`).
  A task that is being migrated (in a Migration that has not finished) is not resized until
  its migration ends.
* **Reservation** (:func:`plan_reservations`): a Migration in phase ``Pending`` whose migrator
  has recorded the tasks to move (``status.tasks`` with their sources) gets a target for all
  of them at once (a gang, as for a job): ``spec.toNode`` when given, else the best node by
  the scheduler's strategy, never one of the nodes the tasks run on now. Each task asks for
  as many cores as it holds and the same memory. A Migration that cannot be given a target
  fails (:class:`Unreservable`); its tasks keep running where they are.

Both update the :class:`~.usage.Usage` they are given, so everything placed later in the same
pass sees the cores they took. Nothing here writes to the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmapply.api.quantity import QuantityError, format_cpuset, format_memory, parse_cpuset
from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.placement import schedule
from swarmapply.controllers.placement_model import JobRequest, TaskRequest
from swarmapply.controllers.requests import node_capacity
from swarmapply.controllers.usage import MIGRATION_DONE, Hold, Usage, is_live

Object = dict[str, Any]


@dataclass(frozen=True)
class Resize:
    """Give ``task`` on ``node`` cores ``cpuset`` and ``memory`` bytes instead of the old ones."""

    task: str
    node: str
    cpuset: str
    memory: int
    message: str


@dataclass(frozen=True)
class ResizeWaiting:
    """A resize of ``task`` that does not fit on its node yet, and why."""

    task: str
    message: str


@dataclass(frozen=True)
class Reservation:
    """Targets reserved for Migration ``migration``: its ``status.tasks`` with targets filled."""

    migration: str
    tasks: tuple[Object, ...]
    message: str


@dataclass(frozen=True)
class Unreservable:
    """A Migration that cannot be given a target, and why."""

    migration: str
    message: str


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _cores(value: Any) -> frozenset[int]:
    try:
        return frozenset(parse_cpuset(str(value or "")))
    except QuantityError:
        return frozenset()


def wanted(task: Mapping[str, Any]) -> tuple[frozenset[int] | int, int]:
    """What a task's spec asks for: its pinned cores (or how many cores) and memory in bytes.

    A pin names cores of the task's ``spec.node``; on another node (the task was migrated)
    only the number of cores counts.
    """
    spec = task.get("spec") or {}
    pinned = spec.get("cpuset")
    elsewhere = spec.get("node") and spec.get("node") != (task.get("status") or {}).get("node")
    cores: frozenset[int] | int = int(spec.get("cores", 1))
    if pinned:
        cores = len(_cores(pinned)) if elsewhere else _cores(pinned)
    return cores, int(spec.get("memory", 0))


def resize_needed(task: Mapping[str, Any]) -> bool:
    """True for a live bound task whose spec asks for other cores or memory than it holds."""
    status = task.get("status") or {}
    if not is_live(task) or not status.get("node") or not status.get("cpuset"):
        return False
    held = _cores(status.get("cpuset"))
    cores, memory = wanted(task)
    same_cores = held == cores if isinstance(cores, frozenset) else len(held) == cores
    return not same_cores or memory != int(status.get("memory", 0))


def _refit(
    name: str, node: str, held: frozenset[int], cores: frozenset[int] | int, free: frozenset[int],
    capacity: frozenset[int],
) -> tuple[frozenset[int] | None, str]:  # fmt: skip
    """The new cores for a resize on ``node``, or None and why not."""
    if isinstance(cores, frozenset):
        missing = cores - capacity
        if missing:
            return None, f"node {node} has no cores {format_cpuset(missing)}"
        taken = (cores - held) - free
        if taken:
            return None, f"cores {format_cpuset(taken)} on node {node} are held by other tasks"
        return cores, ""
    if cores <= len(held):
        return frozenset(sorted(held)[:cores]), ""
    more = cores - len(held)
    if len(free) < more:
        return None, (
            f"task {name} needs {more} more core{'s' if more != 1 else ''} on node {node}, "
            f"which has {len(free)} free"
        )
    return held | frozenset(sorted(free)[:more]), ""


def moving(
    migrations: Iterable[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]] = ()
) -> frozenset[str]:
    """The names of the tasks in Migrations that have not finished (with every task of the
    jobs they move)."""
    names: set[str] = set()
    jobs: set[str] = set()
    for migration in migrations:
        status = migration.get("status") or {}
        if status.get("phase") not in MIGRATION_DONE:
            spec = migration.get("spec") or {}
            names.update(str(e.get("task")) for e in status.get("tasks") or [])
            names.add(str(spec.get("task") or ""))
            jobs.add(str(spec.get("job") or ""))
    jobs.discard("")
    names.update(_name(t) for t in tasks if str((t.get("spec") or {}).get("job")) in jobs)
    return frozenset(names - {""})


def plan_resizes(
    use: Usage,
    nodes: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    migrations: Iterable[Mapping[str, Any]] = (),
) -> tuple[list[Resize], list[ResizeWaiting]]:
    """The resizes that fit now and those that wait (see the module docstring)."""
    by_node = {_name(n): n for n in nodes}
    migrations = list(migrations)
    frozen = moving(migrations, tasks)
    resizes: list[Resize] = []
    waiting: list[ResizeWaiting] = []
    for task in sorted(tasks, key=_name):
        status = task.get("status") or {}
        if not resize_needed(task) or status.get("migration") or _name(task) in frozen:
            continue
        name, node = _name(task), str(status["node"])
        if node not in by_node:
            continue
        old = next((h for h in use.holders[node] if h.name == name and not h.migration), None)
        if old is None:
            continue
        capacity, memory_total = node_capacity(by_node[node])
        cores, memory = wanted(task)
        free = capacity - frozenset(use.cores[node])
        new, why = _refit(name, node, old.cores, cores, free, capacity)
        free_memory = memory_total - use.memory[node]
        if new is not None and memory - old.memory > free_memory:
            new, why = (
                None,
                (
                    f"task {name} needs {format_memory(memory - old.memory)} more memory on node "
                    f"{node}, which has {format_memory(max(0, free_memory))} free"
                ),
            )
        if new is None:
            waiting.append(ResizeWaiting(name, f"cannot resize task {name}: {why}"))
            continue
        use.replace(node, old, Hold(task, new, memory))
        message = (
            f"resized on node {node}: cores {format_cpuset(old.cores)} -> {format_cpuset(new)}, "
            f"memory {format_memory(old.memory)} -> {format_memory(memory)}"
        )
        resizes.append(Resize(name, node, format_cpuset(new), memory, message))
    return resizes, waiting


def _created(obj: Mapping[str, Any]) -> float:
    moment = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return moment.timestamp() if moment is not None else 0.0


def pending_migrations(migrations: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Migrations waiting for a target, oldest first."""
    found = []
    for migration in migrations:
        status = migration.get("status") or {}
        entries = status.get("tasks") or []
        if status.get("phase") != "Pending" or not entries:
            continue
        if any(e.get("targetNode") for e in entries):
            continue
        found.append(migration)
    return sorted(found, key=lambda m: (_created(m), _name(m)))


def plan_reservations(
    use: Usage,
    nodes: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    migrations: Iterable[Mapping[str, Any]],
    strategy: str,
) -> tuple[list[Reservation], list[Unreservable]]:
    """Targets for the pending Migrations (see the module docstring)."""
    by_task = {_name(t): t for t in tasks}
    reservations: list[Reservation] = []
    failures: list[Unreservable] = []
    migrations = list(migrations)
    waiting = pending_migrations(migrations)
    taken = {  # task -> the Migration already moving it (reserved, or earlier in this pass)
        str(e.get("task")): _name(m)
        for m in migrations
        if m not in waiting and (m.get("status") or {}).get("phase") not in MIGRATION_DONE
        for e in (m.get("status") or {}).get("tasks") or []
    }
    for migration in waiting:
        name = _name(migration)
        entries = [dict(e) for e in (migration.get("status") or {}).get("tasks") or []]
        busy = [f"{e['task']} (by {taken[e['task']]})" for e in entries if e["task"] in taken]
        if busy:
            failures.append(Unreservable(name, f"task {', '.join(busy)} is being moved already"))
            continue
        gone = [
            str(e["task"])
            for e in entries
            if str(e["task"]) not in by_task or not is_live(by_task[str(e["task"])])
        ]
        if gone:
            failures.append(Unreservable(name, f"task {', '.join(gone)} is no longer running"))
            continue
        to = (migration.get("spec") or {}).get("toNode")
        sources = {str(e["sourceNode"]) for e in entries}
        candidates = [
            n for n in nodes if _name(n) not in sources and (to is None or _name(n) == to)
        ]
        if to is not None and not candidates:
            where = "the task's own node" if to in sources else "not a known node"
            failures.append(Unreservable(name, f"node {to} is {where}"))
            continue
        request = JobRequest(
            name=f"migration {name}",
            tasks=tuple(
                TaskRequest(
                    name=str(e["task"]),
                    cores=len(_cores(e.get("sourceCpuset"))) or 1,
                    memory=int(e.get("memory", 0)),
                )
                for e in entries
            ),
        )
        [decision] = schedule(use.states(candidates), [request], strategy)
        if decision.placements is None:
            failures.append(Unreservable(name, f"no target: {decision.reason}"))
            continue
        targets = {p.task: p for p in decision.placements}
        for entry in entries:
            placed = targets[str(entry["task"])]
            entry["targetNode"] = placed.node
            entry["targetCpuset"] = format_cpuset(placed.cpuset)
            use.add(placed.node, Hold(by_task[placed.task], frozenset(placed.cpuset),
                                      placed.memory, name))  # fmt: skip
        where = ", ".join(sorted({str(e["targetNode"]) for e in entries}))
        reservations.append(Reservation(name, tuple(entries), f"target reserved on {where}"))
        taken.update({str(e["task"]): name for e in entries})
    return reservations, failures


__all__ = [
    "Reservation",
    "Resize",
    "ResizeWaiting",
    "Unreservable",
    "pending_migrations",
    "plan_reservations",
    "plan_resizes",
    "resize_needed",
    "wanted",
]
