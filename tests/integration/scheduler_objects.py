"""Builders of the objects the scheduler reads, and the allocation invariant, for tests.

The scheduler and ``swarmapply plan`` read Nodes (capacity and Ready from the agent's status),
Jobs and the Tasks the job controller creates from them. These helpers write such objects to a
real store in the shapes those components produce (checked against the schemas, so a test
cannot pass on an object the real system would never hold), and
:func:`assert_allocation_invariant` checks, from the store alone, the property the scheduler
exists to keep: no core held by two live bound tasks, and no node given more than it has.

They do not run the job controller or an agent; tests move Task phases by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swarmapply.api.admission import validate_object
from swarmapply.api.quantity import format_cpuset, parse_cpuset
from swarmapply.api.store import Store

Object = dict[str, Any]

MI = 1024**2
GI = 1024**3
API_VERSION = "swarmapply.io/v1"
JOB_LABEL = "swarmapply.io/job"
TASK_LABEL = "swarmapply.io/task"
FINISHED = ("Succeeded", "Failed")


def checked(obj: Object) -> Object:
    """``obj`` unchanged, after asserting it is valid against its kind's schema."""
    problems = validate_object(obj)
    assert not problems, "; ".join(str(p) for p in problems)
    return obj


def add_node(
    store: Store,
    name: str,
    cores: int = 4,
    memory: int = 8 * GI,
    *,
    ready: bool | None = True,
    unschedulable: bool = False,
    core_ids: Sequence[int] | None = None,
) -> Object:
    """Register a Node as its agent would: ``spec`` then ``status.capacity`` and ``Ready``.

    Args:
        store: The store.
        name: The node's name.
        cores: How many cores (ids 0..cores-1 unless ``core_ids`` is given).
        memory: Memory in bytes.
        ready: The Ready condition's status (True/False), or None for no condition at all.
        unschedulable: Cordoned.
        core_ids: The ids of the node's cores, when not 0..cores-1.
    """
    spec: Object = {"unschedulable": True} if unschedulable else {}
    created = store.create(
        checked(
            {"apiVersion": API_VERSION, "kind": "Node", "metadata": {"name": name}, "spec": spec}
        )
    )
    ids = list(core_ids) if core_ids is not None else list(range(cores))
    status: Object = {"capacity": {"cores": len(ids), "memory": memory, "coreIds": ids}}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "AgentReady" if ready else "HeartbeatMissed",
                "message": "the agent reports" if ready else "no heartbeat",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    return store.update_status(checked({**created, "status": status}))


def task_entry(
    name: str,
    cores: int = 1,
    memory: int = 64 * MI,
    *,
    node: str | None = None,
    cpuset: str | None = None,
) -> Object:
    """One ``spec.tasks[]`` entry of a Job."""
    entry: Object = {"name": name, "image": "busybox", "cores": cores, "memory": memory}
    if node is not None:
        entry["node"] = node
    if cpuset is not None:
        entry["cpuset"] = cpuset
    return entry


def job_object(
    name: str,
    tasks: Sequence[Object],
    *,
    priority: int = 0,
    strategy: str | None = None,
) -> Object:
    """A Job manifest (not written anywhere)."""
    spec: Object = {"tasks": [dict(t) for t in tasks], "priority": priority}
    if strategy is not None:
        spec["placement"] = {"strategy": strategy}
    return checked(
        {"apiVersion": API_VERSION, "kind": "Job", "metadata": {"name": name}, "spec": spec}
    )


def task_object(job: Mapping[str, Any], entry: Mapping[str, Any]) -> Object:
    """The Task the job controller creates for ``entry`` of the stored ``job``."""
    job_name = str(job["metadata"]["name"])
    spec: Object = {
        "job": job_name,
        "image": entry["image"],
        "cores": entry.get("cores", 1),
        "memory": entry["memory"],
        "priority": job["spec"].get("priority", 0),
    }
    for pin in ("node", "cpuset"):
        if pin in entry:
            spec[pin] = entry[pin]
    return checked(
        {
            "apiVersion": API_VERSION,
            "kind": "Task",
            "metadata": {
                "name": f"{job_name}-{entry['name']}",
                "labels": {JOB_LABEL: job_name, TASK_LABEL: str(entry["name"])},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "Job",
                        "name": job_name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }
    )


def add_job(
    store: Store,
    name: str,
    tasks: Sequence[Object],
    *,
    priority: int = 0,
    strategy: str | None = None,
    create_tasks: Iterable[str] | None = None,
) -> Object:
    """Create a Job and (as its job controller would) its Task objects.

    Args:
        store: The store.
        name: The job's name.
        tasks: Its ``spec.tasks`` entries (see :func:`task_entry`).
        priority: ``spec.priority``.
        strategy: ``spec.placement.strategy``.
        create_tasks: The task names (of ``spec.tasks``) to create Task objects for; all
            when None.

    Returns:
        The stored Job.
    """
    job = store.create(job_object(name, tasks, priority=priority, strategy=strategy))
    wanted = None if create_tasks is None else set(create_tasks)
    for entry in tasks:
        if wanted is None or entry["name"] in wanted:
            store.create(task_object(job, entry))
    return job


def add_task(store: Store, job: str, task: str) -> Object:
    """Create (again) the Task object of entry ``task`` of the stored Job ``job``."""
    stored = store.get("Job", job)
    [entry] = [t for t in stored["spec"]["tasks"] if t["name"] == task]
    return store.create(task_object(stored, entry))


def set_phase(store: Store, task: str, phase: str) -> Object:
    """Set a Task's ``status.phase`` as its node agent would (e.g. Succeeded)."""
    obj = store.get("Task", task)
    return store.update_status(
        checked({**obj, "status": {**obj.get("status", {}), "phase": phase}})
    )


def bind(store: Store, task: str, node: str, cpuset: str, *, phase: str = "Running") -> Object:
    """Write a binding by hand (a task bound earlier, now running on ``node``)."""
    obj = store.get("Task", task)
    status = {
        **obj.get("status", {}),
        "phase": phase,
        "node": node,
        "cpuset": cpuset,
        "memory": obj["spec"]["memory"],
    }
    return store.update_status(checked({**obj, "status": status}))


def binding(store: Store, task: str) -> tuple[str | None, str | None]:
    """A Task's (``status.node``, ``status.cpuset``)."""
    status = store.get("Task", task).get("status") or {}
    return status.get("node"), status.get("cpuset")


def assert_allocation_invariant(store: Store) -> None:
    """Assert, from the store, that allocation is sound.

    On every node: no core is held by two live (not Succeeded/Failed) bound tasks, every held
    core is a core of the node, and the memory reserved by live bound tasks is within the
    node's memory. Every Node object must also be valid against the schema.

    A Migration that has not finished also holds, for each task it moves, the target reserved
    for it until the task is bound there, and the task's old cores once it is bound elsewhere.
    """
    nodes = {n["metadata"]["name"]: n for n in store.list("Node").items}
    held: dict[str, dict[int, str]] = defaultdict(dict)
    memory: dict[str, int] = defaultdict(int)

    def hold(node: str, cpuset: str, bytes_: int, name: str) -> None:
        assert node in nodes, f"{name} holds cores on node {node}, which does not exist"
        for core in parse_cpuset(cpuset):
            other = held[node].get(core)
            assert other is None, f"core {core} of node {node} is held by {other} and {name}"
            held[node][core] = name
        memory[node] += bytes_

    tasks = {t["metadata"]["name"]: t for t in store.list("Task").items}
    for name, task in tasks.items():
        status = task.get("status") or {}
        if status.get("phase") in FINISHED or not status.get("node"):
            continue
        hold(status["node"], status.get("cpuset") or "", int(status.get("memory", 0)), name)
    for migration in store.list("Migration").items:
        status = migration.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        for entry in status.get("tasks") or []:
            task_status = (tasks.get(entry["task"]) or {}).get("status")
            if task_status is None or task_status.get("phase") in FINISHED:
                continue
            what = f"migration {migration['metadata']['name']} of {entry['task']}"
            bound, size = task_status.get("node"), int(entry.get("memory", 0))
            target = entry.get("targetNode")
            if target and entry.get("targetCpuset") and bound != target:
                hold(entry["targetNode"], entry["targetCpuset"], size, what + " (target)")
            if bound != entry["sourceNode"]:
                hold(entry["sourceNode"], entry["sourceCpuset"], size, what + " (source)")
    for name, node in nodes.items():
        checked(node)
        capacity = (node.get("status") or {}).get("capacity") or {}
        ids = set(capacity.get("coreIds", range(int(capacity.get("cores", 0)))))
        extra = set(held[name]) - ids
        assert not extra, f"node {name}: cores {format_cpuset(extra)} are held but do not exist"
        assert memory[name] <= int(capacity.get("memory", 0)), f"node {name}: memory overcommitted"


__all__ = [
    "GI",
    "MI",
    "add_job",
    "add_node",
    "add_task",
    "assert_allocation_invariant",
    "bind",
    "binding",
    "checked",
    "job_object",
    "set_phase",
    "task_entry",
    "task_object",
]
