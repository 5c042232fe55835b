"""Inputs and outputs of :mod:`swarmapply.controllers.placement`: frozen, validated dataclasses.

Construction raises ``ValueError`` for requests no scheduler could honour (a cpuset pin without a
node pin, fewer than one core, ...); everything else is decided by
:func:`swarmapply.controllers.placement.schedule`, which re-exports these names.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from swarmapply.api.quantity import format_cpuset

STRATEGIES: tuple[str, ...] = (
    "first-fit",
    "best-fit",
    "first-fit-decreasing",
    "best-fit-decreasing",
    "node",
    "priority",
)
"""The strategy names ``schedule`` and :class:`JobRequest` accept."""


@dataclass(frozen=True)
class NodeState:
    """A node's capacity as the scheduler sees it.

    Raises ``ValueError`` on construction if ``free_cores`` is not a subset of ``cores`` or
    memory figures are negative or ``free_memory`` exceeds ``memory``.
    """

    name: str
    cores: frozenset[int]
    free_cores: frozenset[int]
    memory: int
    free_memory: int
    ready: bool = True
    schedulable: bool = True

    def __post_init__(self) -> None:
        if not self.free_cores <= self.cores:
            extra = format_cpuset(self.free_cores - self.cores)
            raise ValueError(f"node {self.name}: free cores {extra} are not cores of the node")
        if not 0 <= self.free_memory <= self.memory:
            raise ValueError(f"node {self.name}: need 0 <= free_memory <= memory")


@dataclass(frozen=True)
class TaskRequest:
    """One task of a job: how many exclusive cores and how much memory, and optional pins.

    Raises ``ValueError`` on construction if ``cores`` < 1, ``memory`` < 0, ``cpuset`` is given
    without ``node``, or ``cpuset`` does not have exactly ``cores`` ids.
    """

    name: str
    cores: int
    memory: int = 0
    node: str | None = None
    cpuset: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise ValueError(f"task {self.name}: cores must be at least 1, got {self.cores}")
        if self.memory < 0:
            raise ValueError(f"task {self.name}: memory must not be negative")
        if self.cpuset is not None:
            if self.node is None:
                raise ValueError(f"task {self.name}: a cpuset pin requires a node pin")
            if len(self.cpuset) != self.cores:
                raise ValueError(
                    f"task {self.name}: cpuset {format_cpuset(self.cpuset)} has "
                    f"{len(self.cpuset)} cores, but the task requests {self.cores}"
                )


@dataclass(frozen=True)
class JobRequest:
    """A waiting job: its tasks (placed all or none), priority, submission time and strategy.

    Raises ``ValueError`` on construction if there are no tasks, task names repeat, the strategy
    is unknown or ``submitted`` is not finite.
    """

    name: str
    tasks: tuple[TaskRequest, ...]
    priority: int = 0
    submitted: float = 0.0
    strategy: str | None = None

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError(f"job {self.name}: has no tasks")
        if len({task.name for task in self.tasks}) != len(self.tasks):
            raise ValueError(f"job {self.name}: task names repeat")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValueError(f"job {self.name}: unknown strategy {self.strategy!r}")
        if not math.isfinite(self.submitted):
            raise ValueError(f"job {self.name}: submitted must be finite")


@dataclass(frozen=True)
class Placement:
    """Where one task goes: a node, its exclusive core ids (ascending) and reserved memory."""

    job: str
    task: str
    node: str
    cpuset: tuple[int, ...]
    memory: int


@dataclass(frozen=True)
class Decision:
    """The outcome for one job: all its placements (task order), or None and the reason."""

    job: str
    placements: tuple[Placement, ...] | None
    reason: str | None


def _per_node(placements: Iterable[Placement]) -> tuple[dict[str, set[int]], dict[str, int]]:
    cores: dict[str, set[int]] = defaultdict(set)
    memory: dict[str, int] = defaultdict(int)
    for p in placements:
        cores[p.node].update(p.cpuset)
        memory[p.node] += p.memory
    return cores, memory


def with_taken(nodes: Sequence[NodeState], placements: Iterable[Placement]) -> list[NodeState]:
    """The nodes after ``placements`` took their cores and memory (free memory stops at 0)."""
    cores, memory = _per_node(placements)
    return [
        replace(
            n,
            free_cores=n.free_cores - cores[n.name],
            free_memory=max(0, n.free_memory - memory[n.name]),
        )
        if n.name in cores
        else n
        for n in nodes
    ]


def with_released(nodes: Sequence[NodeState], placements: Iterable[Placement]) -> list[NodeState]:
    """The nodes after ``placements`` gave back their cores and memory (up to capacity)."""
    cores, memory = _per_node(placements)
    return [
        replace(
            n,
            free_cores=n.free_cores | (frozenset(cores[n.name]) & n.cores),
            free_memory=min(n.memory, n.free_memory + memory[n.name]),
        )
        if n.name in cores
        else n
        for n in nodes
    ]
