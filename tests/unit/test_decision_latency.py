"""The decision-latency benchmark's load: exact task count, no core held twice, fits."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench package, from any cwd
import pytest

from bench import decision_latency as dl
from swarmapply.controllers.placement import schedule


def test_load_holds_exactly_the_tasks_on_distinct_cores() -> None:
    load = dl.build_load(200, 2000, seed=1)
    assert sum(len(tasks) for tasks in load) == 2000
    for tasks in load:
        held = [c for t in tasks for c in t.cores]
        assert len(held) == len(set(held)) <= dl.NODE_CORES
        assert all(t.memory == len(t.cores) * dl.GiB for t in tasks)
    assert load != dl.build_load(200, 2000, seed=2)
    with pytest.raises(ValueError, match="do not fit"):
        dl.build_load(1, dl.NODE_CORES + 1, seed=1)


def test_node_states_match_the_load_and_a_gang_job_is_placed_whole() -> None:
    load = dl.build_load(50, 500, seed=3)
    states = dl.node_states(load)
    assert [s.name for s in states[:2]] == ["node-1", "node-2"]
    for state, tasks in zip(states, load, strict=True):
        assert len(state.free_cores) == dl.NODE_CORES - sum(len(t.cores) for t in tasks)
    job = dl.gang_job("g", seed=1)
    assert len(job.tasks) == dl.GANG
    [decision] = schedule(states, (job,), dl.STRATEGY)
    assert decision.placements is not None and len(decision.placements) == dl.GANG


def test_summary_percentiles() -> None:
    s = dl.summary([float(v) for v in range(1, 101)])
    assert (s["p50"], s["p95"], s["p99"], s["max"]) == (50.0, 95.0, 99.0, 100.0)
