"""The pure preemption choice: fewest whole lower-priority jobs, deterministic, or none."""

from __future__ import annotations

import random
from collections.abc import Sequence

from swarmapply.controllers.placement_model import JobRequest, NodeState, Placement, TaskRequest
from swarmapply.controllers.preemption import RunningJob, choose_victims

GI = 1024**3


def running(
    name: str, priority: int, submitted: float, *held: tuple[str, Sequence[int]]
) -> RunningJob:
    """A running job holding, per ``(node, cores)``, one task's cores (1 GiB each)."""
    return RunningJob(
        name,
        priority,
        submitted,
        tuple(
            Placement(name, f"{name}-{i}", node, tuple(cores), GI)
            for i, (node, cores) in enumerate(held)
        ),
    )


def cluster(
    jobs: Sequence[RunningJob], cores: int = 4, names: Sequence[str] = ("n1", "n2")
) -> list[NodeState]:
    """Nodes of ``cores`` cores and 16 GiB with what ``jobs`` hold taken."""
    nodes = []
    for name in names:
        held = [p for j in jobs for p in j.placements if p.node == name]
        used = {c for p in held for c in p.cpuset}
        all_cores = frozenset(range(cores))
        nodes.append(
            NodeState(name, all_cores, all_cores - used, 16 * GI, 16 * GI - GI * len(held))
        )
    return nodes


def wants(name: str, priority: int, *cores: int) -> JobRequest:
    return JobRequest(
        name,
        tuple(TaskRequest(f"{name}-{i}", c, GI) for i, c in enumerate(cores)),
        priority=priority,
        submitted=100.0,
    )


def test_nothing_to_evict_when_the_job_fits_already() -> None:
    jobs = [running("a", 0, 1, ("n1", [0, 1]))]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4)) == ()


def test_a_single_victim_is_preferred_over_several_lower_ones() -> None:
    # n1: a and b (priority 0, 2 cores each); n2: c (priority 1, 4 cores).
    jobs = [
        running("a", 0, 1, ("n1", [0, 1])),
        running("b", 0, 2, ("n1", [2, 3])),
        running("c", 1, 3, ("n2", [0, 1, 2, 3])),
    ]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4)) == ("c",)


def test_the_set_is_minimal_when_one_victim_is_not_enough() -> None:
    # Eviction order a (newest), c, b; a+c+b fits, and c turns out to be unnecessary.
    jobs = [
        running("a", 0, 3, ("n1", [0, 1])),
        running("b", 0, 1, ("n1", [2, 3])),
        running("c", 0, 2, ("n2", [0, 1])),
        running("d", 9, 0, ("n2", [2, 3])),
    ]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4)) == ("a", "b")


def test_a_gang_job_may_need_a_victim_on_each_node() -> None:
    jobs = [running("a", 0, 1, ("n1", [0, 1, 2, 3])), running("b", 1, 2, ("n2", [0, 1, 2, 3]))]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4, 4)) == ("a", "b")


def test_none_when_evicting_every_candidate_is_not_enough() -> None:
    jobs = [running("a", 0, 1, ("n1", [0, 1, 2, 3])), running("b", 0, 2, ("n2", [0, 1, 2, 3]))]
    assert choose_victims(cluster(jobs), jobs, wants("huge", 5, 8)) is None


def test_none_when_only_equal_or_higher_priority_jobs_hold_the_cores() -> None:
    jobs = [running("eq", 5, 1, ("n1", [0, 1, 2, 3])), running("up", 7, 2, ("n2", [0, 1, 2, 3]))]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4)) is None


def test_an_equal_priority_job_is_never_picked_even_if_it_would_be_the_one_victim() -> None:
    # Evicting eq alone would do; the lower-priority pair is chosen instead.
    jobs = [
        running("eq", 5, 1, ("n1", [0, 1, 2, 3])),
        running("x", 0, 2, ("n2", [0, 1])),
        running("y", 0, 3, ("n2", [2, 3])),
    ]
    victims = choose_victims(cluster(jobs), jobs, wants("hi", 5, 4))
    assert victims is not None and set(victims) == {"x", "y"}


def test_the_job_itself_is_never_a_victim() -> None:
    jobs = [running("hi", 0, 1, ("n1", [0, 1, 2, 3])), running("b", 1, 1, ("n2", [0, 1, 2, 3]))]
    assert choose_victims(cluster(jobs), jobs, wants("hi", 5, 4)) == ("b",)


def test_order_lowest_priority_then_latest_submitted_then_name() -> None:
    def pick(*jobs: RunningJob) -> tuple[str, ...] | None:
        return choose_victims(cluster(jobs), jobs, wants("hi", 5, 4))

    # Each job alone would free a whole node: the order decides.
    assert pick(
        running("p2", 2, 9, ("n1", [0, 1, 2, 3])), running("p1", 1, 0, ("n2", [0, 1, 2, 3]))
    ) == ("p1",)
    assert pick(
        running("old", 1, 1, ("n1", [0, 1, 2, 3])), running("new", 1, 5, ("n2", [0, 1, 2, 3]))
    ) == ("new",)
    assert pick(
        running("b", 1, 1, ("n1", [0, 1, 2, 3])), running("a", 1, 1, ("n2", [0, 1, 2, 3]))
    ) == ("a",)


def test_the_answer_does_not_depend_on_the_order_of_the_running_jobs() -> None:
    jobs = [
        running("a", 0, 3, ("n1", [0, 1])),
        running("b", 0, 1, ("n1", [2, 3])),
        running("c", 0, 2, ("n2", [0, 1])),
        running("d", 9, 0, ("n2", [2, 3])),
    ]
    nodes = cluster(jobs)
    expected = choose_victims(nodes, jobs, wants("hi", 5, 4))
    rng = random.Random(7)
    for _ in range(10):
        shuffled = jobs[:]
        rng.shuffle(shuffled)
        assert choose_victims(nodes, shuffled, wants("hi", 5, 4)) == expected


def test_memory_counts_as_well_as_cores() -> None:
    # n1 has free cores but its memory is taken by a low-priority job.
    low = RunningJob("low", 0, 1, (Placement("low", "low-0", "n1", (0,), 15 * GI),))
    nodes = [NodeState("n1", frozenset(range(4)), frozenset({1, 2, 3}), 16 * GI, GI)]
    job = JobRequest("hi", (TaskRequest("hi-0", 2, 4 * GI),), priority=5)
    assert choose_victims(nodes, [low], job) == ("low",)
