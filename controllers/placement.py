"""Pure placement core of the gang scheduler: exclusive cores and reserved memory per task.

:func:`schedule` takes a snapshot of the nodes and the queue of waiting jobs and decides, for
each job, either a complete placement (a node, a set of core ids and the memory for every task)
or the reason the job waits. It does no I/O, keeps no state between calls and starts no threads;
callers convert store objects to and from these frozen dataclasses.

Guarantees, within one call:

* gang placement: a job gets every task placed or none (no partial placement); a job that does
  not fit is skipped and does not block later jobs;
* no core id is given twice (neither to two tasks nor a core that was not free), no node goes
  over its free memory, and only nodes that are Ready and schedulable are used;
* pinned tasks go exactly where pinned (``node``, and ``cpuset`` when given), else the job waits
  with the reason;
* results are deterministic: nodes are taken in natural name order (``node-2`` before
  ``node-10``), and within a node the lowest contiguous run of free cores is preferred, else the
  lowest free ids.

Starvation: a job that needs much (many cores, or a whole node) can wait forever while smaller
jobs behind it take every core that frees up. With ``starvation_seconds`` set, the first job in
processing order that does not fit although it has waited that long holds back all jobs after it
(they wait, with a reason naming it), so the capacity freed by finishing tasks accumulates until
it fits: a reservation, as in backfill-less batch schedulers. It costs utilisation while it
holds; without the option no job is ever held back.

Job order: the queue is first put in submission order (``submitted``, ties in queue order);
``first-fit``, ``best-fit`` and ``node`` keep it; ``first-fit-decreasing`` and
``best-fit-decreasing`` order by total requested cores, largest first (stable); ``priority``
orders by priority, highest first (stable, so FIFO within a priority). A job's own ``strategy``
only changes how its tasks' nodes are chosen (``*-decreasing`` choose like their base strategy,
``priority`` like ``best-fit``), never where the job sits in the order.

Within a job, tasks pinned to a cpuset are placed first, then tasks pinned to a node, then the
rest, each group largest first (stable); placements are reported in the job's task order.

Not guaranteed / not done here:

* gang placement is greedy, not a search: a job may be refused although some other arrangement
  of its tasks would fit (bin packing is NP-hard); the reason then says that each task fits alone
  and names the first task that could not be placed after the earlier ones were;
* preemption (evicting lower-priority jobs to make room) is decided by
  :mod:`swarmapply.controllers.preemption`, not here;
* memory is only reserved, not checked against what containers really use.

Complexity (n nodes, c cores per node, k distinct core counts requested, t tasks in the queue):
building the indexes is O(n log n), plus O(n) for each core count's tree on its first request;
placing an unpinned task is O(log n) for first-fit and O(log n + s) for best-fit (s = nodes
skipped in the chosen buckets for lack of memory, in the worst case O(n)); choosing core ids is
O(c log c); each core/memory update is O(k log n) plus a bucket list move. A request no smaller
than one already refused (in cores and memory, with no capacity returned since) is refused in
O(k) without a search. Explaining a refusal counts from the indexes, visiting only the nodes
with enough free cores, and only for jobs that wait. A whole call is thus about
O(n log n + t (k log n + c log c)) in the common case. ``python -m bench.placement_bench``
measures it beside a linear scan.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from swarmapply.api.names import natural_key
from swarmapply.api.quantity import format_cpuset, format_memory
from swarmapply.controllers.placement_index import CapacityIndex, pick_cores
from swarmapply.controllers.placement_model import (
    STRATEGIES,
    Decision,
    JobRequest,
    NodeState,
    Placement,
    TaskRequest,
)

__all__ = [
    "STRATEGIES",
    "Decision",
    "JobRequest",
    "NodeState",
    "Placement",
    "TaskRequest",
    "order_jobs",
    "schedule",
]

# How a strategy chooses a node for an unpinned task.
_NODE_CHOICE = {
    "first-fit": "first-fit",
    "best-fit": "best-fit",
    "first-fit-decreasing": "first-fit",
    "best-fit-decreasing": "best-fit",
    "node": "node",
    "priority": "best-fit",
}


class _Work:
    """The working free capacity, updated as jobs are placed (and rolled back on refusal)."""

    def __init__(self, nodes: Sequence[NodeState]):
        self.nodes = sorted(nodes, key=lambda node: natural_key(node.name))
        self.position = {node.name: pos for pos, node in enumerate(self.nodes)}
        if len(self.position) != len(self.nodes):
            raise ValueError("node names repeat")
        self.free = [set(node.free_cores) for node in self.nodes]
        self.memory = [node.free_memory for node in self.nodes]
        self.index = CapacityIndex(
            [len(free) for free in self.free],
            self.memory,
            [node.ready and node.schedulable for node in self.nodes],
        )
        # For explanations: fixed per call, so counted once.
        self.not_ready = sum(1 for node in self.nodes if not node.ready)
        self.unschedulable = sum(1 for node in self.nodes if node.ready and not node.schedulable)
        self.active_totals = sorted(
            len(node.cores) for node in self.nodes if node.ready and node.schedulable
        )
        # Refused requests: cores -> the least memory refused with that many cores. Capacity
        # only shrinks while jobs are placed, so a refusal stays true until a rollback, which
        # restores the memo saved before the job (see checkpoint/restore).
        self.refused: dict[int, int] = {}

    def take(self, pos: int, cores: Sequence[int], memory: int) -> None:
        self.free[pos].difference_update(cores)
        self.memory[pos] -= memory
        self.index.update(pos, len(self.free[pos]), self.memory[pos])

    def give(self, pos: int, cores: Sequence[int], memory: int) -> None:
        self.free[pos].update(cores)
        self.memory[pos] += memory
        self.index.update(pos, len(self.free[pos]), self.memory[pos])

    def checkpoint(self) -> dict[int, int]:
        """The refusal memo as it is before a job is tried."""
        return dict(self.refused)

    def restore(self, memo: dict[int, int]) -> None:
        """After a rollback capacity is as at the checkpoint again, and so are the refusals."""
        self.refused = memo

    def surely_refused(self, cores: int, memory: int) -> bool:
        """True when a request no larger in cores and memory was refused since (no node fits)."""
        return any(c <= cores and m <= memory for c, m in self.refused.items())

    def remember_refusal(self, cores: int, memory: int) -> None:
        self.refused[cores] = min(memory, self.refused.get(cores, memory))


def schedule(
    nodes: Sequence[NodeState],
    queue: Sequence[JobRequest],
    strategy: str = "best-fit",
    *,
    now: float = 0.0,
    starvation_seconds: float | None = None,
) -> list[Decision]:
    """Places the queued jobs on the nodes, each job whole or not at all.

    Args:
        nodes: The cluster's nodes with their current free cores and memory.
        queue: The waiting jobs, in queue order.
        strategy: The cluster strategy, one of :data:`STRATEGIES`; it orders the jobs and
            chooses nodes for jobs without a strategy of their own.
        now: The current time, on the clock of the jobs' ``submitted``.
        starvation_seconds: When set, the first job in processing order that does not fit
            and has waited at least this long (``now - submitted``) holds back every job
            after it: they wait, so freed capacity accumulates for it (a reservation).

    Returns:
        One decision per job, in the order the jobs were processed (see the module docstring).
        Placed jobs have all their placements and no reason; waiting jobs have a reason.

    Raises:
        ValueError: The strategy is unknown, or node names or job names repeat.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if len({job.name for job in queue}) != len(queue):
        raise ValueError("job names repeat in the queue")
    work = _Work(nodes)
    decisions: list[Decision] = []
    holder: JobRequest | None = None
    for job in order_jobs(queue, strategy):
        if holder is not None:
            # No running figure in the reason: it is written to the store only when it changes.
            decisions.append(
                Decision(
                    job.name,
                    None,
                    f"held back: job {holder.name} has waited longer than the starvation limit "
                    f"of {starvation_seconds:g}s and is placed first",
                )
            )
            continue
        decision = _place_job(work, job, job.strategy or strategy)
        decisions.append(decision)
        if (
            decision.placements is None
            and starvation_seconds is not None
            and now - job.submitted >= starvation_seconds
        ):
            holder = job
    return decisions


def order_jobs(queue: Sequence[JobRequest], strategy: str) -> list[JobRequest]:
    """Orders the queue the way ``strategy`` processes it (see the module docstring).

    Args:
        queue: The waiting jobs, in queue order.
        strategy: The cluster strategy.

    Returns:
        The jobs in processing order.
    """
    jobs = sorted(queue, key=lambda job: job.submitted)
    if strategy.endswith("-decreasing"):
        jobs.sort(key=lambda job: -sum(task.cores for task in job.tasks))
    elif strategy == "priority":
        jobs.sort(key=lambda job: -job.priority)
    return jobs


def _pin_rank(task: TaskRequest) -> tuple[int, int]:
    return (0 if task.cpuset is not None else 1 if task.node is not None else 2), -task.cores


def _place_job(work: _Work, job: JobRequest, strategy: str) -> Decision:
    choice = _NODE_CHOICE[strategy]
    if choice == "node":
        for task in job.tasks:
            if task.node is None:
                return Decision(
                    job.name,
                    None,
                    f"task {task.name} of job {job.name} is not pinned to a node, "
                    "and strategy node places only pinned tasks",
                )
    taken: list[tuple[int, int, tuple[int, ...]]] = []  # (task index, position, cores)
    memo = work.checkpoint()
    for i in sorted(range(len(job.tasks)), key=lambda i: _pin_rank(job.tasks[i])):
        task = job.tasks[i]
        found = _pinned(work, job, task) if task.node is not None else _choose(work, task, choice)
        if not isinstance(found, tuple):
            for k, pos, cores in reversed(taken):
                work.give(pos, cores, job.tasks[k].memory)
            if taken:
                work.restore(memo)
            if found is None:
                found = _explain(work, job, task, [job.tasks[k].name for k, _, _ in taken])
            return Decision(job.name, None, found)
        pos, cores = found
        work.take(pos, cores, task.memory)
        taken.append((i, pos, cores))
    taken.sort()
    placements = tuple(
        Placement(job.name, job.tasks[i].name, work.nodes[pos].name, cores, job.tasks[i].memory)
        for i, pos, cores in taken
    )
    return Decision(job.name, placements, None)


def _choose(work: _Work, task: TaskRequest, choice: str) -> tuple[int, tuple[int, ...]] | None:
    if work.surely_refused(task.cores, task.memory):
        return None
    if choice == "first-fit":
        pos = work.index.first_fit(task.cores, task.memory)
    else:
        pos = work.index.best_fit(task.cores, task.memory)
    if pos is None:
        work.remember_refusal(task.cores, task.memory)
        return None
    return pos, pick_cores(work.free[pos], task.cores)


def _pinned(work: _Work, job: JobRequest, task: TaskRequest) -> tuple[int, tuple[int, ...]] | str:
    what = f"task {task.name} of job {job.name} is pinned to"
    assert task.node is not None
    pos = work.position.get(task.node)
    if pos is None:
        return f"node {task.node} does not exist ({what} it)"
    node = work.nodes[pos]
    if not node.ready:
        return f"node {node.name} is not Ready ({what} it)"
    if not node.schedulable:
        return f"node {node.name} is unschedulable ({what} it)"
    if task.cpuset is not None:
        missing = task.cpuset - node.cores
        if missing:
            return (
                f"{_cores(missing, node.name, 'does', 'do')} not exist ({what} "
                f"{'it' if len(missing) == 1 else 'them'}; the node has cores "
                f"{format_cpuset(node.cores)})"
            )
        busy = task.cpuset - work.free[pos]
        if busy:
            it = "it" if len(busy) == 1 else "them"
            return f"{_cores(busy, node.name, 'is', 'are')} not free ({what} {it})"
        cores = tuple(sorted(task.cpuset))
    elif len(work.free[pos]) < task.cores:
        return (
            f"node {node.name} has too few free cores ({what} it; need {task.cores}, "
            f"{len(work.free[pos])} free)"
        )
    else:
        cores = pick_cores(work.free[pos], task.cores)
    if work.memory[pos] < task.memory:
        return (
            f"node {node.name} has too little memory ({what} it; need "
            f"{format_memory(task.memory)}, {format_memory(work.memory[pos])} free)"
        )
    return pos, cores


def _cores(ids: frozenset[int], node: str, one: str, many: str) -> str:
    """Renders ``core 3 of node n1 is`` or ``cores 3-4 of node n1 are``."""
    if len(ids) == 1:
        return f"core {format_cpuset(ids)} of node {node} {one}"
    return f"cores {format_cpuset(ids)} of node {node} {many}"


_REASONS = (
    ("cores", "too few cores (need {cores})", True),
    ("free", "too few free cores (need {cores})", True),
    ("memory", "too little memory (need {memory})", True),
    ("ready", "not Ready", False),
    ("schedulable", "unschedulable", False),
)


def _explain(work: _Work, job: JobRequest, task: TaskRequest, earlier: list[str]) -> str:
    """Says why an unpinned task has no node; the job's earlier tasks are already rolled back."""
    if earlier and work.index.first_fit(task.cores, task.memory) is not None:
        cores = sum(t.cores for t in job.tasks)
        memory = sum(t.memory for t in job.tasks)
        names = ", ".join(earlier)
        return (
            f"the job's {len(job.tasks)} tasks need {cores} cores and "
            f"{format_memory(memory)} together; each fits alone but not all at once: task "
            f"{task.name} of job {job.name} could not be placed after task(s) {names} were"
        )
    # Each node counts once, under the first reason that applies, in _REASONS order; counted
    # from the index, visiting only the nodes with enough free cores.
    total_short = bisect.bisect_left(work.active_totals, task.cores)
    with_free = work.index.count_free_at_least(task.cores)
    counts = {
        "ready": work.not_ready,
        "schedulable": work.unschedulable,
        "cores": total_short,
        "free": len(work.active_totals) - total_short - with_free,
        "memory": work.index.count_short_of_memory(task.cores, task.memory),
    }
    head = f"0/{len(work.nodes)} nodes can run task {task.name} of job {job.name}"
    if not work.nodes:
        return f"{head}: the cluster has no nodes"
    parts = []
    for key, text, has in _REASONS:
        n = counts[key]
        if n:
            verb = ("has" if n == 1 else "have") if has else ("is" if n == 1 else "are")
            detail = text.format(cores=task.cores, memory=format_memory(task.memory))
            parts.append(f"{n} {verb} {detail}")
    return f"{head}: {', '.join(parts)}"
