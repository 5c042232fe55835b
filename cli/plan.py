"""``swarmapply plan``: where a job's tasks would go on the live cluster now, writing nothing.

The manifests are admitted as ``apply`` admits them, the Nodes and Tasks are read from the
store, and the scheduler's own placement code decides (one implementation): each task gets a
node and core ids, or the job gets the reason it would wait. Several jobs are planned as one
queue, in the scheduler's order, each seeing what the ones before it took.

What it does not know: the jobs already queued (a plan answers for the free capacity now, as
if this job were first in line) and the cluster's configured strategy (``--strategy``,
default best-fit; a job's ``spec.placement.strategy`` is honoured). A job that is already
running is planned as a new copy: its own tasks' cores count as taken.

Exit codes: 0 every job would be placed, 2 some job would wait, 1 an error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from swarmapply.api.quantity import format_cpuset, format_memory
from swarmapply.cli.apply import add_file_arguments, admitted_for_apply
from swarmapply.cli.context import Context
from swarmapply.cli.output import align
from swarmapply.controllers.placement import STRATEGIES, Decision, schedule
from swarmapply.controllers.requests import job_request
from swarmapply.controllers.scheduling import cluster_snapshot
from swarmapply.errors import PermanentError

WAITS = 2
#: Bad usage exits 1, not argparse's 2, which here means "would wait".
USAGE_EXIT = 1

EXAMPLES = """examples:
  swarmapply plan -f job.yaml                  where the tasks would go, or why they'd wait
  swarmapply plan -f jobs/ -o json             several jobs as one queue, as JSON
  swarmapply plan -f job.yaml --strategy first-fit
"""


class PlanError(PermanentError):
    """The manifests hold no Job to plan."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    parser = commands.add_parser(
        "plan",
        help="show where jobs would be placed now, writing nothing",
        description="Show where the jobs' tasks would be placed on the cluster as it is now "
        "(node and cores), or why a job would wait. Nothing is written. Exit 0 when every "
        "job would be placed, 2 when one would wait, 1 on error.",
        epilog=EXAMPLES,
        **kw,
    )
    add_file_arguments(parser)
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="best-fit",
        help="the cluster strategy to plan with (default best-fit)",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format"
    )
    parser.set_defaults(handler=run, read_only=True)


def decision_json(decision: Decision) -> dict[str, Any]:
    """One job's plan as JSON-ready data."""
    return {
        "job": decision.job,
        "placed": decision.placements is not None,
        "placements": [
            {
                "task": p.task,
                "node": p.node,
                "cpuset": format_cpuset(p.cpuset),
                "memory": p.memory,
            }
            for p in decision.placements or ()
        ],
        "reason": decision.reason,
    }


def decision_lines(decisions: list[Decision]) -> list[str]:
    """A table of placements, then one line per waiting job."""
    rows = [["JOB", "TASK", "NODE", "CPUSET", "MEMORY"]]
    waits = []
    for d in decisions:
        if d.placements is None:
            waits.append(f"job {d.job} would wait: {d.reason}")
            continue
        for p in d.placements:
            rows.append([d.job, p.task, p.node, format_cpuset(p.cpuset), format_memory(p.memory)])
    return (align(rows) if len(rows) > 1 else []) + waits


def run(args: argparse.Namespace, ctx: Context) -> int:
    admitted = admitted_for_apply(args.filename, args.recursive, ctx.stdin)
    jobs = [item.obj for item in admitted if item.obj["kind"] == "Job"]
    if not jobs:
        raise PlanError(f"no Job in {', '.join(args.filename)}; plan places jobs only")
    store = ctx.store(must_exist=True)
    nodes = store.list("Node").items
    tasks = store.list("Task").items
    queue = [job_request(job, submitted=float(i)) for i, job in enumerate(jobs)]
    decisions = schedule(cluster_snapshot(nodes, tasks), queue, args.strategy)
    if args.output == "json":
        ctx.out(json.dumps([decision_json(d) for d in decisions], indent=2))
    else:
        for line in decision_lines(decisions):
            ctx.out(line)
    return WAITS if any(d.placements is None for d in decisions) else 0
