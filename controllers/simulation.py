"""Offline scheduling in virtual time: replays jobs on declared nodes through the placement core.

:func:`simulate` is a pure discrete-event simulation. Jobs arrive at their ``submit_at``, wait
in a queue, are placed whole by :func:`~.placement.schedule` (the code the scheduler and
``swarmapply plan`` use) and hold their cores and memory for ``duration`` seconds, or forever.
It reads no clock, draws no random numbers, does no I/O and keeps no state between calls: the
same input always gives the same result.

How time advances. Events are arrivals and task ends. At each event time ``t``, in this order:
the cores and memory of jobs ending at ``t`` are released; jobs submitted at ``t`` join the
queue (input order among equal submit times); one scheduling pass runs with ``now=t``; every job
it places starts at ``t`` and ends at ``t + duration`` (never, without a duration). The
simulation stops when no event remains; jobs still waiting then are *unscheduled*.

One pass is one call of the placement core, in outcome: the pass hands ``schedule`` the queue
in its processing order but leaves out jobs that cannot fit the free capacity at all (more
cores or memory than is free in total, or a task larger than any node's free cores or memory),
and nodes without a free core; such jobs would be refused and such nodes never chosen, so the
decisions are the same. The rest of the queue goes in consecutive chunks sized to the free
capacity, with the free capacity updated between chunks, which is what ``schedule`` does
internally. A job left out that has waited past ``starvation_seconds`` is still handed over,
because it then holds back every job after it (see :mod:`~.placement`).

A job that cannot fit even on the empty cluster is set aside at once when that is evident (a
task larger than every node, a pin to a missing node, strategy ``node`` with unpinned tasks...),
else when it first would hold back others under ``starvation_seconds`` (checked against the
empty cluster once); it never runs, never holds back other jobs, and is reported unscheduled.

Preemption (``preemption=True``): after each pass, every waiting job, in processing order, asks
:func:`~.preemption.choose_victims` for whole running jobs of strictly lower priority to evict;
if there are some, they are evicted (their run ends at ``t``), go back to the queue with their
original submit time and restart from zero when placed again, and the job is placed at ``t``.
Passes and preemption then repeat at ``t`` until no more evictions happen (this ends: each
eviction places a job of strictly higher priority than its victims).

Metrics (all times in seconds of virtual time):

* ``makespan``: over every run (a placed job's time on its nodes; an evicted job has one run
  per placement), the latest end, where a run that never ends counts with its start; 0 when no
  job was placed. So forever-running jobs do not make it infinite.
* wait of a placed job: the start of its last run minus its submit time. ``mean_wait`` is the
  mean, ``p95_wait`` the 95th percentile by nearest rank, both over jobs placed at the end
  (0 when none).
* ``core_utilization``: core-seconds allocated within ``[0, makespan]`` (each run's cores times
  its overlap with that interval, forever runs up to ``makespan``) divided by the cores of all
  nodes times ``makespan``; 0 when ``makespan`` is 0.
* ``nodes_used``: distinct nodes that ran any task (evicted runs included).
* ``preemptions``: jobs evicted, counted once per eviction; None unless preemption is on.

Complexity, for n nodes, f of them with a free core at a pass, c cores per node, q waiting
jobs and E events: each pass scans the waiting jobs in order, O(q), with O(1) work for each job
left out, and calls the placement core on the jobs that may fit, about
O(f (c + log f) + k (log f + c log c)) for k jobs handed over (plus O(f) for each refused one,
to say why). Over the run that is O(E (q + f c)) in the common case, not O(E q n). Preemption
adds O(w r + v n log n) per pass for w waiting jobs, r running jobs and v victim checks.

Not modelled: failures, restarts, migrations, the scheduler's batching window, time spent
deploying; all nodes given are used as given (a node that is not Ready or is unschedulable
never takes a task, but its cores count in the utilisation's total).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from swarmapply.api.names import natural_key
from swarmapply.controllers.placement import order_jobs, schedule
from swarmapply.controllers.placement_model import (
    STRATEGIES,
    Decision,
    JobRequest,
    NodeState,
    Placement,
)
from swarmapply.controllers.preemption import RunningJob, choose_victims
from swarmapply.controllers.runtime import percentile

__all__ = ["SimJob", "SimMetrics", "SimPlacement", "SimResult", "simulate"]


@dataclass(frozen=True)
class SimJob:
    """A job to replay: what it requests, when it is submitted and how long its tasks run.

    Attributes:
        request: The job as the placement core sees it; ``request.submitted`` must equal
            ``submit_at`` (it orders the queue and measures starvation).
        submit_at: When the job joins the queue, in seconds from 0.
        duration: How long the job's tasks run once placed, in seconds; None for forever.

    Raises ``ValueError`` on construction if ``submit_at`` is negative or not finite or differs
    from ``request.submitted``, or ``duration`` is not a finite positive number.
    """

    request: JobRequest
    submit_at: float = 0.0
    duration: float | None = None

    def __post_init__(self) -> None:
        name = self.request.name
        if not (math.isfinite(self.submit_at) and self.submit_at >= 0):
            raise ValueError(f"job {name}: submit_at must be a finite number >= 0")
        if self.request.submitted != self.submit_at:
            raise ValueError(
                f"job {name}: request.submitted ({self.request.submitted:g}) must equal "
                f"submit_at ({self.submit_at:g})"
            )
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"job {name}: duration must be a finite number > 0, or None")


@dataclass(frozen=True)
class SimPlacement:
    """One task's run: where it ran, on which cores, and from when to when.

    Attributes:
        job: The job's name.
        task: The task's name.
        node: The node it ran on.
        cpuset: Its exclusive core ids, ascending.
        start: When it started.
        end: When it ended (finished, or was evicted); None when it runs forever.
    """

    job: str
    task: str
    node: str
    cpuset: tuple[int, ...]
    start: float
    end: float | None


@dataclass(frozen=True)
class SimMetrics:
    """Summary figures of one simulation; see the module docstring for exact definitions."""

    makespan: float
    mean_wait: float
    p95_wait: float
    core_utilization: float
    nodes_used: int
    preemptions: int | None = None


@dataclass(frozen=True)
class SimResult:
    """The outcome of :func:`simulate`.

    Attributes:
        strategy: The cluster strategy simulated.
        placements: Every task run, in start order (within one time: processing order, then
            the job's task order).
        unscheduled: Names of jobs waiting when the simulation ended, in input order.
        metrics: The summary figures.
    """

    strategy: str
    placements: tuple[SimPlacement, ...]
    unscheduled: tuple[str, ...]
    metrics: SimMetrics


def simulate(
    nodes: Sequence[NodeState],
    jobs: Sequence[SimJob],
    strategy: str,
    *,
    starvation_seconds: float | None = None,
    preemption: bool = False,
) -> SimResult:
    """Replays ``jobs`` on ``nodes`` in virtual time with one cluster strategy.

    Args:
        nodes: The simulated nodes, with their free cores and memory at time 0.
        jobs: The jobs, in input order (which breaks ties among equal submit times).
        strategy: The cluster strategy, one of :data:`~.placement_model.STRATEGIES`.
        starvation_seconds: Passed to every scheduling pass (see :func:`~.placement.schedule`).
        preemption: Whether waiting jobs evict lower-priority running jobs.

    Returns:
        The placements, the unscheduled jobs and the metrics.

    Raises:
        ValueError: Unknown strategy, repeated node or job names, or a negative
            ``starvation_seconds``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if len({job.request.name for job in jobs}) != len(jobs):
        raise ValueError("job names repeat")
    if len({node.name for node in nodes}) != len(nodes):
        raise ValueError("node names repeat")
    if starvation_seconds is not None and not starvation_seconds >= 0:
        raise ValueError("starvation_seconds must be >= 0")
    return _Simulation(nodes, jobs, strategy, starvation_seconds, preemption).run()


@dataclass
class _Run:
    """One placement of a job, from its start to its end or eviction."""

    job: int
    placements: tuple[Placement, ...]
    start: float
    end: float | None
    evicted: bool = False


@dataclass(frozen=True)
class _Size:
    """What a job needs, in totals and per largest task (for quick refusals)."""

    cores: int
    memory: int
    task_cores: int
    task_memory: int


@dataclass
class _Simulation:
    """The mutable state of one run of :func:`simulate` (never shared or kept)."""

    given_nodes: Sequence[NodeState]
    jobs: Sequence[SimJob]
    strategy: str
    starvation: float | None
    preemption: bool
    nodes: list[NodeState] = field(init=False)
    position: dict[str, int] = field(init=False)
    active: list[bool] = field(init=False)
    free: list[set[int]] = field(init=False)
    memory: list[int] = field(init=False)
    free_cores: int = field(init=False)
    free_memory: int = field(init=False)
    sizes: list[_Size] = field(init=False)
    usable_cores: int = field(init=False)  # of Ready, schedulable nodes, when empty
    usable_memory: int = field(init=False)
    most_cores: int = field(init=False)
    most_memory: int = field(init=False)
    states: list[NodeState | None] = field(init=False)  # cached current states
    rank: list[int] = field(init=False)  # job index -> processing rank
    by_rank: list[int] = field(init=False)  # processing rank -> job index
    waiting: list[int] = field(init=False)  # ranks of waiting jobs, ascending
    running: dict[int, _Run] = field(init=False)
    runs: list[_Run] = field(init=False)
    ends: list[tuple[float, int, int]] = field(init=False)  # (end, run number, job)
    set_aside: set[int] = field(init=False)
    fits_empty: dict[int, bool] = field(init=False)
    preemptions: int = 0

    def __post_init__(self) -> None:
        self.nodes = sorted(self.given_nodes, key=lambda node: natural_key(node.name))
        self.position = {node.name: pos for pos, node in enumerate(self.nodes)}
        self.active = [node.ready and node.schedulable for node in self.nodes]
        self.free = [set(node.free_cores) for node in self.nodes]
        self.memory = [node.free_memory for node in self.nodes]
        self.free_cores = sum(len(f) for f, on in zip(self.free, self.active, strict=True) if on)
        self.free_memory = sum(m for m, on in zip(self.memory, self.active, strict=True) if on)
        usable = [node for pos, node in enumerate(self.nodes) if self.active[pos]]
        self.usable_cores = sum(len(node.cores) for node in usable)
        self.usable_memory = sum(node.memory for node in usable)
        self.most_cores = max((len(node.cores) for node in usable), default=0)
        self.most_memory = max((node.memory for node in usable), default=0)
        self.states = [None] * len(self.nodes)
        self.sizes = [
            _Size(
                sum(t.cores for t in job.request.tasks),
                sum(t.memory for t in job.request.tasks),
                max(t.cores for t in job.request.tasks),
                max(t.memory for t in job.request.tasks),
            )
            for job in self.jobs
        ]
        arrival = sorted(range(len(self.jobs)), key=lambda i: (self.jobs[i].submit_at, i))
        index = {self.jobs[i].request.name: i for i in arrival}
        ordered = order_jobs([self.jobs[i].request for i in arrival], self.strategy)
        self.by_rank = [index[request.name] for request in ordered]
        self.rank = [0] * len(self.jobs)
        for rank, i in enumerate(self.by_rank):
            self.rank[i] = rank
        self.waiting = []
        self.running = {}
        self.runs = []
        self.ends = []
        self.set_aside = set()
        self.fits_empty = {}

    # ------------------------------------------------------------------------- event loop

    def run(self) -> SimResult:
        arrivals = sorted(range(len(self.jobs)), key=lambda i: (self.jobs[i].submit_at, i))
        next_arrival = 0
        while True:
            while self.ends and self._stale(self.ends[0]):
                heapq.heappop(self.ends)
            times: list[float] = []
            if next_arrival < len(arrivals):
                times.append(self.jobs[arrivals[next_arrival]].submit_at)
            if self.ends:
                times.append(self.ends[0][0])
            if not times:
                break
            now = min(times)
            while self.ends and self.ends[0][0] == now:
                _, number, job = heapq.heappop(self.ends)
                if not self._stale((now, number, job)):
                    self._release(self.running.pop(job))
            while (
                next_arrival < len(arrivals) and self.jobs[arrivals[next_arrival]].submit_at == now
            ):
                self._arrive(arrivals[next_arrival])
                next_arrival += 1
            self._schedule_at(now)
        return self._result()

    def _stale(self, entry: tuple[float, int, int]) -> bool:
        """Whether an end event belongs to a run that was evicted."""
        return self.runs[entry[1]].evicted

    def _arrive(self, job: int) -> None:
        if self._evidently_never_fits(job):
            self.set_aside.add(job)
        else:
            bisect.insort(self.waiting, self.rank[job])

    def _schedule_at(self, now: float) -> None:
        while True:
            self._pass(now)
            if not (self.preemption and self._preempt(now)):
                return

    # --------------------------------------------------------------------- one pass

    def _starved(self, job: int, now: float) -> bool:
        return self.starvation is not None and now - self.jobs[job].submit_at >= self.starvation

    def _pass(self, now: float) -> None:
        """One scheduling pass over the waiting jobs, in processing order (see module doc)."""
        i = 0
        while i < len(self.waiting) and self.free_cores > 0:
            free_nodes = [
                pos for pos in range(len(self.nodes)) if self.active[pos] and self.free[pos]
            ]
            max_cores = max(len(self.free[pos]) for pos in free_nodes)
            max_memory = max(self.memory[pos] for pos in free_nodes)
            first, chunk = i, list[int]()
            cores, memory = self.free_cores, self.free_memory
            while i < len(self.waiting):
                job = self.by_rank[self.waiting[i]]
                size = self.sizes[job]
                if (
                    size.cores > self.free_cores
                    or size.memory > self.free_memory
                    or size.task_cores > max_cores
                    or size.task_memory > max_memory
                ):  # certainly refused: hand it over only if it would hold back the rest
                    i += 1
                    if self._starved(job, now):
                        chunk.append(job)
                        break
                elif size.cores <= cores and size.memory <= memory:
                    chunk.append(job)
                    cores -= size.cores
                    memory -= size.memory
                    i += 1
                else:  # may fit once earlier jobs of this chunk are placed or refused
                    break
            if not chunk:
                return
            decisions = schedule(
                [self._state(pos) for pos in free_nodes],
                [self.jobs[job].request for job in chunk],
                self.strategy,
                now=now,
                starvation_seconds=self.starvation,
            )
            by_name = {self.jobs[job].request.name: job for job in chunk}
            holder = self._holder(decisions, by_name, now)
            if holder is not None and not self._fits_on_empty(holder):
                self._unqueue(holder)
                self.set_aside.add(holder)
                i = first  # decide this chunk again without it
                continue
            for decision in decisions:
                if decision.placements is not None:
                    job = by_name[decision.job]
                    self._unqueue(job)
                    self._start(job, decision.placements, now)
                    i -= 1
            if holder is not None:
                return  # every job after it waits

    def _holder(self, decisions: list[Decision], by_name: dict[str, int], now: float) -> int | None:
        """The job holding back the rest in these decisions: the first refused starved one."""
        if self.starvation is None:
            return None
        for decision in decisions:
            job = by_name[decision.job]
            if decision.placements is None and self._starved(job, now):
                return job
        return None

    # ----------------------------------------------------------------------- capacity

    def _state(self, pos: int) -> NodeState:
        state = self.states[pos]
        if state is None:
            node = self.nodes[pos]
            state = NodeState(
                node.name,
                node.cores,
                frozenset(self.free[pos]),
                node.memory,
                self.memory[pos],
                node.ready,
                node.schedulable,
            )
            self.states[pos] = state
        return state

    def _take(self, placements: Sequence[Placement], sign: int) -> None:
        for placement in placements:
            pos = self.position[placement.node]
            self.states[pos] = None
            if sign < 0:
                self.free[pos].difference_update(placement.cpuset)
            else:
                self.free[pos].update(placement.cpuset)
            self.memory[pos] += sign * placement.memory
            if self.active[pos]:
                self.free_cores += sign * len(placement.cpuset)
                self.free_memory += sign * placement.memory

    def _start(self, job: int, placements: tuple[Placement, ...], now: float) -> None:
        duration = self.jobs[job].duration
        run = _Run(job, placements, now, None if duration is None else now + duration)
        self._take(placements, -1)
        self.running[job] = run
        self.runs.append(run)
        if run.end is not None:
            heapq.heappush(self.ends, (run.end, len(self.runs) - 1, job))

    def _release(self, run: _Run) -> None:
        self._take(run.placements, +1)

    def _unqueue(self, job: int) -> None:
        pos = bisect.bisect_left(self.waiting, self.rank[job])
        del self.waiting[pos]

    # ------------------------------------------------------------------- never fits

    def _evidently_never_fits(self, job: int) -> bool:
        """Cheap checks against the empty cluster; False does not promise the job fits."""
        request = self.jobs[job].request
        if not self.usable_cores:
            return True
        size = self.sizes[job]
        if size.cores > self.usable_cores or size.memory > self.usable_memory:
            return True
        only_pinned = (request.strategy or self.strategy) == "node"
        for task in request.tasks:
            if task.node is None:
                if only_pinned or task.cores > self.most_cores or task.memory > self.most_memory:
                    return True
                continue
            pos = self.position.get(task.node)
            if pos is None or not self.active[pos]:
                return True
            node = self.nodes[pos]
            if task.cores > len(node.cores) or task.memory > node.memory:
                return True
            if task.cpuset is not None and not task.cpuset <= node.cores:
                return True
        return False

    def _fits_on_empty(self, job: int) -> bool:
        """Whether the job is placed on the cluster with nothing running (cached)."""
        if job not in self.fits_empty:
            empty = [
                NodeState(n.name, n.cores, n.cores, n.memory, n.memory, n.ready, n.schedulable)
                for n in self.nodes
            ]
            [decision] = schedule(empty, [self.jobs[job].request], self.strategy)
            self.fits_empty[job] = decision.placements is not None
        return self.fits_empty[job]

    # ---------------------------------------------------------------------- preemption

    def _preempt(self, now: float) -> bool:
        """Lets waiting jobs evict lower-priority running jobs; True if any were evicted."""
        evicted = False
        for rank in list(self.waiting):
            job = self.by_rank[rank]
            request = self.jobs[job].request
            index = bisect.bisect_left(self.waiting, rank)
            if index == len(self.waiting) or self.waiting[index] != rank:
                continue  # no longer waiting
            lower = [
                RunningJob(
                    self.jobs[other].request.name,
                    self.jobs[other].request.priority,
                    self.jobs[other].submit_at,
                    run.placements,
                )
                for other, run in self.running.items()
                if self.jobs[other].request.priority < request.priority
            ]
            if not lower:
                continue
            nodes = [self._state(pos) for pos in range(len(self.nodes))]
            victims = choose_victims(nodes, lower, request, self.strategy)
            if not victims:
                continue  # None: eviction does not help; (): it fits but was held back
            by_name = {self.jobs[other].request.name: other for other in self.running}
            for name in victims:
                run = self.running.pop(by_name[name])
                self._release(run)
                run.end = now
                run.evicted = True
                bisect.insort(self.waiting, self.rank[run.job])
                self.preemptions += 1
            nodes = [self._state(pos) for pos in range(len(self.nodes))]
            [decision] = schedule(nodes, [request], self.strategy, now=now)
            if decision.placements is None:  # choose_victims promised room: a bug
                raise AssertionError(f"job {request.name} did not fit after evicting {victims}")
            self._unqueue(job)
            self._start(job, decision.placements, now)
            evicted = True
        return evicted

    # ------------------------------------------------------------------------- result

    def _result(self) -> SimResult:
        placements = tuple(
            SimPlacement(p.job, p.task, p.node, p.cpuset, run.start, run.end)
            for run in self.runs
            for p in run.placements
        )
        waiting = {self.by_rank[rank] for rank in self.waiting} | self.set_aside
        unscheduled = tuple(self.jobs[i].request.name for i in sorted(waiting))
        return SimResult(self.strategy, placements, unscheduled, self._metrics())

    def _metrics(self) -> SimMetrics:
        makespan = max(
            (run.start if run.end is None else run.end for run in self.runs), default=0.0
        )
        waits = [run.start - self.jobs[run.job].submit_at for run in self.runs if not run.evicted]
        total_cores = sum(len(node.cores) for node in self.nodes)
        used = 0.0
        for run in self.runs:
            end = makespan if run.end is None else min(run.end, makespan)
            span = max(0.0, end - max(run.start, 0.0))
            used += span * sum(len(p.cpuset) for p in run.placements)
        capacity = total_cores * makespan
        return SimMetrics(
            makespan=makespan,
            mean_wait=sum(waits) / len(waits) if waits else 0.0,
            p95_wait=percentile(waits, 0.95),
            core_utilization=used / capacity if capacity > 0 else 0.0,
            nodes_used=len({p.node for run in self.runs for p in run.placements}),
            preemptions=self.preemptions if self.preemption else None,
        )
