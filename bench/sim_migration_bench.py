"""Many cold migrations at once on hollow (sim) nodes, beside placing the same tasks afresh.

A fresh SQLite store in a temporary directory; ``--nodes`` sim nodes of ``--cores`` cores in
one agent group (as ``swarmapply agent --driver sim`` builds it; by default there are enough
nodes that every task can move), and the job controller, the
scheduler and the migrator on threads, as ``swarmapply controllers`` runs them. ``--tasks``
one-core jobs are applied; the *baseline* is the time from their creation until every task
runs. Then one cold Migration per task is created at once (no target given: the scheduler
chooses), and the time until every Migration has Succeeded is taken, with the allocation
invariant checked afterwards. Figures: both times, tasks (or migrations) per second, and the
Migrations' own median timings.

Not measured: live migration (the sim driver cannot checkpoint), Docker, MongoDB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.agent_bench import MiB, build_sim_group, running, table, wait_until
from swarmapply.api.store import Object, Store, open_store
from swarmapply.controllers.job import build as build_job_controller
from swarmapply.controllers.migrator import build as build_migrator
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings
from swarmapply.controllers.usage import usage

API = "swarmapply.io/v1"


def job(name: str) -> Object:
    task = {"name": "a", "image": "busybox", "cores": 1, "memory": 64 * MiB}
    return {"apiVersion": API, "kind": "Job", "metadata": {"name": name},
            "spec": {"tasks": [task], "restartPolicy": "Never"}}  # fmt: skip


def phases(store: Store, kind: str) -> list[str]:
    return [str((o.get("status") or {}).get("phase")) for o in store.list(kind).items]


@dataclass
class Figures:
    """What one run measured."""

    tasks: int
    placed_s: float
    moved_s: float
    succeeded: int
    conflicts: int
    totals: list[float] = field(default_factory=list)
    first_failure: str | None = None


def measure(nodes: int, cores: int, tasks: int, timeout: float) -> Figures:
    """Runs the benchmark (see the module docstring) and returns its figures."""
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        store = open_store(f"sqlite:///{Path(directory) / 'state.db'}")
        stack.callback(store.close)
        group = build_sim_group(store, nodes, cores, 1024 * 1024 * MiB)
        settings = ControllerSettings(workers=2)
        controller = build_job_controller(store, settings)
        migrator = build_migrator(store, settings)
        stack.enter_context(running(group.run, "agents"))
        stack.enter_context(running(controller.run, "job controller"))
        stack.enter_context(running(Scheduler(store).run, "scheduler"))
        stack.enter_context(running(migrator.run, "migrator"))
        wait_until(lambda: len(store.list("Node").items) == nodes, 60, "nodes registered")

        names = [f"job-{i}" for i in range(tasks)]
        for name in names:
            store.create(job(name))
        placed = wait_until(
            lambda: phases(store, "Task").count("Running") == tasks, timeout, "tasks Running"
        )
        for name in names:
            store.create({"apiVersion": API, "kind": "Migration",
                          "metadata": {"name": f"{name}-m"},
                          "spec": {"task": f"{name}-a", "mode": "cold"}})  # fmt: skip
        moved = wait_until(
            lambda: set(phases(store, "Migration")) <= {"Succeeded", "Failed"},
            timeout,
            "migrations finished",
        )
        finished = store.list("Migration").items
        succeeded = [m for m in finished if m["status"]["phase"] == "Succeeded"]
        conflicts = usage(store.list("Task").items, finished).conflicts
        total = [float(m["status"]["timings"]["total"]) for m in succeeded]
    failed = [m for m in finished if m["status"]["phase"] == "Failed"]
    first = str(failed[0]["status"].get("message")) if failed else None
    return Figures(tasks, placed, moved, len(succeeded), len(conflicts), total, first)


def bench(nodes: int, cores: int, tasks: int, timeout: float) -> list[str]:
    """Runs the benchmark and returns its report as text lines."""
    f = measure(nodes, cores, tasks, timeout)
    placed, moved, total = f.placed_s, f.moved_s, f.totals
    rows = [
        ["measure", "seconds", "per second"],
        [f"baseline: {tasks} one-core jobs, create -> all Running", f"{placed:.2f}",
         f"{tasks / placed:.0f}"],
        [f"{tasks} cold migrations at once, create -> all finished", f"{moved:.2f}",
         f"{tasks / moved:.0f}"],
    ]  # fmt: skip
    lines = table(rows, [False, True, True])
    lines.append(f"succeeded {f.succeeded} of {tasks}; core conflicts {f.conflicts}")
    if f.first_failure is not None:
        lines.append(f"first failure: {f.first_failure}")
    if total:
        lines.append(
            "one migration's own total (status.timings.total): "
            f"median {statistics.median(total):.3f} s, max {max(total):.3f} s"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--cores", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    print(f"{args.nodes} sim nodes x {args.cores} cores, {args.tasks} tasks")
    for line in bench(args.nodes, args.cores, args.tasks, args.timeout):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
