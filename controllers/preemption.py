"""Pure preemption choice: which lower-priority jobs to evict so a higher one fits.

:func:`choose_victims` answers, for one waiting job that :func:`~.placement.schedule` refused,
the smallest set of whole running jobs of strictly lower priority whose eviction lets it be
placed, or None when evicting every such job would still not be enough. Jobs are evicted whole
(every task of a victim), never a part of one. Like the placement core it does no I/O.

How the set is chosen (greedy, deterministic, not an optimal search):

1. if evicting all candidates does not make room, there is no answer;
2. a single victim is tried first, candidates in order (lowest priority first, then the
   latest submitted, then name), since one eviction is the least disruption;
3. otherwise victims are added in that order until the job fits, and then each added victim is
   dropped again (newest added first) when the job still fits without it.

Each check runs the placement core once, O(n log n) for n nodes, so a choice costs
O(k n log n) for k candidates; it runs only for jobs that wait while lower-priority jobs run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarmapply.controllers.placement import schedule
from swarmapply.controllers.placement_model import JobRequest, NodeState, Placement, with_released


@dataclass(frozen=True)
class RunningJob:
    """A job holding cores: its priority, submission time and the placements it holds."""

    name: str
    priority: int
    submitted: float
    placements: tuple[Placement, ...]


def _fits(
    nodes: Sequence[NodeState], victims: Sequence[RunningJob], job: JobRequest, strategy: str
) -> bool:
    [decision] = schedule(
        with_released(nodes, (p for v in victims for p in v.placements)), [job], strategy
    )
    return decision.placements is not None


def choose_victims(
    nodes: Sequence[NodeState],
    running: Sequence[RunningJob],
    job: JobRequest,
    strategy: str = "best-fit",
) -> tuple[str, ...] | None:
    """The jobs to evict so that ``job`` can be placed, or None when no eviction helps.

    Args:
        nodes: The nodes with their current free cores and memory.
        running: The jobs holding cores on those nodes.
        job: The waiting job (already refused without preemption).
        strategy: The cluster strategy (the job's own, when set, is used by the core).

    Returns:
        Victim job names in eviction order, or None. An empty tuple means the job already
        fits and nothing needs evicting.
    """
    if _fits(nodes, (), job, strategy):
        return ()
    candidates = sorted(
        (r for r in running if r.priority < job.priority and r.name != job.name),
        key=lambda r: (r.priority, -r.submitted, r.name),
    )
    if not candidates or not _fits(nodes, candidates, job, strategy):
        return None
    for candidate in candidates:
        if _fits(nodes, [candidate], job, strategy):
            return (candidate.name,)
    chosen: list[RunningJob] = []
    for candidate in candidates:
        chosen.append(candidate)
        if _fits(nodes, chosen, job, strategy):
            break
    for victim in reversed(list(chosen)):
        rest = [c for c in chosen if c is not victim]
        if _fits(nodes, rest, job, strategy):
            chosen = rest
    return tuple(c.name for c in chosen)


__all__ = ["RunningJob", "choose_victims"]
