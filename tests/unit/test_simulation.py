"""The offline simulation: hand-computed scenarios per strategy, arrivals, forever jobs, jobs
that never fit, starvation, preemption, determinism, and agreement with a naive replay."""

from __future__ import annotations

import random

import pytest

from swarmapply.api.admission import admit
from swarmapply.controllers.placement import schedule
from swarmapply.controllers.placement_model import JobRequest, NodeState, TaskRequest
from swarmapply.controllers.requests import job_request
from swarmapply.controllers.simulation import SimJob, SimResult, simulate

GI = 1024**3


def node(name: str, cores: int, memory: int = 16 * GI) -> NodeState:
    ids = frozenset(range(cores))
    return NodeState(name, ids, ids, memory, memory)


def job(
    name: str,
    *cores: int,
    duration: float | None = None,
    at: float = 0.0,
    priority: int = 0,
    on: str | None = None,
) -> SimJob:
    tasks = tuple(TaskRequest(f"t{i}", c, 0, on) for i, c in enumerate(cores))
    return SimJob(JobRequest(name, tasks, priority, at), at, duration)


Row = tuple[str, str, str, float, float | None]


def rows(result: SimResult) -> list[Row]:
    """(job, node, cpuset, start, end) per task run, cpuset as ``a-b`` text."""
    out = []
    for p in result.placements:
        ids = p.cpuset
        text = f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else str(ids[0])
        out.append((p.job, p.node, text, p.start, p.end))
    return out


# Two nodes (n1: 8 cores, n2: 4 cores) and five single-task jobs at time 0.
NODES = [node("n1", 8), node("n2", 4)]
JOBS = [
    job("a", 2, duration=10),
    job("b", 2, duration=20),
    job("c", 4, duration=5),
    job("d", 8, duration=10, priority=5),
    job("e", 3, duration=5),
]

EXPECTED: dict[str, tuple[list[Row], tuple[float, float, float, float]]] = {
    # (placements, (makespan, meanWait, p95Wait, coreUtilization))
    "first-fit": (
        [
            ("a", "n1", "0-1", 0, 10),
            ("b", "n1", "2-3", 0, 20),
            ("c", "n1", "4-7", 0, 5),
            ("e", "n2", "0-2", 0, 5),
            ("d", "n1", "0-7", 20, 30),
        ],
        (30, 4, 20, 175 / 360),
    ),
    "best-fit": (
        [
            ("a", "n2", "0-1", 0, 10),
            ("b", "n2", "2-3", 0, 20),
            ("c", "n1", "0-3", 0, 5),
            ("e", "n1", "4-6", 0, 5),
            ("d", "n1", "0-7", 5, 15),
        ],
        (20, 1, 5, 175 / 240),
    ),
    "first-fit-decreasing": (
        [
            ("d", "n1", "0-7", 0, 10),
            ("c", "n2", "0-3", 0, 5),
            ("e", "n2", "0-2", 5, 10),
            ("a", "n1", "0-1", 10, 20),
            ("b", "n1", "2-3", 10, 30),
        ],
        (30, 5, 10, 175 / 360),
    ),
    "best-fit-decreasing": (
        [
            ("d", "n1", "0-7", 0, 10),
            ("c", "n2", "0-3", 0, 5),
            ("e", "n2", "0-2", 5, 10),
            ("a", "n2", "0-1", 10, 20),
            ("b", "n2", "2-3", 10, 30),
        ],
        (30, 5, 10, 175 / 360),
    ),
    "priority": (
        [
            ("d", "n1", "0-7", 0, 10),
            ("a", "n2", "0-1", 0, 10),
            ("b", "n2", "2-3", 0, 20),
            ("c", "n1", "0-3", 10, 15),
            ("e", "n1", "4-6", 10, 15),
        ],
        (20, 4, 10, 175 / 240),
    ),
}


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
def test_hand_computed_scenario_per_strategy(strategy: str) -> None:
    placements, (makespan, mean_wait, p95_wait, utilization) = EXPECTED[strategy]
    result = simulate(NODES, JOBS, strategy)
    assert result.strategy == strategy
    assert rows(result) == placements
    assert result.unscheduled == ()
    m = result.metrics
    assert (m.makespan, m.mean_wait, m.p95_wait) == (makespan, mean_wait, p95_wait)
    assert m.core_utilization == pytest.approx(utilization)
    assert m.nodes_used == 2
    assert m.preemptions is None


def test_strategy_node_places_only_pinned_jobs() -> None:
    jobs = [*JOBS, job("pinned", 2, duration=7, on="n2")]
    result = simulate(NODES, jobs, "node")
    assert rows(result) == [("pinned", "n2", "0-1", 0, 7)]
    assert result.unscheduled == ("a", "b", "c", "d", "e")
    assert result.metrics.nodes_used == 1
    assert result.metrics.core_utilization == pytest.approx(2 / 12)


def test_restfulswarm_single_task_jobs() -> None:
    def doc(name: str, cores: int) -> str:
        return (
            f'{{"job_name": "{name}", "job_info": {{"network": {{"name": "{name}-net"}}, '
            f'"tasks": {{"{name}-t": {{"container_name": "{name}-t", "image": "busybox", '
            f'"req_cores": {cores}, "mem_limit": "1g", "cpuset_cpus": "", "node": ""}}}}}}}}'
        )

    admitted = admit([("jobs.json", doc("j1", 3) + "\n" + doc("j2", 2))])
    jobs = [SimJob(job_request(item.obj, submitted=0.0), 0.0, 10.0) for item in admitted]
    result = simulate([node("w1", 4, 2 * GI)], jobs, "first-fit")
    # j2 fits the cores left by j1 but not the memory: it waits for j1 to end.
    assert rows(result) == [("j1", "w1", "0-2", 0, 10), ("j2", "w1", "0-1", 10, 20)]
    assert [p.task for p in result.placements] == ["j1-t", "j2-t"]


def test_submit_times_order_the_queue_and_ties_keep_input_order() -> None:
    jobs = [
        job("late1", 2, duration=10, at=5),
        job("early", 2, duration=10, at=0),
        job("late2", 2, duration=10, at=5),
        job("idle-gap", 2, duration=1, at=100),
    ]
    result = simulate([node("n", 2)], jobs, "best-fit")
    assert rows(result) == [
        ("early", "n", "0-1", 0, 10),
        ("late1", "n", "0-1", 10, 20),
        ("late2", "n", "0-1", 20, 30),
        ("idle-gap", "n", "0-1", 100, 101),
    ]
    assert result.metrics.mean_wait == pytest.approx((0 + 5 + 15 + 0) / 4)
    assert result.metrics.makespan == 101


def test_forever_jobs_hold_their_cores_and_count_up_to_the_makespan() -> None:
    jobs = [job("server", 2), job("batch", 2, duration=10), job("whole", 4, duration=5)]
    result = simulate([node("n", 4)], jobs, "first-fit")
    assert rows(result) == [("server", "n", "0-1", 0, None), ("batch", "n", "2-3", 0, 10)]
    assert result.unscheduled == ("whole",)
    assert result.metrics.makespan == 10
    assert result.metrics.core_utilization == pytest.approx(1.0)


def test_only_forever_jobs_makespan_is_the_latest_start() -> None:
    jobs = [job("s1", 2), job("s2", 1, at=3)]
    result = simulate([node("n", 4)], jobs, "best-fit")
    assert result.metrics.makespan == 3
    assert result.metrics.core_utilization == pytest.approx(2 * 3 / (4 * 3))
    assert result.unscheduled == ()


def test_nothing_placed_gives_zero_metrics() -> None:
    result = simulate([node("n", 2)], [job("huge", 3, duration=1)], "best-fit")
    assert result.placements == ()
    assert result.unscheduled == ("huge",)
    m = result.metrics
    assert (m.makespan, m.mean_wait, m.p95_wait, m.core_utilization, m.nodes_used) == (
        0,
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize("starvation", [None, 0.0])
def test_jobs_that_never_fit_stay_unscheduled_without_blocking(starvation: float | None) -> None:
    nodes = [node("n1", 4), node("n2", 4)]
    jobs = [
        job("too-big", 5, duration=1),
        job("missing-node", 1, duration=1, on="n9"),
        # Each task fits alone and 8 cores exist, but 3+3+2 cannot be packed on 4+4.
        job("gang", 3, 3, 2, duration=1),
        job("ok", 4, duration=2),
        job("ok2", 4, duration=2, at=1),
    ]
    result = simulate(nodes, jobs, "first-fit", starvation_seconds=starvation)
    assert result.unscheduled == ("too-big", "missing-node", "gang")
    assert rows(result) == [("ok", "n1", "0-3", 0, 2), ("ok2", "n2", "0-3", 1, 3)]


def test_starvation_limit_changes_the_outcome() -> None:
    jobs = [
        job("s1", 2, duration=10),
        job("big", 4, duration=10),
        job("s2", 2, duration=10, at=5),
        job("s3", 2, duration=10, at=10),
    ]
    nodes = [node("n", 4)]
    plain = simulate(nodes, jobs, "first-fit")
    assert [(r[0], r[3]) for r in rows(plain)] == [("s1", 0), ("s2", 5), ("s3", 10), ("big", 20)]
    reserved = simulate(nodes, jobs, "first-fit", starvation_seconds=5)
    assert [(r[0], r[3]) for r in rows(reserved)] == [
        ("s1", 0),
        ("big", 10),
        ("s2", 20),
        ("s3", 20),
    ]
    assert reserved.metrics.makespan == 30 == plain.metrics.makespan
    # The reservation cuts the worst wait (big: 20s -> 10s; s2 now waits 15s) at the cost of
    # the mean wait.
    assert (plain.metrics.p95_wait, plain.metrics.mean_wait) == (20, 5)
    assert (reserved.metrics.p95_wait, reserved.metrics.mean_wait) == (15, 8.75)


def test_preemption_evicts_lower_priority_jobs_which_restart_from_zero() -> None:
    jobs = [job("low", 4, duration=100), job("high", 4, duration=10, at=5, priority=10)]
    nodes = [node("n", 4)]
    without = simulate(nodes, jobs, "priority")
    assert rows(without) == [("low", "n", "0-3", 0, 100), ("high", "n", "0-3", 100, 110)]
    assert without.metrics.preemptions is None
    result = simulate(nodes, jobs, "priority", preemption=True)
    assert rows(result) == [
        ("low", "n", "0-3", 0, 5),
        ("high", "n", "0-3", 5, 15),
        ("low", "n", "0-3", 15, 115),
    ]
    assert result.metrics.preemptions == 1
    assert result.metrics.makespan == 115
    assert result.metrics.mean_wait == pytest.approx((15 + 0) / 2)  # low's last start
    assert result.metrics.core_utilization == pytest.approx(1.0)


def test_preemption_never_evicts_equal_or_higher_priority() -> None:
    jobs = [job("first", 4, duration=50, priority=3), job("same", 4, duration=5, at=1, priority=3)]
    result = simulate([node("n", 4)], jobs, "priority", preemption=True)
    assert rows(result) == [("first", "n", "0-3", 0, 50), ("same", "n", "0-3", 50, 55)]
    assert result.metrics.preemptions == 0


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        simulate(NODES, JOBS, "random")
    with pytest.raises(ValueError, match="job names repeat"):
        simulate(NODES, [JOBS[0], JOBS[0]], "best-fit")
    with pytest.raises(ValueError, match="must equal submit_at"):
        SimJob(JobRequest("x", (TaskRequest("t", 1),), submitted=1.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="duration"):
        SimJob(JobRequest("x", (TaskRequest("t", 1),)), 0.0, 0.0)


def _random_case(rng: random.Random) -> tuple[list[NodeState], list[SimJob]]:
    nodes = [node(f"n{i}", rng.choice([2, 4, 8]), rng.choice([4, 8]) * GI) for i in range(4)]
    jobs = []
    for i in range(25):
        at = float(rng.randrange(0, 30))
        tasks = tuple(
            TaskRequest(f"t{k}", rng.choice([1, 2, 3, 4]), rng.choice([0, 1, 3]) * GI)
            for k in range(rng.choice([1, 1, 2, 3]))
        )
        duration = None if rng.random() < 0.05 else float(rng.randrange(1, 20))
        jobs.append(SimJob(JobRequest(f"j{i}", tasks, rng.randrange(3), at), at, duration))
    return nodes, jobs


def _naive(
    nodes: list[NodeState], jobs: list[SimJob], strategy: str, starvation: float | None
) -> list[tuple[str, str, tuple[int, ...], float]]:
    """The specification, literally: one schedule() call over the whole queue and every node at
    each event, after setting aside the jobs that do not fit on the empty cluster."""
    fits = {
        j.request.name
        for j in jobs
        if schedule(nodes, [j.request], strategy)[0].placements is not None
    }
    free = {n.name: set(n.cores) for n in nodes}
    memory = {n.name: n.memory for n in nodes}
    pending = sorted(jobs, key=lambda j: j.submit_at)  # stable: input order among ties
    queue: list[SimJob] = []
    running: list[tuple[float, SimJob, tuple]] = []  # type: ignore[type-arg]
    out = []
    while pending or running:
        now = min([j.submit_at for j in pending[:1]] + [end for end, _, _ in running])
        for _, _, placements in [r for r in running if r[0] == now]:
            for p in placements:
                free[p.node].update(p.cpuset)
                memory[p.node] += p.memory
        running = [r for r in running if r[0] != now]
        while pending and pending[0].submit_at == now:
            candidate = pending.pop(0)
            if candidate.request.name in fits:
                queue.append(candidate)
        states = [
            NodeState(n.name, n.cores, frozenset(free[n.name]), n.memory, memory[n.name])
            for n in nodes
        ]
        decisions = schedule(
            states, [j.request for j in queue], strategy, now=now, starvation_seconds=starvation
        )
        by_name = {j.request.name: j for j in queue}
        for decision in decisions:
            if decision.placements is None:
                continue
            started = by_name[decision.job]
            queue.remove(started)
            for p in decision.placements:
                free[p.node].difference_update(p.cpuset)
                memory[p.node] -= p.memory
                out.append((p.job, p.node, p.cpuset, now))
            if started.duration is not None:
                running.append((now + started.duration, started, decision.placements))
    return out


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("starvation", [None, 8.0])
def test_agrees_with_a_naive_replay(seed: int, starvation: float | None) -> None:
    rng = random.Random(seed)
    nodes, jobs = _random_case(rng)
    strategy = rng.choice(["first-fit", "best-fit", "best-fit-decreasing", "priority"])
    result = simulate(nodes, jobs, strategy, starvation_seconds=starvation)
    got = [(p.job, p.node, p.cpuset, p.start) for p in result.placements]
    assert sorted(got) == sorted(_naive(nodes, jobs, strategy, starvation))


def test_deterministic() -> None:
    nodes, jobs = _random_case(random.Random(99))
    first = simulate(nodes, jobs, "best-fit", starvation_seconds=5, preemption=True)
    again = simulate(list(reversed(nodes)), jobs, "best-fit", starvation_seconds=5, preemption=True)
    assert first == again
    assert first.placements


def test_large_input_finishes_quickly() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i}", 16, 64 * GI) for i in range(300)]
    jobs = [
        SimJob(JobRequest(f"j{i}", (TaskRequest("t", rng.choice([1, 2, 4, 8]), GI),), 0, at), at, d)
        for i in range(3000)
        for at, d in [(float(rng.randrange(0, 500)), float(rng.randrange(10, 300)))]
    ]
    result = simulate(nodes, jobs, "best-fit")
    assert result.unscheduled == ()
    assert len(result.placements) == 3000
