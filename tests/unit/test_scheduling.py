"""The pure scheduling pass: store-shaped dicts in, bindings, waits and evictions out."""

from __future__ import annotations

from typing import Any

from swarmapply.api.store.lifecycle import parse_time
from swarmapply.controllers.scheduling import (
    Binding,
    Eviction,
    Waiting,
    allocation_view,
    cluster_snapshot,
    is_live,
    plan_pass,
)
from swarmapply.controllers.settings import SchedulerSettings
from swarmapply.controllers.usage import Hold

Object = dict[str, Any]
MI = 1024**2
GI = 1024**3
T0 = 1_800_000_000.0  # "now" for the passes below; creation times are before it
DEFAULT = SchedulerSettings()


def node(
    name: str,
    cores: int = 4,
    memory: int = 8 * GI,
    *,
    ready: bool = True,
    unschedulable: bool = False,
) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": {"cores": cores, "memory": memory, "coreIds": list(range(cores))},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def job(name: str, tasks: dict[str, int], *, priority: int = 0, **meta: Any) -> Object:
    """A Job whose ``spec.tasks`` are ``{task name: cores}`` (64Mi each)."""
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name, **meta},
        "spec": {
            "tasks": [
                {"name": t, "image": "busybox", "cores": c, "memory": 64 * MI}
                for t, c in tasks.items()
            ],
            "priority": priority,
        },
    }


def task(
    job_name: str,
    name: str,
    cores: int = 1,
    *,
    created: str = "2027-01-15T08:00:00Z",
    node_name: str | None = None,
    cpuset: str | None = None,
    phase: str | None = None,
    memory: int = 64 * MI,
    object_name: str | None = None,
) -> Object:
    """A Task of ``job_name``; bound when ``node_name`` and ``cpuset`` are given."""
    status: Object = {}
    if phase:
        status["phase"] = phase
    if node_name is not None:
        status.update(node=node_name, cpuset=cpuset, memory=memory)
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Task",
        "metadata": {
            "name": object_name or f"{job_name}-{name}",
            "creationTimestamp": created,
            "labels": {"swarmapply.io/job": job_name, "swarmapply.io/task": name},
        },
        "spec": {"job": job_name, "image": "busybox", "cores": cores, "memory": memory},
        "status": status,
    }


# -- bindings and waits ---------------------------------------------------------------------------


def test_binds_every_task_of_a_fitting_job() -> None:
    plan = plan_pass(
        [node("n1"), node("n2")],
        [task("web", "a", 2), task("web", "b", 3)],
        [job("web", {"a": 2, "b": 3})],
        DEFAULT,
        T0,
    )
    assert plan.waiting == () and plan.evictions == () and plan.conflicts == ()
    assert sorted(plan.bindings, key=lambda b: b.task) == [
        Binding("web", "web-a", "n2", "0-1", 64 * MI),
        Binding("web", "web-b", "n1", "0-2", 64 * MI),
    ]


def test_a_job_that_does_not_fit_waits_whole_with_its_pending_tasks_and_reason() -> None:
    plan = plan_pass(
        [node("n1"), node("n2"), node("n3")],
        [task("big", "b", 5), task("big", "a", 1)],
        [job("big", {"a": 1, "b": 5})],
        DEFAULT,
        T0,
    )
    assert plan.bindings == ()
    assert plan.waiting == (
        Waiting(
            "big",
            ("big-a", "big-b"),
            "0/3 nodes can run task big-b of job big: 3 have too few cores (need 5)",
        ),
    )
    assert all(view["tasks"] == [] for view in plan.allocations.values())


def test_bound_tasks_keep_their_cores_and_finished_ones_free_theirs() -> None:
    tasks = [
        task("old", "a", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("done", "a", 2, node_name="n1", cpuset="2-3", phase="Succeeded"),
        task("new", "a", 2),
    ]
    jobs = [job("old", {"a": 2}), job("done", {"a": 2}), job("new", {"a": 2})]
    plan = plan_pass([node("n1")], tasks, jobs, DEFAULT, T0)
    assert plan.bindings == (Binding("new", "new-a", "n1", "2-3", 64 * MI),)
    assert plan.waiting == ()
    assert plan.allocations["n1"] == {
        "cores": 4,
        "memory": 128 * MI,
        "cpuset": "0-3",
        "tasks": [
            {"task": "new-a", "cpuset": "2-3", "job": "new", "memory": 64 * MI},
            {"task": "old-a", "cpuset": "0-1", "job": "old", "memory": 64 * MI},
        ],
    }


def test_only_ready_schedulable_nodes_are_used() -> None:
    nodes = [node("n1", ready=False), node("n2", unschedulable=True), node("n3", cores=2)]
    tasks = [task("a", "x", 2), task("b", "x", 2)]
    plan = plan_pass(nodes, tasks, [job("a", {"x": 2}), job("b", {"x": 2})], DEFAULT, T0)
    assert [(b.task, b.node) for b in plan.bindings] == [("a-x", "n3")]
    [wait] = plan.waiting
    assert wait.job == "b"
    assert wait.message == (
        "0/3 nodes can run task b-x of job b: 1 has too few free cores (need 2), "
        "1 is not Ready, 1 is unschedulable"
    )


def test_a_job_whose_tasks_are_not_all_created_is_left_alone() -> None:
    plan = plan_pass([node("n1")], [task("web", "a")], [job("web", {"a": 1, "b": 1})], DEFAULT, T0)
    assert plan.bindings == () and plan.waiting == ()


def test_a_job_being_deleted_is_not_placed() -> None:
    doomed = job("web", {"a": 1}, deletionTimestamp="2027-01-15T08:00:00Z")
    plan = plan_pass([node("n1")], [task("web", "a")], [doomed], DEFAULT, T0)
    assert plan.bindings == () and plan.waiting == ()


def test_tasks_without_a_job_object_are_not_placed() -> None:
    plan = plan_pass([node("n1")], [task("ghost", "a")], [], DEFAULT, T0)
    assert plan.bindings == () and plan.waiting == ()


def test_a_replaced_task_is_placed_alone_next_to_its_bound_siblings() -> None:
    # The whole job (2 + 2 cores) would not fit in the 2 free cores; its pending task does.
    tasks = [
        task("web", "a", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("web", "b", 2),
        task("other", "a", 2, node_name="n2", cpuset="0-1", phase="Running"),
    ]
    jobs = [job("web", {"a": 2, "b": 2}), job("other", {"a": 2})]
    plan = plan_pass([node("n1", 2), node("n2", 4)], tasks, jobs, DEFAULT, T0)
    assert plan.bindings == (Binding("web", "web-b", "n2", "2-3", 64 * MI),)


def test_a_replacement_attempt_is_placed_after_a_sibling_succeeded() -> None:
    tasks = [
        task("web", "a", 1, node_name="n1", cpuset="0", phase="Succeeded"),
        task("web", "b", 1, node_name="n1", cpuset="1", phase="Failed"),
        task("web", "b", 1, object_name="web-b-attempt-1"),
    ]
    plan = plan_pass([node("n1")], tasks, [job("web", {"a": 1, "b": 1})], DEFAULT, T0)
    assert [b.task for b in plan.bindings] == ["web-b-attempt-1"]


def test_queue_is_fifo_by_creation_of_the_oldest_pending_task() -> None:
    tasks = [
        task("a-late", "x", 4, created="2027-01-15T08:00:05Z"),
        task("b-early", "x", 4, created="2027-01-15T08:00:01Z"),
    ]
    jobs = [job("a-late", {"x": 4}), job("b-early", {"x": 4})]
    plan = plan_pass([node("n1")], tasks, jobs, DEFAULT, T0)
    assert [b.job for b in plan.bindings] == ["b-early"]
    assert [w.job for w in plan.waiting] == ["a-late"]


def test_priority_strategy_places_the_higher_priority_job_first() -> None:
    tasks = [
        task("low", "x", 4, created="2027-01-15T08:00:01Z"),
        task("high", "x", 4, created="2027-01-15T08:00:09Z"),
    ]
    jobs = [job("low", {"x": 4}, priority=1), job("high", {"x": 4}, priority=9)]
    plan = plan_pass([node("n1")], tasks, jobs, SchedulerSettings(strategy="priority"), T0)
    assert [b.job for b in plan.bindings] == ["high"]
    assert plan.evictions == ()


def test_a_job_strategy_overrides_the_cluster_strategy() -> None:
    nodes = [node("n1", 4), node("n2", 4)]
    running = task("r", "x", 2, node_name="n2", cpuset="0-1", phase="Running")
    first = job("web", {"a": 1})
    first["spec"]["placement"] = {"strategy": "first-fit"}
    jobs = [job("r", {"x": 2}), first]
    plan = plan_pass(nodes, [running, task("web", "a")], jobs, DEFAULT, T0)
    assert [(b.task, b.node) for b in plan.bindings] == [("web-a", "n1")]
    plain = plan_pass(
        nodes, [running, task("web", "a")], [jobs[0], job("web", {"a": 1})], DEFAULT, T0
    )
    assert [(b.task, b.node) for b in plain.bindings] == [("web-a", "n2")]


def test_starvation_limit_holds_later_jobs_back() -> None:
    tasks = [
        task("run", "x", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("big", "x", 4, created="2027-01-15T08:00:00Z"),
        task("small", "x", 2, created="2027-01-15T08:00:30Z"),
    ]
    jobs = [job("run", {"x": 2}), job("big", {"x": 4}), job("small", {"x": 2})]
    settings = SchedulerSettings(starvation_seconds=60)
    start = parse_time("2027-01-15T08:00:00Z")
    assert start is not None
    soon = plan_pass([node("n1")], tasks, jobs, settings, start.timestamp() + 59)
    assert [b.job for b in soon.bindings] == ["small"]
    late = plan_pass([node("n1")], tasks, jobs, settings, start.timestamp() + 61)
    assert late.bindings == ()
    assert {w.job: w.message for w in late.waiting}["small"].startswith(
        "held back: job big has waited longer than the starvation limit of 60s"
    )


# -- conflicts and the allocation view ------------------------------------------------------------


def test_overlapping_bound_tasks_are_reported_as_conflicts() -> None:
    tasks = [
        task("a", "x", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("b", "x", 2, node_name="n1", cpuset="1-2", phase="Scheduled"),
        task("c", "x", 1, node_name="n1", cpuset="1", phase="Failed"),  # finished: no claim
    ]
    jobs = [job("a", {"x": 2}), job("b", {"x": 2}), job("c", {"x": 1})]
    plan = plan_pass([node("n1")], tasks, jobs, DEFAULT, T0)
    assert plan.conflicts == ("node n1: cores 1 are held by more than one task (one is b-x)",)
    assert plan.allocations["n1"]["cpuset"] == "0-2"
    assert [t["task"] for t in plan.allocations["n1"]["tasks"]] == ["a-x", "b-x"]


def test_allocation_view_totals_and_core_map_in_natural_task_order() -> None:
    t2 = task("j", "t-2", 2)
    t10 = task("j", "t-10", 1)
    view = allocation_view([Hold(t10, frozenset({5}), 10), Hold(t2, frozenset({1, 0}), 20)])
    assert view == {
        "cores": 3,
        "memory": 30,
        "cpuset": "0-1,5",
        "tasks": [
            {"task": "j-t-2", "cpuset": "0-1", "job": "j", "memory": 20},
            {"task": "j-t-10", "cpuset": "5", "job": "j", "memory": 10},
        ],
    }
    assert allocation_view([]) == {"cores": 0, "memory": 0, "cpuset": "", "tasks": []}


def test_allocations_cover_every_node_including_empty_ones() -> None:
    plan = plan_pass([node("n1"), node("n2", ready=False)], [], [], DEFAULT, T0)
    assert set(plan.allocations) == {"n1", "n2"}
    assert plan.allocations["n2"]["cores"] == 0


def test_cluster_snapshot_subtracts_live_bound_tasks() -> None:
    tasks = [
        task("a", "x", 2, node_name="n1", cpuset="0-1", phase="Running", memory=GI),
        task("b", "x", 1, node_name="n1", cpuset="3", phase="Succeeded", memory=GI),
    ]
    [n1] = cluster_snapshot([node("n1")], tasks)
    assert n1.free_cores == frozenset({2, 3})
    assert n1.free_memory == 7 * GI
    assert n1.ready and n1.schedulable


def test_is_live() -> None:
    assert is_live({"status": {"phase": "Running"}}) and is_live({})
    assert not is_live({"status": {"phase": "Succeeded"}})
    assert not is_live({"status": {"phase": "Failed"}})


# -- preemption -----------------------------------------------------------------------------------

PREEMPT = SchedulerSettings(strategy="priority", preemption=True)


def _full_cluster() -> tuple[list[Object], list[Object], list[Object]]:
    """n1 holds two 2-core jobs (priority 0), n2 one 4-core job (priority 1)."""
    nodes = [node("n1"), node("n2")]
    tasks = [
        task("lo-a", "x", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("lo-b", "x", 2, node_name="n1", cpuset="2-3", phase="Running"),
        task("lo-c", "x", 2, node_name="n2", cpuset="0-1", phase="Running"),
        task("lo-c", "y", 2, node_name="n2", cpuset="2-3", phase="Running"),
    ]
    jobs = [
        job("lo-a", {"x": 2}),
        job("lo-b", {"x": 2}),
        job("lo-c", {"x": 2, "y": 2}, priority=1),
    ]
    return nodes, tasks, jobs


def test_preemption_evicts_one_whole_lower_priority_job() -> None:
    nodes, tasks, jobs = _full_cluster()
    tasks.append(task("hi", "x", 4))
    jobs.append(job("hi", {"x": 4}, priority=5))
    plan = plan_pass(nodes, tasks, jobs, PREEMPT, T0)
    assert plan.evictions == (
        Eviction("lo-c", ("lo-c-x", "lo-c-y"), "hi", "preempted by job hi (priority 5, above 1)"),
    )
    assert plan.bindings == (Binding("hi", "hi-x", "n2", "0-3", 64 * MI),)
    assert plan.waiting == ()
    assert [t["task"] for t in plan.allocations["n2"]["tasks"]] == ["hi-x"]
    assert [t["task"] for t in plan.allocations["n1"]["tasks"]] == ["lo-a-x", "lo-b-x"]


def test_without_preemption_nothing_is_evicted() -> None:
    nodes, tasks, jobs = _full_cluster()
    tasks.append(task("hi", "x", 4))
    jobs.append(job("hi", {"x": 4}, priority=5))
    plan = plan_pass(nodes, tasks, jobs, SchedulerSettings(strategy="priority"), T0)
    assert plan.evictions == () and plan.bindings == ()
    assert [w.job for w in plan.waiting] == ["hi"]


def test_preemption_never_evicts_equal_or_higher_priority() -> None:
    nodes, tasks, jobs = _full_cluster()
    tasks.append(task("eq", "x", 4))
    jobs.append(job("eq", {"x": 4}, priority=1))  # lo-c has 1 too; lo-a/lo-b are on n1 (2 each)
    plan = plan_pass(nodes, tasks, jobs, PREEMPT, T0)
    # Only the two priority-0 jobs on n1 together free 4 cores of one node.
    assert sorted(e.job for e in plan.evictions) == ["lo-a", "lo-b"]
    assert [(b.task, b.node) for b in plan.bindings] == [("eq-x", "n1")]
    tasks[-1] = task("top", "x", 4)
    jobs[-1] = job("top", {"x": 4}, priority=0)
    plan = plan_pass(nodes, tasks, jobs, PREEMPT, T0)
    assert plan.evictions == () and [w.job for w in plan.waiting] == ["top"]


def test_preemption_runs_for_one_waiting_job_per_pass() -> None:
    nodes, tasks, jobs = _full_cluster()
    tasks += [task("hi1", "x", 4, created="2027-01-15T08:00:01Z"), task("hi2", "x", 4)]
    jobs += [job("hi1", {"x": 4}, priority=5), job("hi2", {"x": 4}, priority=4)]
    plan = plan_pass(nodes, tasks, jobs, PREEMPT, T0)
    assert {e.by for e in plan.evictions} == {"hi1"}
    assert [b.job for b in plan.bindings] == ["hi1"]
    assert [w.job for w in plan.waiting] == ["hi2"]


def test_preemption_is_not_used_when_no_eviction_helps() -> None:
    nodes, tasks, jobs = _full_cluster()
    tasks.append(task("huge", "x", 8))
    jobs.append(job("huge", {"x": 8}, priority=9))
    plan = plan_pass(nodes, tasks, jobs, PREEMPT, T0)
    assert plan.evictions == () and plan.bindings == ()
    assert plan.waiting[0].message.startswith("0/2 nodes can run task huge-x of job huge")


def test_a_victim_is_evicted_whole_including_a_task_placed_in_the_same_pass() -> None:
    # lo holds cores 0-1 and has a pending replaced task lo-y; top (priority 9) holds 2-3.
    tasks = [
        task("lo", "x", 2, node_name="n1", cpuset="0-1", phase="Running"),
        task("lo", "y", 1),
        task("top", "x", 2, node_name="n1", cpuset="2-3", phase="Running"),
        task("hi", "x", 3),
    ]
    jobs = [
        job("lo", {"x": 2, "y": 1}),
        job("top", {"x": 2}, priority=9),
        job("hi", {"x": 3}, priority=5),
    ]
    plan = plan_pass([node("n1", 6)], tasks, jobs, PREEMPT, T0)
    [eviction] = plan.evictions
    assert eviction.job == "lo"
    assert "lo" not in {b.job for b in plan.bindings}
    assert set(eviction.tasks) == {"lo-x", "lo-y"}
