"""``swarmapply controllers``: run the control loops until stopped.

Each selected controller campaigns for its own Lease (``controller-<name>``), so any number of
these processes can run against one store: each controller is active in exactly one of them,
and another takes over when that one dies (see :mod:`swarmapply.controllers.leader`). A process
may also run a single controller (``--only scheduler``), and others the rest.

SIGTERM and SIGINT stop it gracefully: the controllers finish their current work, the Leases
are released so that another process takes over at once, and the command exits 0. A second
signal exits at once (status 130) without waiting. Leadership changes and controller problems
are logged to stderr, one line each.

What it does not do: restart itself or supervise other processes; run it under a service
manager (systemd, a Swarm service) for that.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from swarmapply.api.store import redact_url
from swarmapply.cli.context import Context
from swarmapply.cli.serving import serving
from swarmapply.cli.usage import UsageError, option_seconds
from swarmapply.controllers.manager import (
    REGISTRY,
    ControllerManager,
    ControllerUnavailable,
    known_controllers,
    resolve_factories,
)
from swarmapply.controllers.placement_model import STRATEGIES
from swarmapply.controllers.settings import (
    ControllerSettings,
    DeployerSettings,
    MigratorSettings,
    NodeLifecycleSettings,
    PrunerSettings,
    SchedulerSettings,
)

EXAMPLES = """examples:
  swarmapply controllers                              run every controller
  swarmapply controllers --only job                   only the job controller
  swarmapply controllers --only scheduler --strategy first-fit --batch-window 2
  swarmapply controllers --store mongodb://db:27017/swarm --lease-duration 10

Several processes may run against one store (MongoDB, or one SQLite file on one machine):
each controller is active in exactly one of them, and another takes over within about
--lease-duration seconds when that one dies, or at once when it is stopped.
SIGTERM or Ctrl-C stops gracefully; a second one exits at once.
Exit status: 0 after a clean shutdown, 1 on an error, 2 on bad usage.
"""

#: ``ControllerSettings`` field -> the option that sets it, for error messages.
_OPTION_OF_FIELD = {
    "strategy": "--strategy",
    "preemption": "--preemption",
    "batch_window": "--batch-window",
    "starvation_seconds": "--starvation-seconds",
    "workers": "--workers",
    "lease_duration": "--lease-duration",
    "renew_interval": "--lease-duration",
    "stats_interval": "--stats-interval",
    "docker_host": "--docker-host",
    "advertise_addr": "--swarm-advertise-addr",
    "grace": "--node-grace",
    "eviction_timeout": "--eviction-timeout",
    "step_timeout": "--migration-step-timeout",
    "interval": "--prune-interval",
    "finished_age": "--prune-finished-age",
    "event_age": "--prune-event-age",
}

#: The longest renew interval; shorter leases renew four times per lease duration.
MAX_RENEW_INTERVAL = 1.0


def parse_only(text: str | None) -> list[str]:
    """Parses ``--only``: a comma-separated list of controller names (pure).

    Raises:
        UsageError: The list is empty or has an empty item.
    """
    if text is None:
        return []
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise UsageError(f"--only: expected controller names separated by commas, got {text!r}")
    return names


def build_settings(args: argparse.Namespace) -> ControllerSettings:
    """Maps the options onto :class:`ControllerSettings` (pure).

    The renew interval is a quarter of the lease duration, at most one second.

    Raises:
        UsageError: A value is invalid; the message names the option.
    """
    lease = option_seconds("--lease-duration", args.lease_duration, positive=True)
    try:
        return ControllerSettings(
            workers=args.workers,
            lease_duration=lease,
            renew_interval=min(MAX_RENEW_INTERVAL, lease / 4),
            stats_interval=option_seconds("--stats-interval", args.stats_interval),
            deployer=DeployerSettings(
                docker_host=args.docker_host,
                swarm=not args.no_swarm,
                advertise_addr=args.swarm_advertise_addr,
                pull=not args.no_pull,
            ),
            node_lifecycle=NodeLifecycleSettings(
                grace=option_seconds("--node-grace", args.node_grace, positive=True),
                eviction_timeout=option_seconds("--eviction-timeout", args.eviction_timeout),
            ),
            pruner=PrunerSettings(
                interval=option_seconds("--prune-interval", args.prune_interval, positive=True),
                finished_age=option_seconds("--prune-finished-age", args.prune_finished_age),
                event_age=option_seconds("--prune-event-age", args.prune_event_age),
            ),
            migrator=MigratorSettings(
                step_timeout=option_seconds(
                    "--migration-step-timeout", args.migration_step_timeout, positive=True
                )
            ),
            scheduler=SchedulerSettings(
                strategy=args.strategy,
                preemption=args.preemption,
                batch_window=option_seconds("--batch-window", args.batch_window),
                starvation_seconds=(
                    None
                    if args.starvation_seconds is None
                    else option_seconds("--starvation-seconds", args.starvation_seconds)
                ),
            ),
        )
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        option = _OPTION_OF_FIELD.get(field)
        raise UsageError(f"{option}: {problem}" if option and problem else str(exc)) from exc


def _known_names() -> str:
    """The known controller names for help texts (built-ins only if the plugins are broken)."""
    try:
        return ", ".join(known_controllers())
    except ControllerUnavailable:
        return ", ".join(REGISTRY)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``controllers`` command to the command parsers."""
    parser = commands.add_parser(
        "controllers",
        help="run the controllers (job, scheduler, ...) until stopped",
        description="Run the controllers until SIGTERM or Ctrl-C. Each controller is elected\n"
        "through a Lease in the store, so several of these processes share the work.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated controllers to run (default: all; known: {_known_names()})",
    )
    parser.add_argument(
        "--strategy",
        default=SchedulerSettings.strategy,
        metavar="NAME",
        help=f"placement strategy: {', '.join(STRATEGIES)} (default {SchedulerSettings.strategy})",
    )
    parser.add_argument(
        "--preemption",
        action="store_true",
        help="let higher-priority jobs evict lower-priority ones when they cannot fit",
    )
    parser.add_argument(
        "--batch-window",
        default=SchedulerSettings.batch_window,
        metavar="SECONDS",
        help="gather arrivals this long before a scheduling pass (default 0: at once)",
    )
    parser.add_argument(
        "--starvation-seconds",
        default=None,
        metavar="SECONDS",
        help="a job waiting this long holds back the jobs behind it (default: never)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=ControllerSettings.workers,
        metavar="N",
        help=f"worker threads per controller (default {ControllerSettings.workers})",
    )
    deployer = parser.add_argument_group("deployer (the manager's Docker Engine)")
    deployer.add_argument(
        "--docker-host",
        metavar="URL",
        help="the manager engine (default: $DOCKER_HOST, else the local socket)",
    )
    deployer.add_argument(
        "--swarm-advertise-addr",
        metavar="ADDR",
        help="the address a new Swarm advertises (needed when the engine has several)",
    )
    deployer.add_argument(
        "--no-swarm",
        action="store_true",
        help="do not initialise a Swarm (job networks fall back to bridge without one)",
    )
    deployer.add_argument(
        "--no-pull", action="store_true", help="do not pull images the engine lacks"
    )
    parser.add_argument(
        "--node-grace",
        default=NodeLifecycleSettings.grace,
        metavar="SECONDS",
        help="a node whose agent has not renewed its heartbeat Lease for this long is NotReady "
        f"(default {NodeLifecycleSettings.grace:g})",
    )
    parser.add_argument(
        "--eviction-timeout",
        default=NodeLifecycleSettings.eviction_timeout,
        metavar="SECONDS",
        help="the tasks of a node NotReady for this long fail with reason NodeLost and are "
        f"replaced by their restart policy (default {NodeLifecycleSettings.eviction_timeout:g})",
    )
    parser.add_argument(
        "--prune-interval",
        default=PrunerSettings.interval,
        metavar="SECONDS",
        help=f"how often the pruner looks for garbage (default {PrunerSettings.interval:g})",
    )
    parser.add_argument(
        "--prune-finished-age",
        default=PrunerSettings.finished_age,
        metavar="SECONDS",
        help="containers of finished tasks are kept this long for their logs "
        f"(default {PrunerSettings.finished_age:g})",
    )
    parser.add_argument(
        "--prune-event-age",
        default=PrunerSettings.event_age,
        metavar="SECONDS",
        help=f"Events older than this are removed (default {PrunerSettings.event_age:g})",
    )
    parser.add_argument(
        "--migration-step-timeout",
        default=MigratorSettings.step_timeout,
        metavar="SECONDS",
        help="how long an agent that heartbeats has to begin a migration step before the "
        f"migration fails or falls back to cold (default {MigratorSettings.step_timeout:g})",
    )
    parser.add_argument(
        "--stats-interval",
        default=ControllerSettings.stats_interval,
        metavar="SECONDS",
        help="log each controller's counters (reconciles, errors, queue depth, latency) this "
        f"often; 0: only when it stops (default {ControllerSettings.stats_interval:g})",
    )
    parser.add_argument(
        "--lease-duration",
        default=ControllerSettings.lease_duration,
        metavar="SECONDS",
        help="how long after a process dies another takes over; followers round it up to "
        f"whole seconds (default {ControllerSettings.lease_duration:g})",
    )
    parser.add_argument(
        "--identity",
        metavar="ID",
        help="this process's name in the Leases (default: HOSTNAME-PID-RANDOM)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context, stop: threading.Event | None = None) -> int:
    """Runs ``swarmapply controllers`` until a signal (or ``stop``, for tests) stops it.

    Returns:
        0 after a clean shutdown, 2 on a bad option value.
    """
    try:
        names = parse_only(args.only)
        settings = build_settings(args)
        if args.identity is not None and args.identity.split() != [args.identity]:
            raise UsageError(f"--identity: expected one word, got {args.identity!r}")
        factories = resolve_factories(names)
    except ValueError as exc:  # UsageError, or an unknown controller name
        ctx.err(f"error: {exc}")
        return 2
    stop = stop if stop is not None else threading.Event()
    with serving(ctx, stop) as logger:
        manager = ControllerManager(
            ctx.store(), names, settings, factories=factories, identity=args.identity
        )
        logger.info(
            "controllers %s starting as %s (store %s)",
            ", ".join(manager.names),
            manager.identity,
            redact_url(ctx.store_url),
        )
        manager.run(stop)
        logger.info("controllers stopped")
    return 0
