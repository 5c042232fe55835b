"""End-to-end placement throughput: Jobs created in the store until every Task is bound.

A fresh SQLite store (default settings) in a temporary directory; ``--nodes`` hollow (sim)
nodes of 16 cores and 64 GiB in one agent group (as ``swarmapply agent --driver sim --nodes N``
builds it), and the job controller and the scheduler loop on threads, as ``swarmapply
controllers`` runs them (without leader election). Once every node has registered, the clock
starts and ``--tasks`` tasks are applied as gang Jobs of four one-core tasks, one
``store.create`` per Job, as ``swarmapply apply`` writes them; the run follows the Tasks
through a store watch and stops the clock when every Task has a node and cores. The job
controller creates the Tasks, the scheduler binds them, and the agents start the bound ones
(competing for the one SQLite writer, as they would), all while the clock runs.

Figures: apply -> all bound in seconds and as placements (tasks bound) per second; the time
until every Job was written and until every Task existed; the scheduler's passes. Baseline,
in the same run: the pure core ``schedule(nodes, jobs, strategy)`` placing the same jobs on the
same empty nodes, as placements per second.

Not measured: MongoDB, Docker, leader election, deletes, jobs that wait for room (there is
room for all), the agents' start-up after binding (see ``agent_bench``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.agent_bench import GiB, build_sim_group, job_sizes, running, sim_job, wait_until
from swarmapply.api.store import Object, Store, open_store
from swarmapply.controllers.job import build as build_job_controller
from swarmapply.controllers.placement import JobRequest, NodeState, TaskRequest, schedule
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings, SchedulerSettings

NODE_CORES = 16
NODE_MEMORY = 64 * GiB
STRATEGY = "best-fit"


@dataclass
class E2EResult:
    """The figures of one run (seconds from the first Job's create)."""

    nodes: int
    tasks: int
    jobs: int = 0
    register_s: float = 0.0
    applied_s: float = 0.0
    tasks_created_s: float = 0.0
    bound_s: float = 0.0
    passes: int = 0
    scheduler: str = ""
    core_s: float = 0.0
    core_placed: int = 0

    @property
    def per_s(self) -> float:
        """Tasks bound per second, end to end."""
        return self.tasks / self.bound_s if self.bound_s > 0 else 0.0

    @property
    def core_per_s(self) -> float:
        """Tasks placed per second by the pure core on the same jobs."""
        return self.core_placed / self.core_s if self.core_s > 0 else 0.0


def core_baseline(nodes: int, sizes: list[int]) -> tuple[float, int]:
    """Times the pure core placing the same jobs on the same empty nodes (best of three)."""
    cores = frozenset(range(NODE_CORES))
    states = [NodeState(f"sim-{i}", cores, cores, NODE_MEMORY, NODE_MEMORY) for i in range(nodes)]
    queue = [
        JobRequest(f"job-{j}", tuple(TaskRequest(f"t{i}", 1, 64 * 1024**2) for i in range(size)),
                   submitted=float(j))
        for j, size in enumerate(sizes)
    ]  # fmt: skip
    best, placed = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        decisions = schedule(states, queue, STRATEGY)
        best = min(best, time.perf_counter() - t0)
        placed = sum(len(d.placements or ()) for d in decisions)
    return best, placed


def follow(store: Store, since: int, total: int, timeout: float, t0: float) -> tuple[float, float]:
    """Watches Tasks until ``total`` of them are bound.

    Returns:
        Seconds from ``t0`` until every Task existed, and until every one was bound.

    Raises:
        TimeoutError: Not all bound within ``timeout`` seconds of ``t0``.
    """
    seen: set[str] = set()
    bound: set[str] = set()
    created_s = 0.0
    while len(bound) < total:
        left = timeout - (time.perf_counter() - t0)
        if left <= 0:
            raise TimeoutError(f"{len(seen)} of {total} tasks created, {len(bound)} bound")
        for event in store.watch("Task", since, timeout=min(1.0, left)):
            since = max(since, event.revision)
            name = event.object["metadata"]["name"]
            seen.add(name)
            if not created_s and len(seen) >= total:
                created_s = time.perf_counter() - t0
            if (event.object.get("status") or {}).get("node"):
                bound.add(name)
            if len(bound) >= total:
                break
    return created_s, time.perf_counter() - t0


def bench(nodes: int, tasks: int, timeout: float = 600.0) -> E2EResult:
    """Runs the benchmark (see the module docstring) and returns its figures."""
    result = E2EResult(nodes, tasks)
    sizes = job_sizes(tasks)
    result.jobs = len(sizes)
    result.core_s, result.core_placed = core_baseline(nodes, sizes)
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp, ExitStack() as stack:
        store = stack.enter_context(closing(open_store(f"sqlite:///{Path(tmp, 'state.db')}")))
        group = build_sim_group(store, nodes, NODE_CORES, NODE_MEMORY)
        controller = build_job_controller(store, ControllerSettings())
        scheduler = Scheduler(store, SchedulerSettings(strategy=STRATEGY))
        print(f"  {nodes} hollow nodes registering ...", flush=True)
        stack.enter_context(running(group.run, "agent-group"))
        result.register_s = wait_until(
            lambda: all(a.registered for a in group.agents), timeout, "registration"
        )
        stack.enter_context(running(controller.run, "job-controller"))
        stack.enter_context(running(scheduler.run, "scheduler"))
        time.sleep(1.0)  # let both loops finish their first (empty) list
        passes0 = scheduler.passes
        jobs: list[Object] = []
        for j, size in enumerate(sizes):
            job = sim_job(f"job-{j}", size)
            del job["status"]  # as applied: the job controller writes the status
            jobs.append(job)
        print(f"  applying {len(jobs)} jobs ({tasks} tasks); timing until all bound ...",
              flush=True)  # fmt: skip
        since = store.revision()
        t0 = time.perf_counter()
        for job in jobs:
            store.create(job)
        result.applied_s = time.perf_counter() - t0
        result.tasks_created_s, result.bound_s = follow(store, since, tasks, timeout, t0)
        result.passes = scheduler.passes - passes0
        result.scheduler = scheduler.summary()
    return result


def lines(r: E2EResult) -> list[str]:
    """The run's figures as text lines."""
    return [
        f"{r.nodes} sim nodes ({NODE_CORES} cores each), {r.jobs} jobs, {r.tasks} one-core tasks, "
        f"{STRATEGY}",
        f"nodes registered in {r.register_s:.1f} s (not counted)",
        f"apply -> all Jobs written      {r.applied_s:7.2f} s",
        f"apply -> all Tasks created     {r.tasks_created_s:7.2f} s",
        f"apply -> all Tasks bound       {r.bound_s:7.2f} s  = {r.per_s:.0f} placements/s",
        f"baseline: pure core, same jobs {r.core_s:7.3f} s  = {r.core_per_s:.0f} placements/s",
        f"scheduler: {r.passes} passes while timed; {r.scheduler}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e_placement_bench", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--nodes", type=int, default=1000, help="hollow nodes (1000)")
    parser.add_argument("--tasks", type=int, default=4000, help="one-core tasks (4000)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (600)")
    parser.add_argument("--quick", action="store_true", help="100 nodes, 400 tasks")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.tasks < 1:
        parser.error("--nodes and --tasks must be positive")
    nodes, tasks = (min(args.nodes, 100), min(args.tasks, 400)) if args.quick else (
        args.nodes, args.tasks)  # fmt: skip
    if tasks > nodes * NODE_CORES:
        parser.error(f"{tasks} one-core tasks do not fit on {nodes} nodes of {NODE_CORES} cores")
    result = bench(nodes, tasks, args.timeout)
    print()
    for line in lines(result):
        print(line)
    if args.json:
        document = asdict(result) | {"per_s": result.per_s, "core_per_s": result.core_per_s}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
