"""Unit tests for re-fitting bound tasks: live resizes and migration target reservations."""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.controllers.refit import (
    Reservation,
    Resize,
    ResizeWaiting,
    Unreservable,
    pending_migrations,
    plan_reservations,
    plan_resizes,
    resize_needed,
    wanted,
)
from swarmapply.controllers.scheduling import Binding, plan_pass
from swarmapply.controllers.settings import SchedulerSettings
from swarmapply.controllers.usage import usage

Object = dict[str, Any]
MI = 1024**2
GI = 1024**3
T0 = 1_800_000_000.0
STRATEGY = "best-fit"


def node(name: str, cores: int = 4, memory: int = 8 * GI, *, ready: bool = True) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "capacity": {"cores": cores, "memory": memory, "coreIds": list(range(cores))},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def task(
    name: str,
    cores: int = 1,
    *,
    node_name: str | None = None,
    cpuset: str | None = None,
    phase: str = "Running",
    memory: int = 64 * MI,
    held_memory: int | None = None,
    pinned: str | None = None,
    job: str = "web",
    created: str = "2027-01-15T08:00:00Z",
) -> Object:
    """A Task asking for ``cores``/``memory`` (or ``pinned`` cores); bound when node_name given.

    ``held_memory`` is what its status holds (default: ``memory``).
    """
    spec: Object = {"job": job, "image": "busybox", "cores": cores, "memory": memory}
    if pinned is not None:
        spec["cpuset"] = pinned
    status: Object = {"phase": phase}
    if node_name is not None:
        status.update(
            node=node_name, cpuset=cpuset, memory=memory if held_memory is None else held_memory
        )
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"swarmapply.io/job": job, "swarmapply.io/task": name},
        },
        "spec": spec,
        "status": status,
    }


def job(name: str, tasks: dict[str, int]) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "tasks": [
                {"name": t, "image": "busybox", "cores": c, "memory": 64 * MI}
                for t, c in tasks.items()
            ],
            "priority": 0,
        },
    }


def migration(
    name: str,
    entries: list[Object],
    *,
    to: str | None = None,
    phase: str = "Pending",
    created: str = "2027-01-15T08:01:00Z",
) -> Object:
    spec: Object = {"task": str(entries[0]["task"]), "mode": "cold"}
    if to is not None:
        spec["toNode"] = to
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Migration",
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": spec,
        "status": {"phase": phase, "tasks": entries},
    }


def entry(name: str, source: str, cpuset: str, memory: int = 64 * MI) -> Object:
    return {"task": name, "sourceNode": source, "sourceCpuset": cpuset, "memory": memory}


def targeted(e: Object, target: str, cpuset: str) -> Object:
    return {**e, "targetNode": target, "targetCpuset": cpuset}


# -- resize ---------------------------------------------------------------------------------------


def test_resize_needed_compares_the_spec_with_what_is_held() -> None:
    assert not resize_needed(task("a", 2, node_name="n1", cpuset="0-1"))
    assert resize_needed(task("a", 3, node_name="n1", cpuset="0-1"))
    assert resize_needed(task("a", 2, node_name="n1", cpuset="0-1", held_memory=32 * MI))
    assert not resize_needed(task("a", 2, node_name="n1", cpuset="0-1", pinned="0-1"))
    assert resize_needed(task("a", 2, node_name="n1", cpuset="0-1", pinned="1-2"))
    assert not resize_needed(task("a", 3))  # not bound
    assert not resize_needed(task("a", 3, node_name="n1", cpuset="0-1", phase="Succeeded"))


def test_grow_keeps_the_old_cores_and_adds_the_lowest_free() -> None:
    tasks = [
        task("a", 3, node_name="n1", cpuset="2"),
        task("b", 1, node_name="n1", cpuset="0"),
    ]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1", 6)], tasks)
    assert resizes == [
        Resize("a", "n1", "1-3", 64 * MI, "resized on node n1: cores 2 -> 1-3, memory 64Mi -> 64Mi")
    ]
    assert waiting == []
    assert sorted(use.cores["n1"]) == [0, 1, 2, 3]
    assert use.conflicts == []


def test_shrink_keeps_the_lowest_cores_and_frees_the_rest() -> None:
    tasks = [task("a", 2, node_name="n1", cpuset="1-3", memory=32 * MI, held_memory=64 * MI)]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1")], tasks)
    assert resizes == [
        Resize(
            "a", "n1", "1-2", 32 * MI, "resized on node n1: cores 1-3 -> 1-2, memory 64Mi -> 32Mi"
        )
    ]
    assert waiting == []
    assert (sorted(use.cores["n1"]), use.memory["n1"]) == ([1, 2], 32 * MI)


def test_a_pinned_cpuset_is_taken_when_free() -> None:
    tasks = [
        task("a", node_name="n1", cpuset="0", pinned="2-3"),
        task("b", node_name="n1", cpuset="1"),
    ]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1")], tasks)
    assert [(r.task, r.cpuset) for r in resizes] == [("a", "2-3")]
    assert waiting == []
    assert sorted(use.cores["n1"]) == [1, 2, 3]


def test_a_pinned_cpuset_may_keep_cores_the_task_holds() -> None:
    tasks = [task("a", node_name="n1", cpuset="0-1", pinned="1-2")]
    resizes, waiting = plan_resizes(usage(tasks), [node("n1")], tasks)
    assert [(r.task, r.cpuset) for r in resizes] == [("a", "1-2")]
    assert waiting == []


def test_a_pinned_cpuset_held_by_another_task_waits() -> None:
    tasks = [
        task("a", node_name="n1", cpuset="0", pinned="0,2-3"),
        task("b", node_name="n1", cpuset="2"),
    ]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1")], tasks)
    assert resizes == []
    assert waiting == [
        ResizeWaiting("a", "cannot resize task a: cores 2 on node n1 are held by other tasks")
    ]
    assert sorted(use.cores["n1"]) == [0, 2]


def test_a_pinned_cpuset_not_on_the_node_waits() -> None:
    tasks = [task("a", node_name="n1", cpuset="0", pinned="3-5")]
    resizes, waiting = plan_resizes(usage(tasks), [node("n1")], tasks)
    assert resizes == []
    assert waiting == [ResizeWaiting("a", "cannot resize task a: node n1 has no cores 4-5")]


def test_growth_beyond_the_free_cores_waits() -> None:
    tasks = [task("a", 4, node_name="n1", cpuset="0"), task("b", 2, node_name="n1", cpuset="1-2")]
    resizes, waiting = plan_resizes(usage(tasks), [node("n1")], tasks)
    assert resizes == []
    assert waiting == [
        ResizeWaiting(
            "a",
            "cannot resize task a: task a needs 3 more cores on node n1, which has 1 free",
        )
    ]


def test_memory_growth_that_does_not_fit_waits_and_keeps_what_it_has() -> None:
    tasks = [
        task("a", node_name="n1", cpuset="0", memory=GI, held_memory=512 * MI),
        task("b", node_name="n1", cpuset="1", memory=256 * MI),
    ]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1", memory=GI)], tasks)
    assert resizes == []
    assert waiting == [
        ResizeWaiting(
            "a",
            "cannot resize task a: task a needs 512Mi more memory on node n1, which has 256Mi free",
        )
    ]
    assert use.memory["n1"] == 768 * MI


def test_memory_only_growth_that_fits() -> None:
    tasks = [task("a", node_name="n1", cpuset="0", memory=GI, held_memory=512 * MI)]
    use = usage(tasks)
    resizes, _ = plan_resizes(use, [node("n1", memory=GI)], tasks)
    assert resizes == [
        Resize("a", "n1", "0", GI, "resized on node n1: cores 0 -> 0, memory 512Mi -> 1Gi")
    ]
    assert use.memory["n1"] == GI


def test_a_task_being_migrated_is_not_resized() -> None:
    moving = task("a", 2, node_name="n1", cpuset="0")
    moving["status"]["migration"] = {"name": "m1", "step": "Stop", "node": "n1"}
    resizes, waiting = plan_resizes(usage([moving]), [node("n1")], [moving])
    assert (resizes, waiting) == ([], [])


def test_tasks_that_are_unbound_finished_or_on_unknown_nodes_are_not_resized() -> None:
    tasks = [
        task("a", 2),
        task("b", 2, node_name="n1", cpuset="0", phase="Failed"),
        task("c", 2, node_name="gone", cpuset="0"),
    ]
    assert plan_resizes(usage(tasks), [node("n1")], tasks) == ([], [])


def test_a_later_resize_in_the_same_pass_sees_the_cores_taken_and_freed() -> None:
    tasks = [
        task("a", 1, node_name="n1", cpuset="0-2"),  # shrinks to 0: frees 1-2
        task("b", 2, node_name="n1", cpuset="3"),  # grows into 1
        task("c", 3, node_name="n1", cpuset="4"),  # wants 2 more: only 2 is left... and 5
        task("d", 2, node_name="n1", cpuset="6"),  # wants 1 more: nothing is left
    ]
    use = usage(tasks)
    resizes, waiting = plan_resizes(use, [node("n1", 7)], tasks)
    assert [(r.task, r.cpuset) for r in resizes] == [("a", "0"), ("b", "1,3"), ("c", "2,4-5")]
    assert waiting == [
        ResizeWaiting(
            "d", "cannot resize task d: task d needs 1 more core on node n1, which has 0 free"
        )
    ]
    assert sorted(use.cores["n1"]) == list(range(7))
    assert use.conflicts == []


# -- reservations ---------------------------------------------------------------------------------


def crowded() -> tuple[list[Object], list[Object]]:
    """n1 (the source) would be the best fit for a 2-core task; n2 has 3 free, n3 has 4."""
    nodes = [node("n1", 8), node("n2"), node("n3")]
    tasks = [
        task("a", 2, node_name="n1", cpuset="0-1"),
        task("x", 4, node_name="n1", cpuset="2-5"),
        task("y", 1, node_name="n2", cpuset="0", job="other"),
    ]
    return nodes, tasks


def test_pending_migrations_are_those_without_targets_oldest_first() -> None:
    e = entry("a", "n1", "0-1")
    newer = migration("m0", [e], created="2027-01-15T08:02:00Z")
    older = migration("m9", [e], created="2027-01-15T08:01:00Z")
    reserved = migration("m5", [targeted(e, "n2", "0-1")])
    starting = migration("m6", [e], phase="Starting")
    empty = migration("m7", [e])
    empty["status"]["tasks"] = []
    found = pending_migrations([newer, reserved, older, starting, empty])
    assert [m["metadata"]["name"] for m in found] == ["m9", "m0"]


def test_a_reservation_picks_a_node_other_than_the_source() -> None:
    nodes, tasks = crowded()
    use = usage(tasks)
    m = migration("m1", [entry("a", "n1", "0-1")])
    reservations, failures = plan_reservations(use, nodes, tasks, [m], STRATEGY)
    assert failures == []
    assert reservations == [
        Reservation(
            "m1", (targeted(entry("a", "n1", "0-1"), "n2", "1-2"),), "target reserved on n2"
        )
    ]
    assert sorted(use.cores["n2"]) == [0, 1, 2]
    assert use.memory["n2"] == 128 * MI
    assert [(h.name, h.migration) for h in use.holders["n2"]] == [("y", None), ("a", "m1")]
    assert m["status"]["tasks"] == [entry("a", "n1", "0-1")]  # the input is not changed


def test_a_reservation_honours_to_node() -> None:
    nodes, tasks = crowded()
    m = migration("m1", [entry("a", "n1", "0-1")], to="n3")
    reservations, failures = plan_reservations(usage(tasks), nodes, tasks, [m], STRATEGY)
    assert failures == []
    assert [r.tasks for r in reservations] == [(targeted(entry("a", "n1", "0-1"), "n3", "0-1"),)]


@pytest.mark.parametrize(
    ("to", "message"),
    [("n1", "node n1 is the task's own node"), ("n9", "node n9 is not a known node")],
)
def test_a_to_node_that_is_the_source_or_unknown_fails(to: str, message: str) -> None:
    nodes, tasks = crowded()
    use = usage(tasks)
    m = migration("m1", [entry("a", "n1", "0-1")], to=to)
    assert plan_reservations(use, nodes, tasks, [m], STRATEGY) == (
        [],
        [Unreservable("m1", message)],
    )
    assert sorted(use.holders) == ["n1", "n2"]
    assert [h.migration for hs in use.holders.values() for h in hs] == [None, None, None]


def test_a_to_node_that_is_not_ready_fails_with_the_placement_reason() -> None:
    nodes, tasks = crowded()
    nodes[2] = node("n3", ready=False)
    m = migration("m1", [entry("a", "n1", "0-1")], to="n3")
    assert plan_reservations(usage(tasks), nodes, tasks, [m], STRATEGY) == (
        [],
        [
            Unreservable(
                "m1", "no target: 0/1 nodes can run task a of job migration m1: 1 is not Ready"
            )
        ],
    )


def test_a_job_migration_is_placed_as_a_gang() -> None:
    nodes = [node("n1"), node("n2"), node("n3", 2)]
    tasks = [task("a", 2, node_name="n1", cpuset="0-1"), task("b", 2, node_name="n1", cpuset="2-3")]
    m = migration("m1", [entry("a", "n1", "0-1"), entry("b", "n1", "2-3")])
    use = usage(tasks)
    reservations, failures = plan_reservations(use, nodes, tasks, [m], STRATEGY)
    assert failures == []
    assert reservations == [
        Reservation(
            "m1",
            (
                targeted(entry("a", "n1", "0-1"), "n3", "0-1"),
                targeted(entry("b", "n1", "2-3"), "n2", "0-1"),
            ),
            "target reserved on n2, n3",
        )
    ]
    assert use.conflicts == []


def test_a_job_migration_that_fits_only_in_part_reserves_nothing() -> None:
    nodes = [node("n1"), node("n2", 3)]
    tasks = [task("a", 2, node_name="n1", cpuset="0-1"), task("b", 2, node_name="n1", cpuset="2-3")]
    m = migration("m1", [entry("a", "n1", "0-1"), entry("b", "n1", "2-3")])
    use = usage(tasks)
    reservations, [failure] = plan_reservations(use, nodes, tasks, [m], STRATEGY)
    assert reservations == []
    assert failure.migration == "m1"
    assert failure.message.startswith("no target: ")
    assert "each fits alone but not all at once" in failure.message
    assert "n2" not in use.holders or use.holders["n2"] == []


def test_not_enough_room_is_unreservable_with_the_placement_reason() -> None:
    nodes = [node("n1"), node("n2", 1)]
    tasks = [task("a", 2, node_name="n1", cpuset="0-1")]
    m = migration("m1", [entry("a", "n1", "0-1")])
    assert plan_reservations(usage(tasks), nodes, tasks, [m], STRATEGY) == (
        [],
        [
            Unreservable(
                "m1",
                "no target: 0/1 nodes can run task a of job migration m1: "
                "1 has too few cores (need 2)",
            )
        ],
    )


def test_memory_is_reserved_as_held() -> None:
    nodes = [node("n1"), node("n2", memory=GI)]
    tasks = [task("a", node_name="n1", cpuset="0", memory=2 * GI)]
    m = migration("m1", [entry("a", "n1", "0", memory=2 * GI)])
    [], [failure] = plan_reservations(usage(tasks), nodes, tasks, [m], STRATEGY)
    assert failure == Unreservable(
        "m1",
        "no target: 0/1 nodes can run task a of job migration m1: 1 has too little "
        "memory (need 2Gi)",
    )


def test_a_migration_of_a_task_no_longer_running_is_unreservable() -> None:
    nodes = [node("n1"), node("n2")]
    done = task("a", node_name="n1", cpuset="0", phase="Succeeded")
    m = migration("m1", [entry("a", "n1", "0")])
    assert plan_reservations(usage([done]), nodes, [done], [m], STRATEGY) == (
        [],
        [Unreservable("m1", "task a is no longer running")],
    )
    [], [missing] = plan_reservations(usage([]), nodes, [], [m], STRATEGY)
    assert missing.migration == "m1" and "no longer running" in missing.message


def test_a_reservation_is_visible_to_the_next_migration_in_the_same_pass() -> None:
    nodes = [node("n1"), node("n2"), node("n3", 2)]
    tasks = [task("a", 2, node_name="n1", cpuset="0-1"), task("b", 2, node_name="n1", cpuset="2-3")]
    first = migration("m2", [entry("a", "n1", "0-1")], to="n2", created="2027-01-15T08:01:00Z")
    second = migration("m1", [entry("b", "n1", "2-3")], to="n2", created="2027-01-15T08:02:00Z")
    use = usage(tasks)
    reservations, failures = plan_reservations(use, nodes, tasks, [second, first], STRATEGY)
    assert [(r.migration, r.tasks[0]["targetCpuset"]) for r in reservations] == [
        ("m2", "0-1"),
        ("m1", "2-3"),
    ]
    assert failures == []
    third = migration("m3", [entry("a", "n1", "0-1")], to="n2", created="2027-01-15T08:03:00Z")
    assert plan_reservations(use, nodes, tasks, [third], STRATEGY) == (
        [],
        [
            Unreservable(
                "m3",
                "no target: 0/1 nodes can run task a of job migration m3: "
                "1 has too few free cores (need 2)",
            )
        ],
    )


# -- in a scheduling pass -------------------------------------------------------------------------


def test_plan_pass_does_not_give_reserved_cores_to_a_queued_job() -> None:
    nodes = [node("n1", 2), node("n2", 2)]
    tasks = [
        task("web-a", 2, node_name="n1", cpuset="0-1"),
        task("new-a", 2, job="new", created="2027-01-15T07:00:00Z"),
    ]
    m = migration("m1", [entry("web-a", "n1", "0-1")])
    plan = plan_pass(
        nodes, tasks, [job("web", {"web-a": 2}), job("new", {"new-a": 2})],
        SchedulerSettings(), T0, [m],
    )  # fmt: skip
    assert [(r.migration, r.tasks[0]["targetNode"]) for r in plan.reservations] == [("m1", "n2")]
    assert plan.unreservable == ()
    assert plan.bindings == ()
    assert [w.job for w in plan.waiting] == ["new"]
    assert plan.conflicts == ()
    assert plan.allocations["n2"]["tasks"] == [
        {"task": "web-a", "cpuset": "0-1", "job": "web", "memory": 64 * MI, "migration": "m1"}
    ]


def test_plan_pass_gives_a_failed_reservation_no_cores() -> None:
    nodes = [node("n1", 2), node("n2", 2)]
    tasks = [
        task("web-a", 2, node_name="n1", cpuset="0-1"),
        task("new-a", 2, job="new"),
    ]
    m = migration("m1", [entry("web-a", "n1", "0-1")], to="n1")
    plan = plan_pass(
        nodes, tasks, [job("web", {"web-a": 2}), job("new", {"new-a": 2})],
        SchedulerSettings(), T0, [m],
    )  # fmt: skip
    assert plan.unreservable == (Unreservable("m1", "node n1 is the task's own node"),)
    assert plan.bindings == (Binding("new", "new-a", "n2", "0-1", 64 * MI),)


def test_plan_pass_keeps_the_source_held_after_the_move() -> None:
    nodes = [node("n1", 2), node("n2", 2)]
    moved = task("web-a", 2, node_name="n2", cpuset="0-1")
    m = migration("m1", [targeted(entry("web-a", "n1", "0-1"), "n2", "0-1")], phase="Starting")
    plan = plan_pass(
        nodes, [moved, task("new-a", 2, job="new")],
        [job("web", {"web-a": 2}), job("new", {"new-a": 2})], SchedulerSettings(), T0, [m],
    )  # fmt: skip
    assert plan.bindings == ()
    assert plan.allocations["n1"]["tasks"] == [
        {"task": "web-a", "cpuset": "0-1", "job": "web", "memory": 64 * MI, "migration": "m1"}
    ]
    assert plan.allocations["n2"]["tasks"] == [
        {"task": "web-a", "cpuset": "0-1", "job": "web", "memory": 64 * MI}
    ]


def test_a_task_in_a_pending_migration_is_not_resized() -> None:
    nodes = [node("n1"), node("n2")]
    shrinking = task("web-a", 1, node_name="n1", cpuset="0-3")  # spec now asks for 1 core
    m = migration("m1", [entry("web-a", "n1", "0-3")])
    plan = plan_pass(nodes, [shrinking], [job("web", {"web-a": 1})], SchedulerSettings(), T0, [m])
    assert plan.resizes == ()


def test_two_pending_migrations_of_one_task_reserve_once() -> None:
    first = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Migration",
        "metadata": {"name": "m1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"task": "j-a"},
        "status": {
            "phase": "Pending",
            "tasks": [{"task": "j-a", "sourceNode": "n1", "sourceCpuset": "0", "memory": 0}],
        },
    }
    second = {**first, "metadata": {"name": "m2", "creationTimestamp": "2026-01-01T00:00:01Z"}}
    task_a = {
        "metadata": {"name": "j-a"},
        "spec": {"job": "j", "cores": 1},
        "status": {"phase": "Running", "node": "n1", "cpuset": "0", "memory": 0},
    }
    nodes = [node("n1"), node("n2")]
    use = usage([task_a], [first, second])
    reservations, failures = plan_reservations(use, nodes, [task_a], [first, second], "best-fit")
    assert [r.migration for r in reservations] == ["m1"]
    assert [(f.migration, f.message) for f in failures] == [
        ("m2", "task j-a (by m1) is being moved already")
    ]


def test_a_pin_counts_only_on_its_own_node() -> None:
    spec = {"job": "j", "cores": 2, "cpuset": "0-1", "node": "n1"}
    here = {"metadata": {"name": "a"}, "spec": spec, "status": {"node": "n1", "cpuset": "0-1"}}
    moved = {"metadata": {"name": "a"}, "spec": spec, "status": {"node": "n2", "cpuset": "4-5"}}
    assert wanted(here) == (frozenset({0, 1}), 0)
    assert wanted(moved) == (2, 0)
