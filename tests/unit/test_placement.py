"""The pure placement core: strategies, gang placement, pins, reasons, invariants."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmapply.api.names import natural_key
from swarmapply.controllers.placement import (
    STRATEGIES,
    Decision,
    JobRequest,
    NodeState,
    TaskRequest,
    order_jobs,
    schedule,
)
from swarmapply.controllers.placement_index import pick_cores

GI = 1024**3


def node(
    name: str,
    free: int | Iterable[int],
    total: int = 8,
    memory: int = 16 * GI,
    free_memory: int | None = None,
    ready: bool = True,
    schedulable: bool = True,
) -> NodeState:
    free_cores = frozenset(range(free)) if isinstance(free, int) else frozenset(free)
    return NodeState(
        name,
        frozenset(range(total)),
        free_cores,
        memory,
        memory if free_memory is None else free_memory,
        ready,
        schedulable,
    )


def task(
    name: str,
    cores: int,
    memory: int = 0,
    on: str | None = None,
    cpuset: Iterable[int] | None = None,
) -> TaskRequest:
    return TaskRequest(name, cores, memory, on, None if cpuset is None else frozenset(cpuset))


def job(name: str, *cores: int, **fields: object) -> JobRequest:
    tasks = tuple(task(f"t{i}", c) for i, c in enumerate(cores))
    return JobRequest(name, tasks, **fields)  # type: ignore[arg-type]


def where(decisions: list[Decision]) -> dict[str, list[tuple[str, tuple[int, ...]]] | str]:
    """Maps each job to its (node, cpuset) per task, or to its reason."""
    out: dict[str, list[tuple[str, tuple[int, ...]]] | str] = {}
    for d in decisions:
        if d.placements is None:
            assert d.reason
            out[d.job] = d.reason
        else:
            assert d.reason is None
            out[d.job] = [(p.node, p.cpuset) for p in d.placements]
    return out


# RESTfulSwarm-style: single-task jobs with various core requests, nodes with various free cores.
RS_NODES = [node("n1", 6), node("n2", 2), node("n3", 4)]
RS_QUEUE = [
    job("a", 3, submitted=1),
    job("b", 2, submitted=2),
    job("c", 4, submitted=3),
    job("d", 1, submitted=4),
    job("e", 1, submitted=5),
]


@pytest.mark.parametrize(
    ("strategy", "expected", "order"),
    [
        (
            "first-fit",
            {
                "a": [("n1", (0, 1, 2))],
                "b": [("n1", (3, 4))],
                "c": [("n3", (0, 1, 2, 3))],
                "d": [("n1", (5,))],
                "e": [("n2", (0,))],
            },
            "abcde",
        ),
        (
            "best-fit",
            {
                "a": [("n3", (0, 1, 2))],
                "b": [("n2", (0, 1))],
                "c": [("n1", (0, 1, 2, 3))],
                "d": [("n3", (3,))],
                "e": [("n1", (4,))],
            },
            "abcde",
        ),
        (
            "first-fit-decreasing",
            {
                "c": [("n1", (0, 1, 2, 3))],
                "a": [("n3", (0, 1, 2))],
                "b": [("n1", (4, 5))],
                "d": [("n2", (0,))],
                "e": [("n2", (1,))],
            },
            "cabde",
        ),
        (
            "best-fit-decreasing",
            {
                "c": [("n3", (0, 1, 2, 3))],
                "a": [("n1", (0, 1, 2))],
                "b": [("n2", (0, 1))],
                "d": [("n1", (3,))],
                "e": [("n1", (4,))],
            },
            "cabde",
        ),
        (
            "priority",  # all priorities equal: FIFO, then best-fit
            {
                "a": [("n3", (0, 1, 2))],
                "b": [("n2", (0, 1))],
                "c": [("n1", (0, 1, 2, 3))],
                "d": [("n3", (3,))],
                "e": [("n1", (4,))],
            },
            "abcde",
        ),
    ],
)
def test_restfulswarm_style_strategies(
    strategy: str, expected: dict[str, object], order: str
) -> None:
    decisions = schedule(RS_NODES, RS_QUEUE, strategy)
    assert "".join(d.job for d in decisions) == order
    assert where(decisions) == expected


def test_first_fit_and_best_fit_differ() -> None:
    nodes = [node("n1", 8), node("n2", 2)]
    assert where(schedule(nodes, [job("j", 2)], "first-fit")) == {"j": [("n1", (0, 1))]}
    assert where(schedule(nodes, [job("j", 2)], "best-fit")) == {"j": [("n2", (0, 1))]}


def test_best_fit_ties_go_to_first_node_in_natural_order() -> None:
    nodes = [node("node-10", 4), node("node-2", 4), node("node-1", 6)]
    assert where(schedule(nodes, [job("j", 3)])) == {"j": [("node-2", (0, 1, 2))]}


def test_natural_node_order_for_first_fit() -> None:
    nodes = [node("node-10", 2), node("node-2", 2), node("node-1", 2)]
    queue = [job("a", 2), job("b", 2), job("c", 2)]
    assert where(schedule(nodes, queue, "first-fit")) == {
        "a": [("node-1", (0, 1))],
        "b": [("node-2", (0, 1))],
        "c": [("node-10", (0, 1))],
    }
    assert sorted(["n10", "n9", "m", "n02", "n2"], key=natural_key) == [
        "m",
        "n02",
        "n2",
        "n9",
        "n10",
    ]


def test_job_strategy_overrides_node_choice_only() -> None:
    nodes = [node("n1", 8), node("n2", 2)]
    queue = [job("a", 2, submitted=2), job("b", 2, submitted=1, strategy="first-fit")]
    decisions = schedule(nodes, queue, "best-fit")
    assert [d.job for d in decisions] == ["b", "a"]
    assert where(decisions) == {"b": [("n1", (0, 1))], "a": [("n2", (0, 1))]}


def test_tasks_of_one_job_share_a_node_with_their_own_cores() -> None:
    decisions = schedule([node("n1", 4)], [job("j", 2, 2)])
    assert where(decisions) == {"j": [("n1", (0, 1)), ("n1", (2, 3))]}
    assert [p.task for p in decisions[0].placements or ()] == ["t0", "t1"]


def test_larger_tasks_of_a_job_are_placed_first_but_reported_in_task_order() -> None:
    nodes = [node("n1", 1), node("n2", 4)]
    decisions = schedule(nodes, [job("j", 1, 4)], "first-fit")
    assert where(decisions) == {"j": [("n1", (0,)), ("n2", (0, 1, 2, 3))]}


def test_gang_refused_without_partial_placement_and_next_job_placed() -> None:
    nodes = [node("n1", 4), node("n2", 4)]
    queue = [job("big", 3, 3, 3), job("small", 2, 2), job("rest", 4)]
    out = where(schedule(nodes, queue))
    assert out["small"] == [("n1", (0, 1)), ("n1", (2, 3))]
    assert out["rest"] == [("n2", (0, 1, 2, 3))]  # big's tentative tasks were rolled back
    reason = out["big"]
    assert isinstance(reason, str)
    assert "the job's 3 tasks need 9 cores" in reason
    assert "each fits alone but not all at once" in reason
    assert "task t2 of job big could not be placed after task(s) t0, t1 were" in reason


def test_memory_limits() -> None:
    nodes = [node("n1", 8, free_memory=1 * GI), node("n2", 8, free_memory=4 * GI)]
    queue = [
        JobRequest("a", (task("t", 2, 2 * GI),)),
        JobRequest("b", (task("t", 2, 2 * GI),)),
        JobRequest("c", (task("t", 1, 1 * GI),)),
        JobRequest("d", (task("t", 1, GI // 2),)),
    ]
    out = where(schedule(nodes, queue, "first-fit"))
    assert out["a"] == [("n2", (0, 1))]
    assert out["b"] == [("n2", (2, 3))]
    assert out["c"] == [("n1", (0,))]
    assert out["d"] == "0/2 nodes can run task t of job d: 2 have too little memory (need 512Mi)"
    decision = schedule(nodes, [JobRequest("a", (task("t", 2, 2 * GI),))])[0]
    assert decision.placements is not None
    assert decision.placements[0].memory == 2 * GI


def test_reasons_are_aggregated_per_node() -> None:
    nodes = [
        node("n1", 2),
        node("n2", 3),
        node("n3", 0),
        node("n4", 8, free_memory=GI // 2),
        node("n5", 8, ready=False),
    ]
    out = where(schedule(nodes, [JobRequest("j", (task("t", 4, GI),))]))
    assert out["j"] == (
        "0/5 nodes can run task t of job j: 3 have too few free cores (need 4), "
        "1 has too little memory (need 1Gi), 1 is not Ready"
    )
    nodes = [node("a", 8, schedulable=False), node("b", 8, schedulable=False), node("c", 2, 2)]
    nodes += [node("d", 8, ready=False, schedulable=False)]
    assert where(schedule(nodes, [job("j", 4)]))["j"] == (
        "0/4 nodes can run task t0 of job j: 1 has too few cores (need 4), "
        "1 is not Ready, 2 are unschedulable"
    )
    assert where(schedule([], [job("j", 1)]))["j"] == (
        "0/0 nodes can run task t0 of job j: the cluster has no nodes"
    )


def test_not_ready_and_unschedulable_nodes_are_skipped() -> None:
    nodes = [node("n1", 8, ready=False), node("n2", 8, schedulable=False), node("n3", 8)]
    for strategy in STRATEGIES:
        if strategy != "node":
            assert where(schedule(nodes, [job("j", 1)], strategy)) == {"j": [("n3", (0,))]}


def test_pins() -> None:
    nodes = [node("n1", {0, 1, 2, 5, 6, 7}), node("n2", 2), node("n3", 8, ready=False)]
    queue = [
        JobRequest("node-pin", (task("t", 2, on="n1"),)),
        JobRequest("cpuset-pin", (task("t", 2, on="n1", cpuset={5, 7}),)),
        JobRequest("busy", (task("t", 3, on="n1", cpuset={3, 4, 6}),)),
        JobRequest("taken-earlier", (task("t", 2, on="n1", cpuset={6, 7}),)),
        JobRequest("missing-node", (task("t", 1, on="n9"),)),
        JobRequest("missing-cores", (task("t", 3, on="n2", cpuset={7, 8, 9}),)),
        JobRequest("not-ready", (task("t", 1, on="n3"),)),
        JobRequest("too-few", (task("t", 3, on="n2"),)),
        JobRequest("memory", (task("t", 1, 32 * GI, on="n2"),)),
    ]
    out = where(schedule(nodes, queue, "first-fit"))
    assert out["node-pin"] == [("n1", (0, 1))]
    assert out["cpuset-pin"] == [("n1", (5, 7))]
    assert out["busy"] == "cores 3-4 of node n1 are not free (task t of job busy is pinned to them)"
    assert out["taken-earlier"] == (
        "core 7 of node n1 is not free (task t of job taken-earlier is pinned to it)"
    )
    assert (
        out["missing-node"] == "node n9 does not exist (task t of job missing-node is pinned to it)"
    )
    assert out["missing-cores"] == (
        "cores 8-9 of node n2 do not exist (task t of job missing-cores is pinned to them; "
        "the node has cores 0-7)"
    )
    assert out["not-ready"] == "node n3 is not Ready (task t of job not-ready is pinned to it)"
    assert out["too-few"] == (
        "node n2 has too few free cores (task t of job too-few is pinned to it; need 3, 2 free)"
    )
    assert out["memory"] == (
        "node n2 has too little memory (task t of job memory is pinned to it; need 32Gi, 16Gi free)"
    )


def test_cpuset_pins_are_placed_before_other_tasks_of_the_job() -> None:
    queue = [JobRequest("j", (task("free", 2), task("pinned", 2, on="n1", cpuset={0, 1})))]
    assert where(schedule([node("n1", 4)], queue)) == {"j": [("n1", (2, 3)), ("n1", (0, 1))]}


def test_invalid_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="requires a node pin"):
        TaskRequest("t", 1, cpuset=frozenset({0}))
    with pytest.raises(ValueError, match="has 1 cores"):
        TaskRequest("t", 2, node="n1", cpuset=frozenset({0}))
    with pytest.raises(ValueError, match="at least 1"):
        TaskRequest("t", 0)
    with pytest.raises(ValueError, match="no tasks"):
        JobRequest("j", ())
    with pytest.raises(ValueError, match="repeat"):
        JobRequest("j", (task("t", 1), task("t", 1)))
    with pytest.raises(ValueError, match="unknown strategy"):
        JobRequest("j", (task("t", 1),), strategy="worst-fit")
    with pytest.raises(ValueError, match="not cores of the node"):
        NodeState("n", frozenset({0}), frozenset({1}), 1, 1, True, True)
    with pytest.raises(ValueError, match="unknown strategy"):
        schedule([], [], "random")
    with pytest.raises(ValueError, match="node names repeat"):
        schedule([node("n", 1), node("n", 1)], [])
    with pytest.raises(ValueError, match="job names repeat"):
        schedule([], [job("j", 1), job("j", 1)])


def test_node_strategy_places_only_pinned_tasks() -> None:
    nodes = [node("n1", 8), node("n2", 8)]
    queue = [
        JobRequest("free", (task("a", 1, on="n2"), task("b", 1))),
        JobRequest("pinned", (task("a", 1, on="n2"), task("b", 2, on="n2", cpuset={4, 5}))),
    ]
    out = where(schedule(nodes, queue, "node"))
    assert out["free"] == (
        "task b of job free is not pinned to a node, and strategy node places only pinned tasks"
    )
    assert out["pinned"] == [("n2", (0,)), ("n2", (4, 5))]
    # A job may ask for the node strategy itself under another cluster strategy.
    queue = [JobRequest("j", (task("a", 1),), strategy="node")]
    assert "not pinned" in str(where(schedule(nodes, queue, "best-fit"))["j"])


def test_contiguous_runs_are_preferred() -> None:
    free = {0, 2, 3, 5, 6, 7}
    assert pick_cores(free, 1) == (0,)
    assert pick_cores(free, 2) == (2, 3)
    assert pick_cores(free, 3) == (5, 6, 7)
    assert pick_cores(free, 4) == (0, 2, 3, 5)
    assert pick_cores(free, 6) == (0, 2, 3, 5, 6, 7)
    with pytest.raises(ValueError):
        pick_cores(free, 7)
    queue = [job("a", 2), job("b", 3), job("c", 1)]
    assert where(schedule([node("n1", free)], queue)) == {
        "a": [("n1", (2, 3))],
        "b": [("n1", (5, 6, 7))],
        "c": [("n1", (0,))],
    }


def test_priority_order_and_fifo_within_priority() -> None:
    queue = [
        job("low-1", 4, priority=0, submitted=1),
        job("high-2", 4, priority=5, submitted=3),
        job("high-1", 4, priority=5, submitted=2),
        job("low-0", 4, priority=0, submitted=0),
        job("mid", 4, priority=1, submitted=9),
    ]
    decisions = schedule([node("n1", 8)], queue, "priority")
    assert [d.job for d in decisions] == ["high-1", "high-2", "mid", "low-0", "low-1"]
    out = where(decisions)
    assert out["high-1"] == [("n1", (0, 1, 2, 3))]
    assert out["high-2"] == [("n1", (4, 5, 6, 7))]
    assert isinstance(out["mid"], str) and isinstance(out["low-0"], str)
    # Other strategies ignore priority and keep submission order.
    assert [j.name for j in order_jobs(queue, "best-fit")] == [
        "low-0",
        "low-1",
        "high-1",
        "high-2",
        "mid",
    ]


def test_decreasing_strategies_order_is_stable() -> None:
    queue = [
        job("a", 1, submitted=0),
        job("b", 2, 2, submitted=1),
        job("c", 4, submitted=2),
        job("d", 3, submitted=3),
        job("e", 1, submitted=4),
        job("f", 1, 1, 1, 1, submitted=5),
    ]
    for strategy in ("first-fit-decreasing", "best-fit-decreasing"):
        assert [j.name for j in order_jobs(queue, strategy)] == ["b", "c", "f", "d", "a", "e"]
    assert [j.name for j in order_jobs(list(reversed(queue)), "first-fit")] == list("abcdef")


def test_a_job_that_does_not_fit_does_not_block_later_jobs() -> None:
    queue = [job("huge", 16), job("ok", 2)]
    out = where(schedule([node("n1", 4)], queue, "first-fit"))
    assert out["huge"] == "0/1 nodes can run task t0 of job huge: 1 has too few cores (need 16)"
    assert out["ok"] == [("n1", (0, 1))]


def test_starving_job_holds_back_later_jobs_only_past_the_limit() -> None:
    nodes = [node("n1", 3)]
    queue = [job("big", 4, submitted=0.0), job("small", 1, submitted=5.0)]
    # Under the limit nothing is held back: the small job takes a core.
    out = where(schedule(nodes, queue, "first-fit", now=9.0, starvation_seconds=10.0))
    assert out["small"] == [("n1", (0,))]
    # Past it, the big job reserves what frees up: the small one waits, saying why.
    out = where(schedule(nodes, queue, "first-fit", now=10.0, starvation_seconds=10.0))
    assert out["small"] == (
        "held back: job big has waited longer than the starvation limit of 10s and is placed first"
    )
    # Once enough is free the big job is placed and nothing is held.
    out = where(schedule([node("n1", 8)], queue, "first-fit", now=30.0, starvation_seconds=10.0))
    assert out["big"] == [("n1", (0, 1, 2, 3))]
    assert out["small"] == [("n1", (4,))]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[NodeState], list[JobRequest], str]:
    nodes = []
    for i in range(draw(st.integers(0, 6))):
        total = draw(st.integers(1, 8))
        free = draw(st.sets(st.integers(0, total - 1)))
        memory = draw(st.integers(0, 8))
        nodes.append(
            NodeState(
                f"n{i}",
                frozenset(range(total)),
                frozenset(free),
                memory,
                draw(st.integers(0, memory)),
                draw(st.booleans()) or draw(st.booleans()),
                draw(st.booleans()) or draw(st.booleans()),
            )
        )
    names = [n.name for n in nodes] + ["ghost"]
    jobs = []
    for j in range(draw(st.integers(0, 8))):
        tasks = []
        for t in range(draw(st.integers(1, 3))):
            cores = draw(st.integers(1, 5))
            pin = draw(st.sampled_from([None, None, None, *names]))
            cpuset = None
            if pin is not None and draw(st.booleans()):
                cpuset = frozenset(draw(st.sets(st.integers(0, 9), min_size=1, max_size=4)))
                cores = len(cpuset)
            tasks.append(TaskRequest(f"t{t}", cores, draw(st.integers(0, 4)), pin, cpuset))
        jobs.append(
            JobRequest(
                f"j{j}",
                tuple(tasks),
                draw(st.integers(0, 2)),
                draw(st.floats(0, 10)),
                draw(st.none() | st.sampled_from(STRATEGIES)),
            )
        )
    return nodes, jobs, draw(st.sampled_from(STRATEGIES))


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_placement_invariants(case: tuple[list[NodeState], list[JobRequest], str]) -> None:
    nodes, jobs, strategy = case
    decisions = schedule(nodes, jobs, strategy)
    assert sorted(d.job for d in decisions) == sorted(j.name for j in jobs)
    by_node = {n.name: n for n in nodes}
    by_job = {j.name: j for j in jobs}
    used: set[tuple[str, int]] = set()
    memory: dict[str, int] = {}
    for d in decisions:
        assert (d.placements is None) != (d.reason is None)
        if d.placements is None:
            continue
        request = by_job[d.job]
        assert [p.task for p in d.placements] == [t.name for t in request.tasks]
        for p, t in zip(d.placements, request.tasks, strict=True):
            n = by_node[p.node]
            assert n.ready and n.schedulable
            assert len(p.cpuset) == t.cores and p.memory == t.memory
            assert list(p.cpuset) == sorted(set(p.cpuset))
            assert set(p.cpuset) <= n.free_cores
            if t.node is not None:
                assert p.node == t.node
            if t.cpuset is not None:
                assert set(p.cpuset) == t.cpuset
            for core in p.cpuset:
                assert (p.node, core) not in used
                used.add((p.node, core))
            memory[p.node] = memory.get(p.node, 0) + p.memory
    for name, total in memory.items():
        assert total <= by_node[name].free_memory


def test_thousand_nodes_two_hundred_jobs_smoke() -> None:
    nodes = [
        node(f"node-{i}", (i * 7) % 33, total=32, free_memory=(i % 16) * GI) for i in range(1000)
    ]
    queue = [
        JobRequest(
            f"job-{j}",
            tuple(task(f"t{t}", 1 + (j + t) % 8, ((j * t) % 4) * GI) for t in range(1 + j % 4)),
            priority=j % 3,
            submitted=float(j),
        )
        for j in range(200)
    ]
    for strategy in ("first-fit", "best-fit", "priority"):
        start = time.perf_counter()
        decisions = schedule(nodes, queue, strategy)
        assert time.perf_counter() - start < 5
        assert len(decisions) == 200
