"""Packing quality of each placement strategy: nodes used against the lower bound.

For several seeded workloads of gang jobs with integer core counts (by default 500 jobs of 1 to
4 tasks of 1 to 8 cores, ``--max-cores`` to change the 8, 1 GiB per core) on identical empty
nodes (32 cores, 128 GiB, enough of them for every job), the whole queue is placed with one
call of the pure core ``schedule(nodes, queue, strategy)`` per strategy of
:data:`~swarmapply.controllers.placement_model.STRATEGIES`. Figures per strategy: the nodes
with any core used, the lower bound ``ceil(sum of cores / cores per node)`` (no packing can use
fewer nodes), and the excess over the bound in per cent.

Guarantees: the workloads are deterministic per seed; memory never limits (each node has 4 GiB
per core, tasks ask 1 GiB per core), so the figures are about cores alone; a strategy that
leaves jobs waiting is reported with how many (its node count then covers the placed jobs only).
``node`` places only pinned tasks and the workloads have none, so it places nothing here.

Not measured: speed (see ``placement_bench``), heterogeneous or partly used nodes, memory as a
limit, jobs arriving over time (one queue placed at once), pinned tasks, preemption.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from swarmapply.controllers.placement import Decision, JobRequest, NodeState, TaskRequest, schedule
from swarmapply.controllers.placement_model import STRATEGIES

GiB = 1024**3
NODE_CORES = 32
#: Memory per node core; tasks ask for 1 GiB per core, so memory never limits.
NODE_GIB_PER_CORE = 4


def make_jobs(
    count: int, seed: int, max_tasks: int = 4, max_cores: int = 8
) -> tuple[JobRequest, ...]:
    """``count`` unpinned gang jobs, ``job-0001`` onwards, deterministically (pure).

    Args:
        count: How many jobs.
        seed: The random seed.
        max_tasks: Tasks per job are uniform in 1..max_tasks.
        max_cores: Cores per task are uniform in 1..max_cores.

    Returns:
        The jobs in submission order, 1 GiB of memory per core.
    """
    rng = random.Random(f"packing-{seed}")
    jobs = []
    for j in range(count):
        tasks = []
        for t in range(rng.randint(1, max_tasks)):
            cores = rng.randint(1, max_cores)
            tasks.append(TaskRequest(f"t{t}", cores, cores * GiB))
        jobs.append(JobRequest(f"job-{j + 1:04d}", tuple(tasks), submitted=float(j + 1)))
    return tuple(jobs)


def total_cores(queue: Sequence[JobRequest]) -> int:
    """The cores the whole queue asks for (pure)."""
    return sum(task.cores for job in queue for task in job.tasks)


def lower_bound(queue: Sequence[JobRequest], node_cores: int = NODE_CORES) -> int:
    """``ceil(sum of cores / node_cores)``: no placement uses fewer identical nodes (pure).

    Raises:
        ValueError: ``node_cores`` is not positive.
    """
    if node_cores < 1:
        raise ValueError("node_cores must be at least 1")
    return math.ceil(total_cores(queue) / node_cores)


def make_nodes(queue: Sequence[JobRequest], node_cores: int = NODE_CORES) -> tuple[NodeState, ...]:
    """Enough identical empty nodes for every job of ``queue`` under any fit strategy (pure).

    With tasks of at most ``node_cores // 4`` cores, a first- or best-fit strategy opens a node
    only when every open one has fewer free cores than the task, so each full node holds more
    than three quarters of its cores: ``bound * 4 / 3 + 2`` nodes always suffice; twice the
    bound plus 4 leaves ample room for larger tasks too.
    """
    count = 2 * lower_bound(queue, node_cores) + 4
    cores = frozenset(range(node_cores))
    memory = node_cores * NODE_GIB_PER_CORE * GiB
    return tuple(NodeState(f"node-{i + 1}", cores, cores, memory, memory) for i in range(count))


def nodes_used(decisions: Sequence[Decision]) -> int:
    """How many distinct nodes the placements use (pure; the nodes started empty)."""
    return len({p.node for d in decisions for p in d.placements or ()})


def excess_percent(used: int, bound: int) -> float:
    """How far ``used`` is above ``bound``, in per cent of the bound (pure)."""
    return 0.0 if bound == 0 else (used - bound) * 100.0 / bound


@dataclass(frozen=True)
class PackingRow:
    """One strategy on one workload."""

    strategy: str
    seed: int
    jobs: int
    cores: int
    bound: int
    used: int
    waiting: int

    @property
    def excess(self) -> float:
        """Nodes used above the bound, in per cent."""
        return excess_percent(self.used, self.bound)


def pack(queue: Sequence[JobRequest], strategy: str, seed: int) -> PackingRow:
    """Places ``queue`` on fresh nodes with ``strategy``; returns the row (pure)."""
    nodes = make_nodes(queue)
    decisions = schedule(nodes, queue, strategy)
    waiting = sum(1 for d in decisions if d.placements is None)
    return PackingRow(
        strategy, seed, len(queue), total_cores(queue), lower_bound(queue), nodes_used(decisions),
        waiting,
    )  # fmt: skip


@dataclass(frozen=True)
class Summary:
    """One strategy over every workload."""

    strategy: str
    workloads: int
    used: int
    bound: int
    worst_excess: float
    waiting: int

    @property
    def excess(self) -> float:
        """Total nodes used above the total bound, in per cent."""
        return excess_percent(self.used, self.bound)


def summarise(rows: Sequence[PackingRow]) -> list[Summary]:
    """Per strategy (in first-seen order): totals over its workloads, and the worst (pure)."""
    by: dict[str, list[PackingRow]] = {}
    for r in rows:
        by.setdefault(r.strategy, []).append(r)
    return [
        Summary(
            strategy,
            len(rs),
            sum(r.used for r in rs),
            sum(r.bound for r in rs),
            max(r.excess for r in rs),
            sum(r.waiting for r in rs),
        )
        for strategy, rs in by.items()
    ]


def run(
    seeds: Sequence[int], jobs: int, strategies: Sequence[str] = STRATEGIES, max_cores: int = 8
) -> list[PackingRow]:
    """Every strategy on every seeded workload (tasks of 1..``max_cores`` cores)."""
    rows = []
    for seed in seeds:
        queue = make_jobs(jobs, seed, max_cores=max_cores)
        rows += [pack(queue, strategy, seed) for strategy in strategies]
    return rows


def summary_lines(summaries: Sequence[Summary]) -> list[str]:
    """The per-strategy table as text lines."""
    head = ("strategy", "workloads", "nodes used", "bound", "excess %", "worst %", "jobs waiting")
    table = [head]
    for s in summaries:
        table.append((s.strategy, str(s.workloads), str(s.used), str(s.bound),
                      f"{s.excess:.2f}", f"{s.worst_excess:.2f}", str(s.waiting)))  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for k, row in enumerate(table):
        cells = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.packing_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--seeds", type=int, default=5, help="workloads, seeds 1..N (5)")
    parser.add_argument("--jobs", type=int, default=500, help="jobs per workload (500)")
    parser.add_argument("--max-cores", type=int, default=8, help="cores per task, 1..N (8)")
    parser.add_argument("--json", metavar="OUT", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or not 1 <= args.max_cores <= NODE_CORES:
        parser.error(f"--seeds and --jobs must be at least 1, --max-cores 1..{NODE_CORES}")
    rows = run(range(1, args.seeds + 1), args.jobs, max_cores=args.max_cores)
    print(
        f"packing_bench: {args.seeds} workloads of {args.jobs} jobs (tasks of 1..{args.max_cores} "
        f"cores) on {NODE_CORES}-core nodes"
    )
    for line in summary_lines(summarise(rows)):
        print(line)
    if args.json:
        document = {"rows": [asdict(r) | {"excess": r.excess} for r in rows]}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
