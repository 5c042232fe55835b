"""``swarmapply prune``: one pass of the pruner on demand, listing what it removes.

It runs exactly the pass the ``pruner`` controller runs (:mod:`swarmapply.controllers.pruner`)
with the ages given, prints one line per object (``removed container 3f2a1b9c0d12 hello-a-...
(task hello-a Succeeded 2h ago)``, or ``would remove ...`` with ``--dry-run``) and a summary.
A dry run writes nothing: no deletion and no compaction.

When no Docker Engine answers at ``--docker-host`` (default ``$DOCKER_HOST``, else the local
socket) the pass prunes the store only, and says so on stderr. Exit codes: 0 when every
removal went through (or a dry run); 1 when one failed, or when an engine named with
``--docker-host`` could not be reached.
"""

from __future__ import annotations

import argparse
from typing import Any

from swarmapply.cli.context import Context
from swarmapply.cli.usage import seconds_type
from swarmapply.controllers.prune_plan import PrunerSettings
from swarmapply.controllers.pruner import (
    FAILED,
    GONE,
    SKIPPED,
    DockerPruneEngine,
    PassReport,
    PruneEngine,
    Pruner,
    report_summary,
)
from swarmapply.controllers.swarm import DockerEngine

EXAMPLES = """examples:
  swarmapply prune --dry-run             what would be removed now, removing nothing
  swarmapply prune                       remove it
  swarmapply prune --finished-age 0      also containers of tasks that just finished
  swarmapply prune --docker-host tcp://manager:2375 --event-age 86400

Removes: Jobs past ttlSecondsAfterFinished (with their Tasks), exited containers of tasks
finished --finished-age seconds ago, orphan containers (our labels, no Task), job networks
no live task uses, Checkpoints of tasks that are gone, Events older than --event-age; then
compacts the store's change log. Never touches anything without swarmapply's labels.
"""


def lines(report: PassReport) -> list[str]:
    """The lines ``prune`` prints on stdout: one per object, then the summary (pure)."""
    out = []
    for outcome in report.outcomes:
        removal = outcome.removal
        if outcome.result == FAILED:
            continue  # on stderr
        if outcome.result == GONE:
            out.append(f"{removal.kind} {removal.name} was removed by someone else first")
        elif outcome.result == SKIPPED:
            out.append(f"kept {removal.kind} {removal.name}: {outcome.detail}")
        else:
            out.append(removal.line(dry_run=report.dry_run))
    out.append(report_summary(report) if report.outcomes or report.plan.compact_to else
               "nothing to prune")  # fmt: skip
    return out


def settings_from(args: argparse.Namespace) -> PrunerSettings:
    """The pruner settings the options ask for."""
    defaults = PrunerSettings()
    return PrunerSettings(
        finished_age=defaults.finished_age if args.finished_age is None else args.finished_age,
        event_age=defaults.event_age if args.event_age is None else args.event_age,
        network_age=defaults.network_age if args.network_age is None else args.network_age,
        engine=not args.store_only,
    )


def prune(ctx: Context, args: argparse.Namespace, engine: PruneEngine | None) -> int:
    """Run one pass and print it (see the module docstring); returns the exit code."""
    pruner = Pruner(ctx.store(must_exist=True), engine, settings_from(args))
    report = pruner.run_once(dry_run=args.dry_run)
    if report.engine_error and engine is not None:
        ctx.err(f"note: {report.engine_error}; pruned the store only")
    for line in lines(report):
        ctx.out(line)
    for outcome in report.failed:
        removal = outcome.removal
        ctx.err(f"error: could not remove {removal.kind} {removal.name}: {outcome.detail}")
    if report.failed:
        return 1
    if report.engine_error and engine is not None and args.docker_host:
        return 1
    return 0


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``prune``."""
    engine = None if args.store_only else DockerPruneEngine(DockerEngine(args.docker_host))
    try:
        return prune(ctx, args, engine)
    finally:
        if isinstance(engine, DockerPruneEngine):
            engine.engine.close()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds ``prune`` to the command parsers."""
    parser = commands.add_parser(
        "prune",
        help="remove finished containers, unused networks, expired jobs and old events",
        description="Run one pass of the pruner: remove what nothing wants any more and list\n"
        "it (exited containers of finished tasks, orphan containers, unused job networks,\n"
        "expired Jobs, stale Checkpoints, old Events), then compact the store's history.",
        epilog=EXAMPLES,
        **kw,
    )
    add_options(parser)
    parser.set_defaults(handler=run)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``prune`` (also used by tests that build their own parser)."""
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="the manager's Docker Engine (default $DOCKER_HOST, else the local socket)",
    )
    parser.add_argument("--store-only", action="store_true", help="do not touch the Docker Engine")
    parser.add_argument(
        "--finished-age",
        metavar="S",
        type=seconds_type(),
        default=None,
        help="seconds after a task finished before its container goes (default 3600)",
    )
    parser.add_argument(
        "--event-age",
        metavar="S",
        type=seconds_type(),
        default=None,
        help="seconds after an Event last happened before it goes (default 3600)",
    )
    parser.add_argument(
        "--network-age",
        metavar="S",
        type=seconds_type(),
        default=None,
        help="seconds a network of a job that is gone must exist before it goes (default 3600)",
    )


__all__ = ["add_options", "lines", "prune", "register", "run", "settings_from"]
