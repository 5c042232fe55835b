"""Conversion of store objects into the placement core's inputs (pure).

The scheduler, ``swarmapply plan`` and ``swarmapply simulate`` all describe jobs and nodes to
:func:`~.placement.schedule` through these functions, so they agree on what a manifest asks
for. Objects are expected to be admitted (memory in bytes, cpusets canonical); a value that is
still malformed raises ``ValueError`` naming the object and field.

A node's capacity is its agent's report (``status.capacity``) when there is one, else what the
Node declares (``spec.capacity``, cores numbered 0..n-1). It is Ready when its ``Ready``
condition is ``True``; a Node without an agent (declared only) is never Ready for the live
scheduler, only for the offline simulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swarmapply.api.quantity import parse_cpuset
from swarmapply.controllers.placement_model import JobRequest, NodeState, TaskRequest

Object = dict[str, Any]


def task_request(name: str, spec: Mapping[str, Any]) -> TaskRequest:
    """A TaskRequest from a Task's spec or a Job's ``spec.tasks[]`` entry.

    Raises:
        ValueError: A field is malformed (the message names the task).
    """
    try:
        cpuset = spec.get("cpuset")
        return TaskRequest(
            name=name,
            cores=int(spec.get("cores", 1)),
            memory=int(spec.get("memory", 0)),
            node=spec.get("node"),
            cpuset=None if cpuset in (None, "") else frozenset(parse_cpuset(cpuset)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"task {name}: {exc}") from exc


def job_request(
    job: Mapping[str, Any], *, submitted: float = 0.0, strategy: str | None = None
) -> JobRequest:
    """A JobRequest for every task in a Job manifest.

    Args:
        job: A Job object (admitted).
        submitted: When it joined the queue, on the caller's clock.
        strategy: Overrides the job's ``spec.placement.strategy`` when given.
    """
    spec = job.get("spec") or {}
    name = str(job["metadata"]["name"])
    tasks = tuple(task_request(str(t["name"]), t) for t in spec.get("tasks") or [])
    own = (spec.get("placement") or {}).get("strategy")
    return JobRequest(
        name=name,
        tasks=tasks,
        priority=int(spec.get("priority", 0)),
        submitted=submitted,
        strategy=strategy or own,
    )


def node_capacity(node: Mapping[str, Any]) -> tuple[frozenset[int], int]:
    """The node's core ids and memory in bytes (reported, else declared; else none)."""
    reported = (node.get("status") or {}).get("capacity") or {}
    if reported:
        ids = reported.get("coreIds")
        cores = (
            frozenset(int(i) for i in ids)
            if ids is not None
            else frozenset(range(int(reported.get("cores", 0))))
        )
        return cores, int(reported.get("memory", 0))
    declared = (node.get("spec") or {}).get("capacity") or {}
    return frozenset(range(int(declared.get("cores", 0)))), int(declared.get("memory", 0))


def condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    """True when ``status.conditions`` has ``kind`` with status ``"True"``."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def node_state(
    node: Mapping[str, Any],
    *,
    used_cores: frozenset[int] = frozenset(),
    used_memory: int = 0,
    ready: bool | None = None,
) -> NodeState:
    """The node as the placement core sees it, given what live tasks hold on it.

    Args:
        node: A Node object.
        used_cores: Core ids held by live tasks (ids the node no longer has are ignored).
        used_memory: Memory in bytes reserved by live tasks (free memory stops at 0).
        ready: Overrides the Ready condition (the simulation's nodes are always ready).
    """
    cores, memory = node_capacity(node)
    return NodeState(
        name=str(node["metadata"]["name"]),
        cores=cores,
        free_cores=cores - used_cores,
        memory=memory,
        free_memory=max(0, memory - used_memory),
        ready=condition_true(node, "Ready") if ready is None else ready,
        schedulable=not (node.get("spec") or {}).get("unschedulable", False),
    )


__all__ = ["condition_true", "job_request", "node_capacity", "node_state", "task_request"]
