"""The placement benchmark's workload and naive baseline: what makes its comparison fair.

The naive linear scan must decide exactly what the indexed core decides, or the speed-up it
prints compares different work. The end-to-end objects must be valid and describe the same
cluster to the scheduler's conversion functions as the pure workload does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from swarmapply.api.admission import validate_object
from swarmapply.api.quantity import parse_cpuset
from swarmapply.api.store import Store, open_store
from swarmapply.controllers.placement import schedule
from swarmapply.controllers.requests import node_state
from swarmapply.controllers.settings import SchedulerSettings


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "placement_bench.py"
    spec = importlib.util.spec_from_file_location("placement_bench_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_workload_is_deterministic_fragmented_and_oversubscribed() -> None:
    one, two = bench.make_workload(60, seed=7), bench.make_workload(60, seed=7)
    assert one == two
    assert bench.make_workload(60, seed=8) != one
    nodes = one.nodes
    assert [n.name for n in nodes[:3]] == ["node-1", "node-2", "node-3"]
    assert any(n.free_cores != n.cores for n in nodes), "some nodes are partially allocated"
    assert any(n.free_cores == n.cores for n in nodes), "some nodes are empty"
    assert {len(t.tasks) for t in one.queue} <= {1, 2, 3, 4}
    assert all(1 <= t.cores <= 16 for job in one.queue for t in job.tasks)
    free = sum(len(n.free_cores) for n in nodes if n.ready and n.schedulable)
    asked = sum(t.cores for job in one.queue for t in job.tasks)
    assert asked >= 1.2 * free
    assert len(bench.make_workload(60, jobs=5).queue) == 5


@pytest.mark.parametrize(
    "strategy", ["first-fit", "best-fit", "first-fit-decreasing", "best-fit-decreasing"]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_naive_baseline_decides_exactly_like_the_core(strategy: str, seed: int) -> None:
    work = bench.make_workload(40, seed=seed)
    core = schedule(work.nodes, work.queue, strategy)
    naive = bench.naive_schedule(work.nodes, work.queue, strategy)
    assert [d.job for d in naive] == [d.job for d in core]  # same processing order
    assert bench.outcome(naive) == bench.outcome(core)
    placed = bench.placed_tasks(core)
    assert 0 < placed < work.tasks, "the tiny cluster places most tasks and some wait"


def test_naive_baseline_refuses_what_it_does_not_implement() -> None:
    work = bench.make_workload(5, jobs=2)
    with pytest.raises(ValueError, match="priority"):
        bench.naive_schedule(work.nodes, work.queue, "priority")


def test_e2e_queue_takes_whole_jobs_up_to_the_task_count() -> None:
    queue = bench.make_workload(20).queue
    prefix = bench.e2e_queue(queue, 10)
    assert prefix == queue[: len(prefix)]
    assert sum(len(j.tasks) for j in prefix) <= 10
    assert sum(len(j.tasks) for j in queue[: len(prefix) + 1]) > 10


def job_controller_task_builder() -> Any:
    """The job controller's ``build_task(job, entry)``, wherever it lives now, else None."""
    for module in ("swarmapply.controllers.job_tasks", "swarmapply.controllers.job_status"):
        try:
            return importlib.import_module(module).build_task
        except (ImportError, AttributeError):
            continue
    return None


class SnapshotScheduler:
    """Stands in for the scheduler: rebuilds the placement inputs from the store and places.

    It binds nothing, so it only checks that the store objects describe the workload.
    """

    seen: ClassVar[list[Any]] = []

    def __init__(self, store: Store, settings: SchedulerSettings) -> None:
        self.store, self.settings = store, settings

    def schedule_once(self) -> int:
        used: dict[str, set[int]] = defaultdict(set)
        memory: dict[str, int] = defaultdict(int)
        pending: dict[str, int] = defaultdict(int)
        for task in self.store.list("Task").items:
            status = task["status"]
            if status["phase"] == "Running":
                used[status["node"]] |= set(parse_cpuset(status["cpuset"]))
                memory[status["node"]] += status["memory"]
            else:
                pending[task["spec"]["job"]] += 1
        nodes = tuple(
            node_state(n, used_cores=frozenset(used[name]), used_memory=memory[name])
            for n in self.store.list("Node").items
            for name in [n["metadata"]["name"]]
        )
        self.seen.append((nodes, dict(pending), self.settings.strategy))
        return 0


def test_e2e_objects_are_valid_and_describe_the_workload(tmp_path: Path) -> None:
    work = bench.make_workload(30, seed=3)
    queue = bench.e2e_queue(work.queue, 12)
    with open_store(f"sqlite:///{tmp_path}/state.db") as store:
        created = bench.populate(store, work.nodes, queue)
        objects = [o for kind in ("Node", "Job", "Task") for o in store.list(kind).items]
    assert len(objects) == created
    problems = [p for obj in objects for p in validate_object(obj)]
    assert problems == []
    tasks = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Task"}
    first = queue[0]
    task = tasks[f"{first.name}-{first.tasks[0].name}"]
    assert task["spec"]["job"] == first.name
    assert task["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert task["status"] == {"phase": "Pending"}
    job = next(o for o in objects if o["metadata"]["name"] == first.name)
    builder = job_controller_task_builder()
    if builder is not None:  # the Tasks look exactly as the job controller makes them
        stored = {"uid", "resourceVersion", "generation", "creationTimestamp"}
        metadata = {k: v for k, v in task["metadata"].items() if k not in stored}
        expected = builder(job, job["spec"]["tasks"][0])
        assert {**task, "metadata": metadata, "status": None} == {**expected, "status": None}

    SnapshotScheduler.seen = []
    rows, notes = bench.bench_e2e(work, ["first-fit", "best-fit"], 12, SnapshotScheduler)
    assert [r["strategy"] for r in rows] == ["first-fit", "best-fit"]
    assert [s for _, _, s in SnapshotScheduler.seen] == ["first-fit", "best-fit"]
    nodes, pending, _ = SnapshotScheduler.seen[0]
    by_name = {n.name: n for n in nodes}
    assert all(by_name[n.name] == n for n in work.nodes), "store round-trips the snapshot"
    assert pending == {j.name: len(j.tasks) for j in queue}
    assert notes[-1].endswith("same decisions as the core: NO")  # it bound none


def test_e2e_with_the_real_scheduler_binds_what_the_core_decides() -> None:
    pytest.importorskip("swarmapply.controllers.scheduler")
    scheduler, missing = bench.scheduler_class()
    assert missing is None
    work = bench.make_workload(20, seed=5)
    rows, notes = bench.bench_e2e(work, ["best-fit"], 40, scheduler)
    assert rows[0]["placed"] > 0
    assert notes[-1].endswith("same decisions as the core: yes")


def test_main_quick_run_without_e2e_reports_same_decisions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = bench.main(["--nodes", "30", "--no-e2e", "--strategies", "first-fit,best-fit"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("same decisions: yes") == 2
    assert "naive linear scan" in out and "placements/s" in out
