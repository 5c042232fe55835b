"""Decision latency of the scheduler for one 16-task gang job on a large, busy cluster.

The cluster: ``--nodes`` nodes (default 10,000) of 32 cores and 128 GiB, holding ``--tasks``
running tasks (default 100,000) of 1 to 4 cores each on random, non-contiguous core ids, with
the load spread unevenly (each node gets a random share, so some are nearly full and some
nearly empty). ``--states`` such clusters are built from different seeds, so which nodes are
fragmented, and how, varies; on each, ``--decisions / --states`` different 16-task jobs (1 to 4
cores and 1 GiB per core per task) are decided one at a time:

* **pure core**: ``schedule(nodes, [job], "best-fit")``, the whole call timed (it builds its
  indexes from the snapshot each time, as every scheduling pass does); p50, p95, p99 and max;
* **baseline**: the naive linear scan of ``placement_bench`` deciding the same jobs on the same
  snapshots (same placements, checked), timed the same way.

With ``--store`` (on by default, off with ``--quick``), one of those clusters is also written
to a fresh SQLite store (Nodes, one Running Job per node holding its tasks, the tasks bound), a
first untimed ``Scheduler.schedule_once()`` pass settles every Node's allocation view, and then
``--passes`` times a Pending 16-task Job and its Tasks are created and one pass that binds them
is timed: listing every Node, Task and Job, planning and writing the 16 bindings. Building the
store is timed apart and reported.

Not measured: the watch that triggers a pass, MongoDB, preemption, starvation holds, pinned
tasks, other strategies. The core's decision depends on the snapshot only; the naive baseline
does no explaining, so it is favoured when a job waits (none does here: there is room).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.placement_bench import job_object, naive_schedule, node_object, outcome, task_object
from bench.suite import percentile
from swarmapply.api.quantity import format_cpuset
from swarmapply.api.store import Object, Store, open_store
from swarmapply.controllers.placement import JobRequest, NodeState, TaskRequest, schedule
from swarmapply.controllers.settings import SchedulerSettings

GiB = 1024**3
NODE_CORES = 32
NODE_MEMORY = 128 * GiB
GANG = 16
STRATEGY = "best-fit"


# ------------------------------------------------------------------------------ pure parts


@dataclass(frozen=True)
class Held:
    """One running task of the background load."""

    node: int
    cores: frozenset[int]
    memory: int


def build_load(nodes: int, tasks: int, seed: int) -> list[list[Held]]:
    """``tasks`` running tasks spread unevenly over ``nodes`` 32-core nodes (pure).

    Each node gets a random weight; tasks go to nodes drawn by weight, 1..4 cores on random
    free core ids (not contiguous), 1 GiB per core. A task for a node without enough free
    cores takes what is left (at least one core) or is drawn again elsewhere.

    Returns:
        Per node (index 0..nodes-1), the tasks it holds.

    Raises:
        ValueError: The tasks cannot fit (more than one per core).
    """
    if tasks > nodes * NODE_CORES:
        raise ValueError(f"{tasks} tasks do not fit on {nodes} nodes of {NODE_CORES} cores")
    rng = random.Random(f"load-{seed}")
    weights = [rng.random() ** 2 + 0.05 for _ in range(nodes)]
    free = [list(range(NODE_CORES)) for _ in range(nodes)]
    held: list[list[Held]] = [[] for _ in range(nodes)]
    placed = 0
    while placed < tasks:
        for n in rng.choices(range(nodes), weights, k=min(4096, tasks - placed)):
            if not free[n]:
                continue
            want = min(rng.choice((1, 1, 2, 2, 3, 4)), len(free[n]))
            rng.shuffle(free[n])
            cores = frozenset(free[n][-want:])
            del free[n][-want:]
            held[n].append(Held(n, cores, want * GiB))
            placed += 1
            if placed == tasks:
                break
    return held


def node_states(load: Sequence[Sequence[Held]]) -> tuple[NodeState, ...]:
    """The scheduler's view of the loaded nodes, ``node-1`` onwards (pure)."""
    all_cores = frozenset(range(NODE_CORES))
    states = []
    for n, tasks in enumerate(load):
        used = frozenset().union(*(t.cores for t in tasks)) if tasks else frozenset()
        memory = sum(t.memory for t in tasks)
        states.append(
            NodeState(f"node-{n + 1}", all_cores, all_cores - used, NODE_MEMORY,
                      NODE_MEMORY - memory)
        )  # fmt: skip
    return tuple(states)


def gang_job(name: str, seed: int, size: int = GANG) -> JobRequest:
    """A ``size``-task gang job, 1..4 cores and 1 GiB per core per task (pure)."""
    rng = random.Random(f"gang-{seed}")
    tasks = []
    for t in range(size):
        cores = rng.randint(1, 4)
        tasks.append(TaskRequest(f"t{t}", cores, cores * GiB))
    return JobRequest(name, tuple(tasks), submitted=1.0)


@dataclass
class Latencies:
    """Seconds per decision of the core and of the baseline."""

    core: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    differ: int = 0
    waited: int = 0
    build_s: float = 0.0


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and max of ``values`` (pure)."""
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


# --------------------------------------------------------------------------- measurement


def measure_core(nodes: int, tasks: int, states: int, decisions: int) -> Latencies:
    """Times ``decisions`` decisions spread over ``states`` seeded clusters (core and naive)."""
    result = Latencies()
    per_state = max(1, decisions // states)
    for s in range(states):
        t0 = time.perf_counter()
        snapshot = node_states(build_load(nodes, tasks, seed=s + 1))
        result.build_s += time.perf_counter() - t0
        print(f"  state {s + 1}/{states}: {per_state} decisions ...", flush=True)
        for d in range(per_state):
            job = gang_job(f"gang-{s}-{d}", seed=s * 1000 + d)
            t0 = time.perf_counter()
            core = schedule(snapshot, (job,), STRATEGY)
            result.core.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            naive = naive_schedule(snapshot, (job,), STRATEGY)
            result.naive.append(time.perf_counter() - t0)
            result.differ += outcome(core) != outcome(naive)
            result.waited += core[0].placements is None
    return result


@dataclass
class StoreResult:
    """The store part's figures."""

    objects: int = 0
    build_s: float = 0.0
    settle_s: float = 0.0
    passes: list[float] = field(default_factory=list)
    bound: list[int] = field(default_factory=list)


def populate(store: Store, load: Sequence[Sequence[Held]]) -> int:
    """Writes the loaded cluster: per node a Node, a Running Job and its bound Tasks."""
    created = 0
    for state, tasks in zip(node_states(load), load, strict=True):
        store.create(node_object(state))
        created += 1
        if not tasks:
            continue
        requests = tuple(TaskRequest(f"w{i}", len(t.cores), t.memory) for i, t in enumerate(tasks))
        job = store.create(job_object(JobRequest(f"held-{state.name}", requests), phase="Running"))
        created += 1
        for request, held in zip(requests, tasks, strict=True):
            status: Object = {"phase": "Running", "node": state.name}
            status |= {"cpuset": format_cpuset(held.cores), "memory": held.memory}
            store.create(task_object(job, request, status))
            created += 1
    return created


def measure_store(nodes: int, tasks: int, passes: int) -> StoreResult:
    """Builds one cluster in a fresh SQLite store and times ``passes`` one-job passes."""
    from swarmapply.controllers.scheduler import Scheduler

    result = StoreResult()
    load = build_load(nodes, tasks, seed=1)
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
        db = Path(tmp, "state.db")
        print(f"  store: writing {nodes} nodes and {tasks} running tasks ...", flush=True)
        t0 = time.perf_counter()
        with closing(open_store(f"sqlite:///{db}?synchronous=normal")) as store:
            result.objects = populate(store, load)
        result.build_s = time.perf_counter() - t0
        with closing(open_store(f"sqlite:///{db}")) as store:
            scheduler = Scheduler(store, SchedulerSettings(strategy=STRATEGY))
            t0 = time.perf_counter()
            scheduler.schedule_once()  # settles every Node's allocation view; not counted
            result.settle_s = time.perf_counter() - t0
            for p in range(passes):
                request = gang_job(f"gang-{p}", seed=10_000 + p)
                job = store.create(job_object(request))
                for task in request.tasks:
                    store.create(task_object(job, task))
                print(f"  store: timed pass {p + 1}/{passes} ...", flush=True)
                t0 = time.perf_counter()
                bound = scheduler.schedule_once()
                result.passes.append(time.perf_counter() - t0)
                result.bound.append(bound)
    return result


def as_json(lat: Latencies, store: StoreResult | None) -> dict[str, Any]:
    """The figures as one JSON-ready dict."""
    document: dict[str, Any] = {
        "decisions": len(lat.core),
        "core": summary(lat.core),
        "naive": summary(lat.naive),
        "differ": lat.differ,
        "waited": lat.waited,
        "state_build_s": lat.build_s,
    }
    if store is not None:
        document["store"] = {
            "objects": store.objects,
            "build_s": store.build_s,
            "settle_s": store.settle_s,
            "passes": store.passes,
            "bound": store.bound,
        }
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decision_latency", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes (10000)")
    parser.add_argument("--tasks", type=int, default=100_000, help="running tasks (100000)")
    parser.add_argument("--states", type=int, default=10, help="seeded cluster states (10)")
    parser.add_argument("--decisions", type=int, default=200, help="decisions in all (200)")
    parser.add_argument(
        "--store", action=argparse.BooleanOptionalAction, default=True,
        help="also time scheduler passes on a SQLite store",
    )  # fmt: skip
    parser.add_argument("--passes", type=int, default=5, help="timed store passes (5)")
    parser.add_argument("--quick", action="store_true", help="1,000 nodes, 10,000 tasks, no store")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.nodes, args.tasks, args.states, args.decisions, args.passes) < 1:
        parser.error("--nodes, --tasks, --states, --decisions and --passes must be positive")
    nodes, tasks, states, decisions = args.nodes, args.tasks, args.states, args.decisions
    with_store = args.store
    if args.quick:
        nodes, tasks, states, decisions = min(nodes, 1000), min(tasks, 10_000), 2, 20
        with_store = False
    print(f"decision_latency: {nodes} nodes, {tasks} running tasks, {decisions} decisions of "
          f"one {GANG}-task job over {states} states, {STRATEGY}", flush=True)  # fmt: skip
    lat = measure_core(nodes, tasks, states, decisions)
    store = measure_store(nodes, tasks, args.passes) if with_store else None
    print()
    print("decision            p50 ms   p95 ms   p99 ms   max ms")
    for label, values in (("core schedule()", lat.core), ("naive linear scan", lat.naive)):
        s = summary(values)
        print(f"{label:<18} {s['p50'] * 1e3:7.1f}  {s['p95'] * 1e3:7.1f}  {s['p99'] * 1e3:7.1f}  "
              f"{s['max'] * 1e3:7.1f}")  # fmt: skip
    print(
        f"same decisions: {'yes' if not lat.differ else f'NO ({lat.differ} differ)'}; "
        f"jobs that waited: {lat.waited}; building the states took {lat.build_s:.1f} s"
    )
    if store is not None:
        print(
            f"store: {store.objects} objects written in {store.build_s:.1f} s (not counted), "
            f"first pass (allocation views) {store.settle_s:.2f} s; one-job passes: median "
            f"{statistics.median(store.passes):.3f} s, max {max(store.passes):.3f} s, "
            f"bound {store.bound}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(lat, store), indent=2) + "\n")
    return 1 if lat.differ else 0


if __name__ == "__main__":
    sys.exit(main())
