"""Unit tests for what is held on each node: bound tasks and unfinished Migrations."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.api.admission import validate_object
from swarmapply.controllers.usage import (
    Hold,
    Usage,
    allocation_view,
    migration_holds,
    task_hold,
    usage,
)

Object = dict[str, Any]
MI = 1024**2
GI = 1024**3


def node(name: str, cores: int = 4, memory: int = 8 * GI) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "capacity": {"cores": cores, "memory": memory, "coreIds": list(range(cores))},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def task(
    name: str,
    *,
    node_name: str | None = None,
    cpuset: str | None = None,
    phase: str = "Running",
    memory: int = 64 * MI,
    job: str = "web",
) -> Object:
    status: Object = {"phase": phase}
    if node_name is not None:
        status.update(node=node_name, cpuset=cpuset, memory=memory)
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "creationTimestamp": "2027-01-15T08:00:00Z",
            "labels": {"swarmapply.io/job": job, "swarmapply.io/task": name},
        },
        "spec": {"job": job, "image": "busybox", "cores": 1, "memory": memory},
        "status": status,
    }


def migration(
    name: str,
    entries: list[Object],
    *,
    phase: str = "Starting",
    task_name: str = "web-a",
) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Migration",
        "metadata": {"name": name, "creationTimestamp": "2027-01-15T08:01:00Z"},
        "spec": {"task": task_name, "mode": "cold"},
        "status": {"phase": phase, "tasks": entries},
    }


def entry(
    name: str = "web-a",
    source: str = "n1",
    source_cpuset: str = "0-1",
    target: str | None = "n2",
    target_cpuset: str | None = "2-3",
    memory: int = 64 * MI,
) -> Object:
    found: Object = {
        "task": name,
        "sourceNode": source,
        "sourceCpuset": source_cpuset,
        "memory": memory,
    }
    if target is not None:
        found["targetNode"] = target
    if target_cpuset is not None:
        found["targetCpuset"] = target_cpuset
    return found


def summary(use: Usage) -> dict[str, tuple[list[int], int, list[tuple[str, str | None]]]]:
    """Node -> (sorted cores, memory, [(holder, migration)]) for the nodes with holds."""
    return {
        n: (
            sorted(use.cores[n]),
            use.memory[n],
            [(h.name, h.migration) for h in use.holders[n]],
        )
        for n in sorted(use.holders)
        if use.holders[n]
    }


# -- tasks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Scheduled", "Running", "Pending"])
def test_a_live_bound_task_holds_its_cores_and_memory(phase: str) -> None:
    t = task("web-a", node_name="n1", cpuset="0-1,3", phase=phase, memory=100 * MI)
    assert task_hold(t) == ("n1", Hold(t, frozenset({0, 1, 3}), 100 * MI))
    assert summary(usage([t])) == {"n1": ([0, 1, 3], 100 * MI, [("web-a", None)])}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_task_holds_nothing(phase: str) -> None:
    t = task("web-a", node_name="n1", cpuset="0-1", phase=phase)
    assert task_hold(t) is None
    assert summary(usage([t])) == {}


def test_an_unbound_task_holds_nothing() -> None:
    assert task_hold(task("web-a", phase="Pending")) is None


def test_two_tasks_on_the_same_cores_are_a_conflict() -> None:
    a = task("web-a", node_name="n1", cpuset="0-1")
    b = task("web-b", node_name="n1", cpuset="1-2")
    c = task("web-c", node_name="n2", cpuset="1-2")
    use = usage([b, a, c])
    assert use.conflicts == [
        "node n1: cores 1 are held by more than one task (one is web-b)",
    ]
    assert summary(use)["n1"] == ([0, 1, 2], 128 * MI, [("web-a", None), ("web-b", None)])


# -- migrations -----------------------------------------------------------------------------------


def test_before_the_move_a_migration_holds_the_target_and_the_task_its_source() -> None:
    t = task("web-a", node_name="n1", cpuset="0-1")
    m = migration("m1", [entry()], phase="Stopping")
    assert migration_holds(m, {"web-a": t}) == [
        ("n2", Hold(t, frozenset({2, 3}), 64 * MI, "m1")),
    ]
    use = usage([t], [m])
    assert summary(use) == {
        "n1": ([0, 1], 64 * MI, [("web-a", None)]),
        "n2": ([2, 3], 64 * MI, [("web-a", "m1")]),
    }
    assert use.conflicts == []


def test_after_the_move_a_migration_holds_the_source_until_it_ends() -> None:
    t = task("web-a", node_name="n2", cpuset="2-3")
    m = migration("m1", [entry()], phase="Starting")
    assert migration_holds(m, {"web-a": t}) == [
        ("n1", Hold(t, frozenset({0, 1}), 64 * MI, "m1")),
    ]
    assert summary(usage([t], [m])) == {
        "n1": ([0, 1], 64 * MI, [("web-a", "m1")]),
        "n2": ([2, 3], 64 * MI, [("web-a", None)]),
    }


def test_a_pending_migration_without_a_target_holds_nothing_extra() -> None:
    t = task("web-a", node_name="n1", cpuset="0-1")
    m = migration("m1", [entry(target=None, target_cpuset=None)], phase="Pending")
    assert migration_holds(m, {"web-a": t}) == []


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_migration_holds_nothing(phase: str) -> None:
    t = task("web-a", node_name="n2", cpuset="2-3")
    m = migration("m1", [entry()], phase=phase)
    assert migration_holds(m, {"web-a": t}) == []
    assert summary(usage([t], [m])) == {"n2": ([2, 3], 64 * MI, [("web-a", None)])}


def test_a_migration_of_a_finished_or_missing_task_holds_nothing() -> None:
    done = task("web-a", node_name="n1", cpuset="0-1", phase="Failed")
    m = migration("m1", [entry()], phase="Stopping")
    assert migration_holds(m, {"web-a": done}) == []
    assert migration_holds(m, {}) == []


def test_a_migration_hold_overlapping_a_task_is_a_conflict() -> None:
    moving = task("web-a", node_name="n1", cpuset="0-1")
    other = task("web-b", node_name="n2", cpuset="3")
    m = migration("m1", [entry()], phase="Reserved")
    use = usage([moving, other], [m])
    assert use.conflicts == [
        "node n2: cores 3 are held by more than one task (one is web-a)",
    ]


def test_replace_frees_the_old_cores_before_adding_the_new() -> None:
    t = task("web-a", node_name="n1", cpuset="0-1")
    use = usage([t, task("web-b", node_name="n1", cpuset="2")])
    [old] = [h for h in use.holders["n1"] if h.name == "web-a"]
    use.replace("n1", old, Hold(t, frozenset({0, 3}), 32 * MI))
    assert sorted(use.cores["n1"]) == [0, 2, 3]
    assert use.memory["n1"] == 96 * MI
    assert use.conflicts == []


def test_states_take_every_hold_off_the_nodes() -> None:
    t = task("web-a", node_name="n1", cpuset="0-1", memory=GI)
    m = migration("m1", [entry(memory=GI)], phase="Stopping")
    n1, n2, n3 = usage([t], [m]).states([node("n1"), node("n2"), node("n3")])
    assert (sorted(n1.free_cores), n1.free_memory) == ([2, 3], 7 * GI)
    assert (sorted(n2.free_cores), n2.free_memory) == ([0, 1], 7 * GI)
    assert (sorted(n3.free_cores), n3.free_memory) == ([0, 1, 2, 3], 8 * GI)


# -- allocation view ------------------------------------------------------------------------------


def test_allocation_view_marks_migration_holds() -> None:
    moving = task("web-a", node_name="n2", cpuset="2-3")
    stays = task("web-b", node_name="n1", cpuset="2")
    m = migration("m1", [entry()], phase="Starting")
    use = usage([moving, stays], [m])
    view = allocation_view(use.holders["n1"])
    assert view == {
        "cores": 3,
        "memory": 128 * MI,
        "cpuset": "0-2",
        "tasks": [
            {"task": "web-a", "cpuset": "0-1", "job": "web", "memory": 64 * MI, "migration": "m1"},
            {"task": "web-b", "cpuset": "2", "job": "web", "memory": 64 * MI},
        ],
    }
    n1 = node("n1")
    n1["status"]["allocated"] = view
    assert validate_object(n1) == []
    assert allocation_view(use.holders["n2"])["tasks"] == [
        {"task": "web-a", "cpuset": "2-3", "job": "web", "memory": 64 * MI},
    ]


def test_allocation_view_of_an_empty_node() -> None:
    assert allocation_view([]) == {"cores": 0, "memory": 0, "cpuset": "", "tasks": []}
