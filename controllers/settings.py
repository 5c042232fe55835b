"""Settings of the controller loops, as one frozen dataclass per concern.

Every field has a default that suits a small cluster; ``swarmapply controllers`` maps its
command-line options onto these. Validation happens on construction (``ValueError`` naming the
field), so a bad value is refused before any loop starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from swarmapply.controllers.node_health import NodeLifecycleSettings
from swarmapply.controllers.placement_model import STRATEGIES
from swarmapply.controllers.prune_plan import PrunerSettings


@dataclass(frozen=True)
class SchedulerSettings:
    """How the scheduler places jobs.

    Attributes:
        strategy: The cluster's placement strategy (a job may override it with
            ``spec.placement.strategy``).
        preemption: Evict whole lower-priority jobs when a higher-priority job cannot fit.
        batch_window: Seconds to gather arrivals before a scheduling pass (RESTfulSwarm's
            ``wait_time``); 0 schedules at once.
        starvation_seconds: A job that has waited this long holds back every job behind it
            in the queue until it is placed (a reservation against starvation); None to
            never hold back.
    """

    strategy: str = "best-fit"
    preemption: bool = False
    batch_window: float = 0.0
    starvation_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}")
        if not (math.isfinite(self.batch_window) and self.batch_window >= 0):
            raise ValueError("batch_window: expected seconds >= 0")
        if self.starvation_seconds is not None and not (
            math.isfinite(self.starvation_seconds) and self.starvation_seconds >= 0
        ):
            raise ValueError("starvation_seconds: expected seconds >= 0")


@dataclass(frozen=True)
class DeployerSettings:
    """How the deployer reaches the manager's Docker Engine and what it may do there.

    Attributes:
        docker_host: The manager engine's URL (``unix:///var/run/docker.sock``,
            ``tcp://host:2376``); None for the environment's (``DOCKER_HOST`` or the default
            socket).
        swarm: Initialise a Swarm on the engine when it is in none, and publish its join
            token; False leaves the engine's Swarm membership alone.
        advertise_addr: The address (or interface, optionally ``:port``) the new Swarm
            advertises; None lets the engine choose (it refuses when it has several).
        pull: Pull images of scheduled tasks that the engine lacks.
    """

    docker_host: str | None = None
    swarm: bool = True
    advertise_addr: str | None = None
    pull: bool = True

    def __post_init__(self) -> None:
        if self.docker_host is not None and not self.docker_host.strip():
            raise ValueError("docker_host: expected an engine URL or None")
        if self.advertise_addr is not None and not self.advertise_addr.strip():
            raise ValueError("advertise_addr: expected an address or interface, or None")


@dataclass(frozen=True)
class MigratorSettings:
    """The migrator's settings.

    Attributes:
        step_timeout: Seconds an agent that heartbeats has to begin a migration step
            (checkpoint, stop, restore, start) before the Migration fails, or falls back to
            cold under ``auto``. A step whose agent does not heartbeat is waited for.
    """

    step_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_timeout) and self.step_timeout > 0):
            raise ValueError("step_timeout: expected seconds > 0")


@dataclass(frozen=True)
class ControllerSettings:
    """Settings shared by every loop, plus each loop's own.

    Attributes:
        workers: Worker threads per controller.
        resync: Seconds between re-enqueues of every object; None for never.
        lease_duration: Seconds a leader keeps its Lease without renewing it; another
            instance takes over this long after the leader stopped renewing.
        renew_interval: Seconds between a leader's renewals (and a follower's attempts).
        stats_interval: Seconds between log lines with each running controller's counters
            (reconciles, errors, queue depth, latency; passes for the scheduler); 0 for only
            at the end of each term.
        scheduler: The scheduler's settings.
        deployer: The deployer's settings.
        migrator: The migrator's settings.
        node_lifecycle: When a silent node is NotReady, and when its tasks are evicted.
        pruner: What the pruner removes, after how long, and how often it looks.
    """

    workers: int = 2
    resync: float | None = 300.0
    lease_duration: float = 4.0
    renew_interval: float = 1.0
    stats_interval: float = 60.0
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    deployer: DeployerSettings = field(default_factory=DeployerSettings)
    migrator: MigratorSettings = field(default_factory=MigratorSettings)
    node_lifecycle: NodeLifecycleSettings = field(default_factory=NodeLifecycleSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers: expected at least 1")
        if self.resync is not None and not self.resync > 0:
            raise ValueError("resync: expected seconds > 0")
        if not (math.isfinite(self.stats_interval) and self.stats_interval >= 0):
            raise ValueError("stats_interval: expected seconds >= 0")
        if not 0 < self.renew_interval < self.lease_duration:
            raise ValueError("renew_interval: expected 0 < renew_interval < lease_duration")


__all__ = [
    "ControllerSettings",
    "DeployerSettings",
    "MigratorSettings",
    "NodeLifecycleSettings",
    "PrunerSettings",
    "SchedulerSettings",
]
