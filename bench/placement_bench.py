"""Placement throughput of the gang scheduler, beside a naive linear scan measured in the same run.

For each cluster size (default 1,000 and 10,000 nodes), one seeded, deterministic workload:

* nodes with 8 to 64 cores and 2 to 8 GiB of memory per core, most of them partially
  allocated (a random subset of their cores and a share of their memory already held), a few
  not Ready or cordoned, so the cluster is fragmented as a busy one is;
* a queue of gang jobs (1 to 4 tasks of 1 to 16 cores, 0.5 to 4 GiB per core) asking for
  somewhat more cores than are free, so most jobs are placed and some wait.

Pure core: ``schedule(nodes, queue, strategy)`` per strategy, best of up to three runs, as
tasks placed per second. The naive baseline (in this module, not in the package) makes the same
decisions the same way (gang all-or-nothing, natural node order, the same job and task order,
cores chosen by ``pick_cores``) but finds each task's node by scanning every node: O(n) per
task. The run checks that both decided the same placements and prints the speed-up.

End to end: the same nodes (the held cores as Running background tasks) and a prefix of the
queue as Job and pending Task objects in a fresh SQLite store, then one timed
``Scheduler.schedule_once()`` pass per strategy (listing, placing and writing every binding),
as tasks bound per second. Creating the objects is timed apart and not part of that figure.
When the scheduler module is not importable the run says so and skips this part.

Not measured: pinned tasks, priorities, preemption, starvation holds, repeated passes, the
controller's watch and queueing, MongoDB. The core also explains every refusal (a scan of all
nodes per waiting job), which the naive baseline does not do, so the comparison favours it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from swarmapply.api.names import natural_key
from swarmapply.api.quantity import format_cpuset
from swarmapply.api.store import Object, Store, open_store
from swarmapply.controllers.placement import (
    Decision,
    JobRequest,
    NodeState,
    Placement,
    TaskRequest,
    schedule,
)
from swarmapply.controllers.placement_index import pick_cores
from swarmapply.controllers.settings import SchedulerSettings

GiB = 1024**3
API = "swarmapply.io/v1"
IMAGE = "registry.example.com/batch/worker:2.1"
NOW = "2026-01-01T00:00:00Z"
DEFAULT_STRATEGIES = ("first-fit", "best-fit", "first-fit-decreasing")
NAIVE_STRATEGIES = ("first-fit", "best-fit", "first-fit-decreasing", "best-fit-decreasing")
Rows = list[dict[str, Any]]


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """One cluster snapshot and the queue to place on it."""

    nodes: tuple[NodeState, ...]
    queue: tuple[JobRequest, ...]

    @property
    def tasks(self) -> int:
        """How many tasks the queue holds."""
        return sum(len(job.tasks) for job in self.queue)


def make_nodes(count: int, seed: int = 1) -> tuple[NodeState, ...]:
    """Builds ``count`` fragmented nodes, ``node-1`` to ``node-<count>``, deterministically.

    Args:
        count: How many nodes.
        seed: The random seed.

    Returns:
        Nodes with 8..64 cores and 2..8 GiB per core; about 70 % hold a random subset of their
        cores (and a proportional share of memory), about 1 % are not Ready, 1 % cordoned.
    """
    rng = random.Random(f"nodes-{seed}")
    nodes = []
    for i in range(1, count + 1):
        cores = rng.choice((8, 16, 24, 32, 48, 64))
        memory = cores * rng.choice((2, 4, 8)) * GiB
        ids = frozenset(range(cores))
        free, free_memory = ids, memory
        if rng.random() < 0.7:
            used = rng.sample(range(cores), rng.randint(1, cores - 1))
            free = ids - frozenset(used)
            free_memory = memory - memory * len(used) // cores
        roll = rng.random()
        nodes.append(
            NodeState(
                f"node-{i}", ids, free, memory, free_memory, roll >= 0.01, not 0.01 <= roll < 0.02
            )
        )
    return tuple(nodes)


def make_queue(
    nodes: Sequence[NodeState], jobs: int | None = None, seed: int = 1
) -> tuple[JobRequest, ...]:
    """Builds a queue of unpinned gang jobs, ``job-00001`` onwards, deterministically.

    Args:
        nodes: The cluster (sizes the default queue).
        jobs: How many jobs; by default enough to ask for about 1.2 times the free cores of
            the usable nodes.
        seed: The random seed.

    Returns:
        Jobs of 1..4 tasks with 1..16 cores (small counts more likely) and 0.5..4 GiB per
        core, submitted in name order.
    """
    rng = random.Random(f"queue-{seed}")
    free = sum(len(n.free_cores) for n in nodes if n.ready and n.schedulable)
    target = None if jobs is not None else free * 1.2
    queue: list[JobRequest] = []
    asked = 0
    while (len(queue) < jobs) if jobs is not None else (asked < (target or 0)):
        tasks = []
        for t in range(rng.randint(1, 4)):
            cores = rng.choice((1, 1, 2, 2, 4, 4, 6, 8, 8, 12, 16))
            memory = int(cores * rng.choice((0.5, 1, 2, 4)) * GiB)
            tasks.append(TaskRequest(f"w{t}", cores, memory))
            asked += cores
        number = len(queue) + 1
        queue.append(JobRequest(f"job-{number:05d}", tuple(tasks), submitted=float(number)))
    return tuple(queue)


def make_workload(nodes: int, jobs: int | None = None, seed: int = 1) -> Workload:
    """The seeded workload for a cluster of ``nodes`` nodes (see :func:`make_queue`)."""
    cluster = make_nodes(nodes, seed)
    return Workload(cluster, make_queue(cluster, jobs, seed))


# ---------------------------------------------------------------------------- naive baseline


def naive_schedule(
    nodes: Sequence[NodeState], queue: Sequence[JobRequest], strategy: str
) -> list[Decision]:
    """Places like :func:`schedule` for unpinned jobs, scanning every node for every task.

    Same semantics as the core for jobs without pins, priorities or their own strategy: jobs
    in submission order (largest total cores first for ``*-decreasing``, stable), a job's
    tasks largest first, nodes in natural name order, only Ready and schedulable nodes, the
    first node that fits (first fit) or the one left with the fewest free cores, lowest on ties
    (best fit), cores by ``pick_cores``, a job placed whole or rolled back. Waiting jobs get a
    fixed reason (the core explains them).

    Args:
        nodes: The cluster.
        queue: Unpinned jobs.
        strategy: ``first-fit``, ``best-fit`` or their ``-decreasing`` variants.

    Returns:
        One decision per job, in processing order.

    Raises:
        ValueError: The strategy is not one the baseline implements, or a job has pins.
    """
    if strategy not in NAIVE_STRATEGIES:
        raise ValueError(f"the naive baseline does not implement strategy {strategy!r}")
    best = strategy.startswith("best-fit")
    ordered = sorted(nodes, key=lambda node: natural_key(node.name))
    usable = [node.ready and node.schedulable for node in ordered]
    free = [set(node.free_cores) for node in ordered]
    memory = [node.free_memory for node in ordered]
    jobs = sorted(queue, key=lambda job: job.submitted)
    if strategy.endswith("-decreasing"):
        jobs.sort(key=lambda job: -sum(task.cores for task in job.tasks))
    decisions = []
    for job in jobs:
        taken: list[tuple[int, int, tuple[int, ...]]] = []  # (task index, position, cores)
        for i in sorted(range(len(job.tasks)), key=lambda i: -job.tasks[i].cores):
            task = job.tasks[i]
            if task.node is not None or job.strategy is not None:
                raise ValueError(f"job {job.name}: the naive baseline places unpinned jobs only")
            chosen = -1
            for pos in range(len(ordered)):  # the linear scan this baseline is about
                count = len(free[pos])
                if usable[pos] and count >= task.cores and memory[pos] >= task.memory:
                    if not best:
                        chosen = pos
                        break
                    if chosen < 0 or count < len(free[chosen]):
                        chosen = pos
            if chosen < 0:
                break
            cores = pick_cores(free[chosen], task.cores)
            free[chosen].difference_update(cores)
            memory[chosen] -= task.memory
            taken.append((i, chosen, cores))
        if len(taken) < len(job.tasks):
            for k, pos, cores in taken:
                free[pos].update(cores)
                memory[pos] += job.tasks[k].memory
            decisions.append(Decision(job.name, None, "does not fit"))
            continue
        taken.sort()
        placements = tuple(
            Placement(job.name, job.tasks[i].name, ordered[pos].name, cores, job.tasks[i].memory)
            for i, pos, cores in taken
        )
        decisions.append(Decision(job.name, placements, None))
    return decisions


def outcome(decisions: Sequence[Decision]) -> dict[str, tuple[Placement, ...] | None]:
    """The placements per job, without the reasons (which only the core writes)."""
    return {d.job: d.placements for d in decisions}


def placed_tasks(decisions: Sequence[Decision]) -> int:
    """How many tasks the decisions place."""
    return sum(len(d.placements) for d in decisions if d.placements is not None)


# ---------------------------------------------------------------------------- timing


def best_of(
    run: Callable[[], list[Decision]], repeats: int, budget: float
) -> tuple[float, list[Decision], int]:
    """Runs ``run`` up to ``repeats`` times, no new run once ``budget`` seconds have passed.

    Returns:
        The fastest run's seconds, the decisions of the last run, and how many runs there were.
    """
    times: list[float] = []
    decisions: list[Decision] = []
    start = time.perf_counter()
    while len(times) < repeats and not (times and time.perf_counter() - start >= budget):
        t0 = time.perf_counter()
        decisions = run()
        times.append(time.perf_counter() - t0)
    return min(times), decisions, len(times)


def row(nodes: int, strategy: str, impl: str, placed: int, seconds: float, runs: int) -> Any:
    return {
        "nodes": nodes,
        "strategy": strategy,
        "implementation": impl,
        "placed": placed,
        "seconds": seconds,
        "per_s": placed / seconds if seconds > 0 else float("inf"),
        "runs": runs,
        "speedup": None,
    }


def bench_core(
    work: Workload, strategies: Sequence[str], repeats: int, budget: float
) -> tuple[Rows, list[str]]:
    """Times the core and the naive baseline on ``work`` for each strategy."""
    results: Rows = []
    notes: list[str] = []
    n = len(work.nodes)
    for strategy in strategies:
        print(f"  {n} nodes, {strategy}: core ...", flush=True)
        run = partial(schedule, work.nodes, work.queue, strategy)
        secs, core, runs = best_of(run, repeats, budget)
        core_row = row(n, strategy, "core (indexed)", placed_tasks(core), secs, runs)
        waiting = sum(d.placements is None for d in core)
        notes.append(
            f"{n} nodes, {strategy}: {len(work.queue)} jobs / {work.tasks} tasks queued; "
            f"core placed {len(core) - waiting} jobs ({placed_tasks(core)} tasks), "
            f"{waiting} jobs wait"
        )
        results.append(core_row)
        if strategy not in NAIVE_STRATEGIES:
            notes.append(f"{n} nodes, {strategy}: no naive baseline for this strategy")
            continue
        print(f"  {n} nodes, {strategy}: naive linear scan ...", flush=True)
        run = partial(naive_schedule, work.nodes, work.queue, strategy)
        secs, naive, runs = best_of(run, repeats, budget)
        naive_row = row(n, strategy, "naive linear scan", placed_tasks(naive), secs, runs)
        core_row["speedup"] = naive_row["seconds"] / core_row["seconds"]
        results.append(naive_row)
        same = outcome(core) == outcome(naive)
        notes.append(f"{n} nodes, {strategy}: same decisions: {'yes' if same else 'NO'}")
    return results, notes


# ---------------------------------------------------------------------------- end to end


def node_object(node: NodeState) -> Object:
    """The Node object for ``node`` as its agent registers it (Ready, capacity, allocation)."""
    held = sorted(node.cores - node.free_cores)
    status: Object = {
        "capacity": {
            "cores": len(node.cores),
            "memory": node.memory,
            "coreIds": sorted(node.cores),
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if node.ready else "False",
                "reason": "Heartbeat" if node.ready else "HeartbeatMissed",
                "lastTransitionTime": NOW,
            }
        ],
        "heartbeatTime": NOW,
        "driver": "sim",
        "allocated": {
            "cores": len(held),
            "memory": node.memory - node.free_memory,
            "cpuset": format_cpuset(held),
            "tasks": (
                [
                    {
                        "task": background_names(node)[1],
                        "job": background_names(node)[0],
                        "cpuset": format_cpuset(held),
                        "memory": node.memory - node.free_memory,
                    }
                ]
                if held
                else []
            ),
        },
    }
    spec: Object = {"address": f"10.0.{int(node.name.rsplit('-', 1)[-1]) % 256}.1"}
    if not node.schedulable:
        spec["unschedulable"] = True
    return {"apiVersion": API, "kind": "Node", "metadata": {"name": node.name}, "spec": spec,
            "status": status}  # fmt: skip


def background_names(node: NodeState) -> tuple[str, str]:
    """The names of the Job and Task that hold a node's pre-allocated cores."""
    return f"held-{node.name}", f"held-{node.name}-w0"


def job_object(job: JobRequest, phase: str = "Pending") -> Object:
    """The Job object for ``job`` (its tasks in ``spec.tasks``)."""
    tasks = [
        {"name": t.name, "image": IMAGE, "cores": t.cores, "memory": t.memory}
        | ({"node": t.node} if t.node else {})
        | ({"cpuset": format_cpuset(t.cpuset)} if t.cpuset is not None else {})
        for t in job.tasks
    ]
    spec = {"tasks": tasks, "priority": job.priority, "restartPolicy": "Never"}
    return {"apiVersion": API, "kind": "Job", "metadata": {"name": job.name}, "spec": spec,
            "status": {"phase": phase, "tasksTotal": len(tasks)}}  # fmt: skip


def task_object(job: Object, task: TaskRequest, status: Object | None = None) -> Object:
    """The Task the job controller creates for ``task`` of the created Job ``job``, plus status.

    The job controller's shape: name ``<job>-<task>``, labels ``swarmapply.io/job`` and
    ``swarmapply.io/task`` (the scheduler queues a job once a Task carries each of its task
    names), attempt annotations, a controller owner reference to the Job, and the spec entry
    with ``job``, ``network``, ``priority`` and ``restartPolicy``. ``status`` defaults to
    phase Pending.
    """
    name, spec = job["metadata"]["name"], job["spec"]
    [entry] = [e for e in spec["tasks"] if e["name"] == task.name]
    owner = {"apiVersion": API, "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}
    owner |= {"controller": True, "blockOwnerDeletion": True}
    metadata = {
        "name": f"{name}-{task.name}",
        "labels": {"swarmapply.io/job": name, "swarmapply.io/task": task.name},
        "annotations": {"swarmapply.io/attempt": "0", "swarmapply.io/failures": "0"},
        "ownerReferences": [owner],
    }
    task_spec = {"job": name, **entry, "network": name, "priority": spec.get("priority", 0)}
    del task_spec["name"]
    task_spec["restartPolicy"] = spec.get("restartPolicy", "Never")
    return {"apiVersion": API, "kind": "Task", "metadata": metadata, "spec": task_spec,
            "status": status or {"phase": "Pending"}}  # fmt: skip


def populate(store: Store, nodes: Sequence[NodeState], queue: Sequence[JobRequest]) -> int:
    """Creates the cluster and the queue in ``store``; returns how many objects it created.

    Per node: a Node (Ready condition, ``status.capacity`` with core ids, ``status.allocated``)
    and, when some of its cores are held, a Running Job ``held-<node>`` with one Task
    ``held-<node>-w0`` pinned to the node and bound (``status.node/cpuset/memory``) to the held
    cores and memory. Per queued job: a Pending Job and one Pending Task per task, as the job
    controller creates it (see :func:`task_object`).
    """
    created = 0
    for node in nodes:
        store.create(node_object(node))
        created += 1
        held = node.cores - node.free_cores
        if not held:
            continue
        memory = max(1, node.memory - node.free_memory)
        job_name, _ = background_names(node)
        task = TaskRequest("w0", len(held), memory, node.name, held)
        job = store.create(job_object(JobRequest(job_name, (task,)), phase="Running"))
        status: Object = {"phase": "Running", "node": node.name, "cpuset": format_cpuset(held)}
        status |= {"memory": memory, "startTime": NOW}
        store.create(task_object(job, task, status))
        created += 2
    for request in queue:
        job = store.create(job_object(request))
        for task in request.tasks:
            store.create(task_object(job, task))
        created += 1 + len(request.tasks)
    return created


def e2e_queue(queue: Sequence[JobRequest], tasks: int) -> tuple[JobRequest, ...]:
    """The longest prefix of whole jobs of ``queue`` with at most ``tasks`` tasks."""
    prefix: list[JobRequest] = []
    total = 0
    for job in queue:
        if total + len(job.tasks) > tasks:
            break
        prefix.append(job)
        total += len(job.tasks)
    return tuple(prefix)


def scheduler_class() -> tuple[Any, str | None]:
    """The Scheduler class, or None and why it cannot be used."""
    try:
        module = importlib.import_module("swarmapply.controllers.scheduler")
        cls = module.Scheduler
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not callable(getattr(cls, "schedule_once", None)):
        return None, "Scheduler has no method schedule_once"
    return cls, None


def bench_e2e(
    work: Workload, strategies: Sequence[str], tasks: int, scheduler: Any
) -> tuple[Rows, list[str]]:
    """Creates the workload in a fresh SQLite store and times one scheduling pass per strategy."""
    n = len(work.nodes)
    queue = e2e_queue(work.queue, tasks)
    results: Rows = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
        seed = Path(tmp, "seed.db")
        print(f"  {n} nodes: creating the cluster and {tasks} pending tasks ...", flush=True)
        t0 = time.perf_counter()
        with closing(open_store(f"sqlite:///{seed}?synchronous=normal")) as store:
            created = populate(store, work.nodes, queue)
        made = time.perf_counter() - t0
        notes.append(
            f"{n} nodes, end to end: created {created} objects ({len(queue)} pending jobs, "
            f"{sum(len(j.tasks) for j in queue)} pending tasks) in {made:.1f}s, not counted"
        )
        for strategy in strategies:
            db = Path(tmp, "bench.db")
            for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                stale.unlink(missing_ok=True)
            with closing(sqlite3.connect(seed)) as src, closing(sqlite3.connect(db)) as dst:
                src.backup(dst)
            print(f"  {n} nodes, {strategy}: one scheduling pass ...", flush=True)
            with closing(open_store(f"sqlite:///{db}")) as store:
                instance = scheduler(store, SchedulerSettings(strategy=strategy))
                t0 = time.perf_counter()
                bound = int(instance.schedule_once())
                secs = time.perf_counter() - t0
                scheduled = {
                    t["metadata"]["name"]: (t["status"]["node"], t["status"]["cpuset"])
                    for t in store.list("Task", field_selector="status.phase=Scheduled").items
                }
                closer = getattr(instance, "close", None)
                if callable(closer):
                    closer()
            results.append(row(n, strategy, "scheduler + sqlite", bound, secs, 1))
            expected = {
                f"{p.job}-{p.task}": (p.node, format_cpuset(p.cpuset))
                for d in schedule(work.nodes, queue, strategy)
                for p in d.placements or ()
            }
            same = bound == len(scheduled) and scheduled == expected
            notes.append(
                f"{n} nodes, {strategy}, end to end: bound {bound} tasks ({len(scheduled)} "
                f"Scheduled in the store), the pure core places {len(expected)} of this queue; "
                f"same decisions as the core: {'yes' if same else 'NO'}"
            )
    return results, notes


# ---------------------------------------------------------------------------- output


def print_table(results: Rows) -> None:
    head = ("nodes", "strategy", "implementation", "tasks placed", "seconds", "placements/s",
            "speed-up", "runs")  # fmt: skip
    table: list[tuple[str, ...]] = [head]
    for r in results:
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        table.append(
            (
                str(r["nodes"]),
                r["strategy"],
                r["implementation"],
                str(r["placed"]),
                f"{r['seconds']:.3f}",
                f"{r['per_s']:.0f}",
                speedup,
                str(r["runs"]),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    table.insert(1, tuple("-" * w for w in widths))
    for line in table:
        cells = (
            c.ljust(w) if 0 < i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        print("  ".join(cells).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--nodes", default="1000,10000", help="comma-separated cluster sizes")
    parser.add_argument("--jobs", type=int, help="jobs in the queue (default: ~1.2x free cores)")
    parser.add_argument(
        "--strategies", default=",".join(DEFAULT_STRATEGIES), help="comma-separated strategies"
    )
    parser.add_argument(
        "--e2e", action=argparse.BooleanOptionalAction, default=True, help="end to end on SQLite"
    )
    parser.add_argument(
        "--e2e-tasks",
        type=int,
        help="pending tasks end to end (default: 2000 up to 1,000 nodes, else 1000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=4.0,
        help="start no further run of an implementation after this many seconds",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", metavar="OUT", help="also write the rows and notes to this file")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.nodes.split(",") if s.strip()]
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        for strategy in strategies:
            SchedulerSettings(strategy=strategy)
    except ValueError as exc:
        parser.error(f"--nodes or --strategies: {exc}")
    if not sizes or min(sizes) < 1 or not strategies or (args.jobs is not None and args.jobs < 1):
        parser.error("--nodes, --strategies and --jobs need at least one (positive) value")
    repeats = 3
    if args.quick:
        sizes, repeats = [min(s, 500) for s in sizes[:1]] + [min(s, 2000) for s in sizes[1:2]], 1

    print(
        f"placement_bench: nodes {', '.join(map(str, sizes))}, strategies "
        f"{', '.join(strategies)}, seed {args.seed}, Python {sys.version.split()[0]}"
    )
    results, notes = measure(
        sizes, strategies, args.jobs, args.seed, repeats, args.max_seconds, args.e2e,
        args.e2e_tasks, args.quick,
    )  # fmt: skip
    print()
    print_table(results)
    for note in notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "notes": notes}, indent=2))
    return 1 if decisions_differ(notes) else 0


def decisions_differ(notes: Sequence[str]) -> bool:
    """Whether a note says that two implementations decided differently."""
    return any("same decisions" in note and note.endswith(": NO") for note in notes)


def measure(
    sizes: Sequence[int],
    strategies: Sequence[str],
    jobs: int | None = None,
    seed: int = 1,
    repeats: int = 3,
    budget: float = 4.0,
    e2e: bool = True,
    e2e_tasks: int | None = None,
    quick: bool = False,
) -> tuple[Rows, list[str]]:
    """Every part of the benchmark for each cluster size; returns the rows and the notes.

    Args:
        sizes: Cluster sizes (nodes).
        strategies: Strategies to time.
        jobs: Jobs in the queue (default: about 1.2 times the free cores).
        seed: The workload seed.
        repeats: Runs per implementation (the fastest counts).
        budget: No further run of an implementation after this many seconds.
        e2e: Also time one scheduler pass on SQLite per strategy.
        e2e_tasks: Pending tasks end to end (default: 2000 up to 1,000 nodes, else 1000).
        quick: At most 300 pending tasks end to end.
    """
    scheduler, missing = scheduler_class() if e2e else (None, None)
    results: Rows = []
    notes: list[str] = []
    if e2e and scheduler is None:
        notes.append(f"end to end: scheduler not available ({missing})")
        print(notes[-1], flush=True)
    for size in sizes:
        work = make_workload(size, jobs, seed)
        rows_, notes_ = bench_core(work, strategies, repeats, budget)
        results += rows_
        notes += notes_
        if scheduler is not None:
            tasks = e2e_tasks or (2000 if size <= 1000 else 1000)
            if quick:
                tasks = min(tasks, 300)
            rows_, notes_ = bench_e2e(work, strategies, tasks, scheduler)
            results += rows_
            notes += notes_
    return results, notes


if __name__ == "__main__":
    sys.exit(main())
