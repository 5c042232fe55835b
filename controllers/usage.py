"""What is held on each node: the cores and memory of live bound tasks and of migrations (pure).

A live task bound to a node (``status.node``) holds its ``status.cpuset`` and
``status.memory`` there. A Migration that has not finished holds, for each task it moves:

* the target the scheduler reserved (``status.tasks[].targetNode``/``targetCpuset``) while
  the task is not bound there yet, and
* the source (``sourceNode``/``sourceCpuset``) once the task is bound elsewhere, until the
  Migration ends, so a task's old cores are given back only after it runs on the target.

So a task that moves holds cores on both nodes, never on neither. :class:`Usage` adds those
holds up per node, reports any core held twice (:attr:`Usage.conflicts`: the invariant the
scheduler keeps), and builds each Node's ``status.allocated`` view. Nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmapply.api.names import natural_key
from swarmapply.api.quantity import QuantityError, format_cpuset, parse_cpuset
from swarmapply.controllers.job_tasks import FINISHED
from swarmapply.controllers.placement_model import NodeState
from swarmapply.controllers.requests import node_state

Object = dict[str, Any]

#: The phases a Migration does not leave; it holds nothing in them.
MIGRATION_DONE = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class Hold:
    """``cores`` and ``memory`` held on a node for ``task`` (for ``migration`` when set)."""

    task: Mapping[str, Any]
    cores: frozenset[int]
    memory: int
    migration: str | None = None

    @property
    def name(self) -> str:
        """The holding task's name."""
        return _name(self.task)


def is_live(task: Mapping[str, Any]) -> bool:
    """True until the task's phase is Succeeded or Failed."""
    return (task.get("status") or {}).get("phase") not in FINISHED


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _cores(cpuset: Any) -> frozenset[int]:
    try:
        return frozenset(parse_cpuset(str(cpuset or "")))
    except QuantityError:
        return frozenset()


def task_hold(task: Mapping[str, Any]) -> tuple[str, Hold] | None:
    """(node, hold) of a live bound task, else None."""
    status = task.get("status") or {}
    if not is_live(task) or not status.get("node"):
        return None
    return str(status["node"]), Hold(
        task, _cores(status.get("cpuset")), int(status.get("memory", 0))
    )


def migration_holds(
    migration: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, Hold]]:
    """The extra (node, hold) pairs of a Migration that has not finished (see the module doc).

    Args:
        migration: A Migration object.
        tasks: Task objects by name.
    """
    status = migration.get("status") or {}
    if status.get("phase") in MIGRATION_DONE:
        return []
    name = _name(migration)
    holds = []
    for entry in status.get("tasks") or []:
        task = tasks.get(str(entry.get("task")))
        if task is None or not is_live(task):
            continue
        bound = (task.get("status") or {}).get("node")
        memory = int(entry.get("memory", 0))
        target = entry.get("targetNode")
        if target and entry.get("targetCpuset") and bound != target:
            holds.append((str(target), Hold(task, _cores(entry["targetCpuset"]), memory, name)))
        source = entry.get("sourceNode")
        if source and bound != source:
            holds.append((str(source), Hold(task, _cores(entry.get("sourceCpuset")), memory, name)))
    return holds


@dataclass
class Usage:
    """The holds on each node, added up."""

    cores: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    memory: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    holders: dict[str, list[Hold]] = field(default_factory=lambda: defaultdict(list))
    conflicts: list[str] = field(default_factory=list)

    def add(self, node: str, hold: Hold) -> None:
        """Count ``hold`` on ``node``, noting a conflict if a core is held already."""
        overlap = self.cores[node] & hold.cores
        if overlap:
            self.conflicts.append(
                f"node {node}: cores {format_cpuset(overlap)} are held by more than one task "
                f"(one is {hold.name})"
            )
        self.cores[node] |= hold.cores
        self.memory[node] += hold.memory
        self.holders[node].append(hold)

    def replace(self, node: str, old: Hold, new: Hold) -> None:
        """Swap ``old`` for ``new`` on ``node`` (a resize): old's cores are free again first."""
        self.holders[node] = [h for h in self.holders[node] if h is not old]
        self.cores[node] = set().union(*(h.cores for h in self.holders[node]))
        self.memory[node] -= old.memory
        self.add(node, new)

    def states(self, nodes: Sequence[Mapping[str, Any]]) -> list[NodeState]:
        """The nodes with everything held taken off."""
        return [
            node_state(
                n, used_cores=frozenset(self.cores[_name(n)]), used_memory=self.memory[_name(n)]
            )
            for n in nodes
        ]


def usage(
    tasks: Sequence[Mapping[str, Any]], migrations: Iterable[Mapping[str, Any]] = ()
) -> Usage:
    """What the live bound tasks and the unfinished Migrations hold, per node."""
    result = Usage()
    by_name = {_name(t): t for t in tasks}
    for task in sorted(tasks, key=_name):
        held = task_hold(task)
        if held is not None:
            result.add(*held)
    for migration in sorted(migrations, key=_name):
        for node, hold in migration_holds(migration, by_name):
            result.add(node, hold)
    return result


def allocation_view(holders: Sequence[Hold]) -> Object:
    """A Node's ``status.allocated``: totals and the per-task core map (task name order)."""
    cores: set[int] = set()
    memory = 0
    entries = []
    for hold in sorted(holders, key=lambda h: (natural_key(h.name), h.migration or "")):
        cores |= hold.cores
        memory += hold.memory
        entry: Object = {"task": hold.name, "cpuset": format_cpuset(hold.cores)}
        job = (hold.task.get("spec") or {}).get("job")
        if job:
            entry["job"] = str(job)
        entry["memory"] = hold.memory
        if hold.migration:
            entry["migration"] = hold.migration
        entries.append(entry)
    return {"cores": len(cores), "memory": memory, "cpuset": format_cpuset(cores), "tasks": entries}


__all__ = [
    "MIGRATION_DONE",
    "Hold",
    "Usage",
    "allocation_view",
    "is_live",
    "migration_holds",
    "task_hold",
    "usage",
]
