"""``swarmapply simulate``: replay jobs on declared nodes in virtual time, offline.

Reads Node manifests (``--nodes``; their ``spec.capacity`` defines the simulated nodes) and Job
manifests (``-f``, any format apply accepts, RESTfulSwarm JSON included), runs
:func:`swarmapply.controllers.simulation.simulate` for one strategy or all of them, and prints
the placements and metrics as a table or JSON. It never opens the store and reads no clock, so
the same files always print the same output.

Input problems (a file that is not a Node in ``--nodes``, a Node without ``spec.capacity``, a
non-Job in ``-f``) are reported together, each naming file, document and field, and the command
exits 1 without simulating. Output numbers are rounded to 6 significant digits; the simulation
itself is not rounded.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from swarmapply.api.admission import AdmissionError, AdmittedObject, FieldError, admit_paths
from swarmapply.api.quantity import format_cpuset
from swarmapply.cli.apply import add_file_arguments
from swarmapply.cli.context import Context
from swarmapply.cli.output import align
from swarmapply.cli.usage import seconds_type
from swarmapply.controllers.placement_model import STRATEGIES, NodeState
from swarmapply.controllers.requests import job_request, node_state
from swarmapply.controllers.simulation import SimJob, SimResult, simulate
from swarmapply.errors import PermanentError

EXAMPLES = """examples:
  swarmapply simulate --nodes manifests/sim/nodes.yaml -f manifests/sim/jobs.yaml
  swarmapply simulate --nodes nodes.yaml -f jobs/ -R --strategy all
  swarmapply simulate --nodes nodes.yaml -f job1.json --strategy first-fit -o json
  swarmapply simulate --nodes nodes.yaml -f jobs.yaml --starvation-seconds 60 --preemption

Jobs are submitted at time 0 in file order, or at spec.simulation.submitAt (seconds); their
tasks run for spec.simulation.duration seconds (forever when absent). See docs/simulate.md.
"""

#: The strategy simulated when --strategy is not given.
DEFAULT_STRATEGY = "best-fit"


class SimulateError(PermanentError):
    """The command was given nothing to simulate."""


def number(value: float) -> float | int:
    """A figure as output shows it: 6 significant digits, whole numbers without a fraction."""
    rounded = float(f"{value:.6g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded


def result_json(
    result: SimResult, jobs: Sequence[SimJob] = (), nodes: Sequence[NodeState] = ()
) -> dict[str, Any]:
    """The ``-o json`` document of one simulation (numbers rounded, see :func:`number`).

    ``jobs`` and ``nodes`` (the simulation's input) add each job's submit time (``jobs``) and
    the cluster's core count (``capacityCores``), which ``swarmapply report`` plots from.
    """
    metrics = result.metrics
    shown: dict[str, Any] = {
        "makespan": number(metrics.makespan),
        "meanWait": number(metrics.mean_wait),
        "p95Wait": number(metrics.p95_wait),
        "coreUtilization": number(metrics.core_utilization),
        "nodesUsed": metrics.nodes_used,
    }
    if metrics.preemptions is not None:
        shown["preemptions"] = metrics.preemptions
    return {
        "strategy": result.strategy,
        "placements": [
            {
                "job": p.job,
                "task": p.task,
                "node": p.node,
                "cpuset": format_cpuset(p.cpuset),
                "start": number(p.start),
                "end": None if p.end is None else number(p.end),
            }
            for p in result.placements
        ],
        "unscheduled": list(result.unscheduled),
        "metrics": shown,
        "jobs": [{"job": job.request.name, "submitted": number(job.submit_at)} for job in jobs],
        "capacityCores": sum(len(node.cores) for node in nodes),
    }


def _time(value: float | None) -> str:
    return "never" if value is None else f"{number(value):g}"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def result_table(result: SimResult) -> str:
    """One simulation as text: the placements, then the metrics and unscheduled jobs."""
    lines = [f"strategy: {result.strategy}", ""]
    if result.placements:
        rows = [["JOB", "TASK", "NODE", "CPUSET", "START", "END"]]
        rows += [
            [p.job, p.task, p.node, format_cpuset(p.cpuset), _time(p.start), _time(p.end)]
            for p in result.placements
        ]
        lines += align(rows, right=[False, False, False, False, True, True])
    else:
        lines.append("no job was placed")
    metrics = result.metrics
    figures = [
        ("makespan", f"{_time(metrics.makespan)}s"),
        ("mean wait", f"{_time(metrics.mean_wait)}s"),
        ("p95 wait", f"{_time(metrics.p95_wait)}s"),
        ("core utilization", _percent(metrics.core_utilization)),
        ("nodes used", str(metrics.nodes_used)),
    ]
    if metrics.preemptions is not None:
        figures.append(("preemptions", str(metrics.preemptions)))
    figures.append(("unscheduled", ", ".join(result.unscheduled) or "none"))
    width = max(len(name) for name, _ in figures) + 1
    lines.append("")
    lines += [f"{(name + ':').ljust(width)} {value}" for name, value in figures]
    return "\n".join(lines)


def comparison_table(results: Sequence[SimResult]) -> str:
    """Several simulations side by side: one row per strategy, one column per metric."""
    preempting = any(r.metrics.preemptions is not None for r in results)
    header = ["STRATEGY", "MAKESPAN", "MEAN-WAIT", "P95-WAIT", "CORE-UTIL", "NODES"]
    header += ["PREEMPTIONS"] if preempting else []
    header += ["UNSCHEDULED"]
    rows = [header]
    for result in results:
        m = result.metrics
        row = [
            result.strategy,
            f"{_time(m.makespan)}s",
            f"{_time(m.mean_wait)}s",
            f"{_time(m.p95_wait)}s",
            _percent(m.core_utilization),
            str(m.nodes_used),
        ]
        row += [str(m.preemptions or 0)] if preempting else []
        row += [str(len(result.unscheduled))]
        rows.append(row)
    lines = align(rows, right=[False] + [True] * (len(header) - 1))
    for result in results:
        if result.unscheduled:
            names = ", ".join(result.unscheduled)
            lines.append(f"unscheduled with {result.strategy}: {names}")
    return "\n".join(lines)


def load_nodes(paths: Sequence[str], recursive: bool, stdin: Any) -> list[NodeState]:
    """The simulated nodes declared in ``paths``: Node objects with ``spec.capacity``.

    Raises:
        AdmissionError: A document is invalid, is not a Node, or has no ``spec.capacity``.
        SimulateError: The paths hold no object.
    """
    admitted = admit_paths(paths, recursive, stdin)
    errors = []
    for item in admitted:
        if item.obj["kind"] != "Node":
            errors.append(
                _error(item, "kind", f"expected a Node in --nodes, got {item.obj['kind']}")
            )
        elif not (item.obj.get("spec") or {}).get("capacity"):
            errors.append(
                _error(
                    item,
                    "spec.capacity",
                    "a simulated node needs spec.capacity with cores and memory",
                )
            )
    if errors:
        raise AdmissionError(errors)
    if not admitted:
        raise SimulateError(f"no Node objects found in {', '.join(paths)}")
    # The declared capacity defines a simulated node, whatever an agent may have reported.
    return [node_state({**item.obj, "status": {}}, ready=True) for item in admitted]


def load_jobs(paths: Sequence[str], recursive: bool, stdin: Any) -> list[SimJob]:
    """The jobs in ``paths``, in input order, with their submit times and durations.

    Raises:
        AdmissionError: A document is invalid, is not a Job, or has no name.
        SimulateError: The paths hold no object.
    """
    admitted = admit_paths(paths, recursive, stdin)
    errors = []
    for item in admitted:
        if item.obj["kind"] != "Job":
            errors.append(
                _error(
                    item,
                    "kind",
                    f"expected a Job in -f, got {item.obj['kind']}"
                    + (" (simulated nodes go in --nodes)" if item.obj["kind"] == "Node" else ""),
                )
            )
        elif not item.obj["metadata"].get("name"):
            errors.append(_error(item, "metadata.name", "simulate needs a name for every job"))
    if errors:
        raise AdmissionError(errors)
    if not admitted:
        raise SimulateError(f"no Job objects found in {', '.join(paths)}")
    jobs = []
    for item in admitted:
        simulation = item.obj.get("spec", {}).get("simulation") or {}
        submit_at = float(simulation.get("submitAt", 0))
        duration = simulation.get("duration")
        try:
            request = job_request(item.obj, submitted=submit_at)
        except ValueError as exc:
            raise AdmissionError([_error(item, "spec.tasks", str(exc))]) from exc
        jobs.append(SimJob(request, submit_at, None if duration is None else float(duration)))
    return jobs


def _error(item: AdmittedObject, path: str, message: str) -> FieldError:
    return FieldError(item.source, item.document, path, message)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``simulate`` command to the command parsers."""
    parser = commands.add_parser(
        "simulate",
        help="replay jobs on declared nodes in virtual time (offline, no store)",
        description="Replay Job manifests on the Nodes declared in --nodes, in virtual time,\n"
        "with the scheduler's placement code, and report placements and metrics. Offline:\n"
        "the store is not used.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument(
        "--nodes",
        action="append",
        required=True,
        metavar="PATH",
        help="Node manifests whose spec.capacity defines the nodes (file, directory, -); "
        "repeatable",
    )
    add_file_arguments(parser)
    parser.add_argument(
        "--strategy",
        choices=[*STRATEGIES, "all"],
        default=DEFAULT_STRATEGY,
        metavar="NAME",
        help=f"{', '.join(STRATEGIES)}, or all to compare them (default {DEFAULT_STRATEGY})",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table (default) or json",
    )
    parser.add_argument(
        "--starvation-seconds",
        type=seconds_type(),
        default=None,
        metavar="S",
        help="a job that has waited S seconds holds back the jobs after it until it fits",
    )
    parser.add_argument(
        "--preemption",
        action="store_true",
        help="waiting jobs evict whole running jobs of lower priority (restarted later)",
    )
    parser.set_defaults(handler=run, read_only=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply simulate``; returns 0 (input errors raise, and exit 1)."""
    errors: list[FieldError] = []  # problems in both inputs are reported together
    nodes: list[NodeState] = []
    jobs: list[SimJob] = []
    try:
        nodes = load_nodes(args.nodes, args.recursive, ctx.stdin)
    except AdmissionError as exc:
        errors += exc.errors
    try:
        jobs = load_jobs(args.filename, args.recursive, ctx.stdin)
    except AdmissionError as exc:
        errors += exc.errors
    if errors:
        raise AdmissionError(errors)
    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    results = [
        simulate(
            nodes,
            jobs,
            strategy,
            starvation_seconds=args.starvation_seconds,
            preemption=args.preemption,
        )
        for strategy in strategies
    ]
    if args.output == "json":
        docs = [result_json(r, jobs, nodes) for r in results]
        ctx.out(json.dumps(docs if args.strategy == "all" else docs[0], indent=2))
    elif args.strategy == "all":
        ctx.out(comparison_table(results))
    else:
        ctx.out(result_table(results[0]))
    return 0
