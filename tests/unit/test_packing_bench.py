"""The packing benchmark's pure parts: the lower bound, node counting and the workloads.

The benchmark's figure is only meaningful if the bound is a true lower bound, the node count
counts each used node once, and every job of a workload can be placed on the nodes it builds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench package, from any cwd
import math

import pytest

from bench import packing_bench as pb
from swarmapply.controllers.placement import Decision, JobRequest, Placement, TaskRequest


def _job(name: str, *cores: int) -> JobRequest:
    return JobRequest(name, tuple(TaskRequest(f"t{i}", c) for i, c in enumerate(cores)))


def test_lower_bound_is_the_ceiling_of_total_cores_over_node_cores() -> None:
    queue = [_job("a", 8, 8), _job("b", 1), _job("c", 32)]
    assert pb.total_cores(queue) == 49
    assert pb.lower_bound(queue, 32) == 2
    assert pb.lower_bound([_job("a", 32)], 32) == 1
    assert pb.lower_bound([], 32) == 0
    with pytest.raises(ValueError, match="node_cores"):
        pb.lower_bound(queue, 0)


def test_nodes_used_counts_distinct_nodes_of_placed_jobs_only() -> None:
    placed = Decision(
        "a",
        (Placement("a", "t0", "n1", (0,), 0), Placement("a", "t1", "n1", (1,), 0),
         Placement("a", "t2", "n3", (0,), 0)),
        None,
    )  # fmt: skip
    waiting = Decision("b", None, "does not fit")
    assert pb.nodes_used([placed, waiting]) == 2


def test_excess_percent() -> None:
    assert pb.excess_percent(105, 100) == pytest.approx(5.0)
    assert pb.excess_percent(100, 100) == 0.0
    assert pb.excess_percent(0, 0) == 0.0


def test_workloads_are_deterministic_and_within_the_stated_ranges() -> None:
    jobs = pb.make_jobs(200, seed=3, max_cores=8)
    assert jobs == pb.make_jobs(200, seed=3, max_cores=8)
    assert jobs != pb.make_jobs(200, seed=4, max_cores=8)
    assert all(1 <= len(j.tasks) <= 4 for j in jobs)
    assert all(1 <= t.cores <= 8 and t.memory == t.cores * pb.GiB for j in jobs for t in j.tasks)


@pytest.mark.parametrize("strategy", ["first-fit", "best-fit-decreasing"])
def test_every_job_fits_and_no_strategy_beats_the_bound(strategy: str) -> None:
    queue = pb.make_jobs(150, seed=1, max_cores=16)
    row = pb.pack(queue, strategy, seed=1)
    assert row.waiting == 0
    assert row.bound == math.ceil(pb.total_cores(queue) / pb.NODE_CORES)
    assert row.bound <= row.used < len(pb.make_nodes(queue))


def test_summarise_totals_per_strategy_and_keeps_the_worst_workload() -> None:
    rows = [
        pb.PackingRow("best-fit", 1, 10, 320, 10, 11, 0),
        pb.PackingRow("best-fit", 2, 10, 640, 20, 20, 0),
        pb.PackingRow("first-fit", 1, 10, 320, 10, 12, 1),
    ]
    [best, first] = pb.summarise(rows)
    assert (best.strategy, best.used, best.bound, best.workloads) == ("best-fit", 31, 30, 2)
    assert best.worst_excess == pytest.approx(10.0)
    assert best.excess == pytest.approx(100 / 30)
    assert (first.used, first.waiting) == (12, 1)
