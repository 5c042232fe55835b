"""``swarmapply report``: plots and a summary table comparing stress runs and simulations.

Each RUN is a stress run directory (as ``swarmapply stress`` writes it) or a file written by
``swarmapply simulate -o json``; every run, and every strategy of a ``--strategy all`` file,
becomes one series (see :mod:`swarmapply.cli.report_data`). The command prints one summary
row per series (a table, or JSON with ``-o json``) and writes four figures into ``--out``:
``jobs``, ``queue``, ``utilisation`` and ``wait_cdf`` (see :mod:`swarmapply.cli.report_plots`).

Guarantees: every input is read before anything is written. If any input is incomplete or
malformed, every such problem is printed (naming file, line and column where there is one)
and the command exits 1 without printing a table or writing a figure. Figures are rendered in
memory first and each file is replaced atomically, so a reader never sees half a figure.

Not guaranteed: figures from an earlier report in the same directory are replaced, not
removed; without matplotlib the table is printed and the command exits 1 with no figures.
Simulate output carries each job's submit time (``jobs``) and the cluster's cores
(``capacityCores``); a file from an older version without them needs ``--jobs`` with the job
manifests it was simulated from (their ``spec.simulation.submitAt``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from swarmapply.cli.context import Context
from swarmapply.cli.output import align
from swarmapply.cli.report_data import (
    ReportInputError,
    Series,
    Summary,
    read_run_dir,
    read_simulate_file,
    summarise,
)
from swarmapply.cli.report_plots import FORMATS, PlotsUnavailable, render
from swarmapply.cli.simulate import load_jobs

EXAMPLES = """examples:
  swarmapply report runs/ff-burst runs/bf-burst           compare two stress runs
  swarmapply report runs/* --out plots --format svg
  swarmapply simulate --nodes nodes.yaml -f jobs.yaml --strategy all -o json > sim.json
  swarmapply report sim.json runs/bf-burst       a simulation next to a real run
  swarmapply report runs/bf-burst -o json                 the summary figures as JSON

Figures: jobs (submitted and finished over time), queue (queue length), utilisation (cores in
use, % of capacity), wait_cdf (distribution of submit-to-scheduled waits). Percentiles are by
nearest rank. See docs/report.md. Exit status: 0 when every input was read and every figure
written, 1 otherwise (incomplete or malformed input, matplotlib missing), 2 on bad usage.
"""

#: The default ``--out`` directory, relative to the current directory.
DEFAULT_OUT = "report"


def _read(path: Path, submitted: Mapping[str, float] | None) -> list[Series]:
    """The series of one RUN argument."""
    if path.is_dir():
        return [read_run_dir(path)]
    if path.is_file():
        return read_simulate_file(path, submitted)
    raise ReportInputError(f"{path}: no such file or directory")


def _distinct(series: Sequence[Series]) -> list[Series]:
    """The series with repeated labels numbered (``label (2)``), so legends tell them apart."""
    seen: dict[str, int] = {}
    out = []
    for s in series:
        seen[s.label] = seen.get(s.label, 0) + 1
        if seen[s.label] > 1:
            s = Series(f"{s.label} ({seen[s.label]})", s.source, s.jobs, s.usage, s.end)
        out.append(s)
    return out


def _seconds(value: float | None) -> str:
    """Seconds to the hundredth, without trailing zeros: ``22s``, ``1.25s``; ``-`` for None."""
    return "-" if value is None else f"{round(value, 2):.10g}s"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def summary_table(summaries: Sequence[Summary]) -> str:
    """The summary rows as an aligned table, one row per series."""
    header = [
        "SERIES",
        "JOBS",
        "FINISHED",
        "UNSCHEDULED",
        "MEAN-WAIT",
        "P50-WAIT",
        "P95-WAIT",
        "P99-WAIT",
        "TO-RUNNING",
        "MAKESPAN",
        "UTILISATION",
    ]
    rows = [header]
    for s in summaries:
        rows.append(
            [
                s.label,
                str(s.jobs),
                str(s.finished),
                str(s.unscheduled),
                _seconds(s.mean_wait),
                _seconds(s.p50_wait),
                _seconds(s.p95_wait),
                _seconds(s.p99_wait),
                _seconds(s.mean_to_running),
                _seconds(s.makespan),
                _share(s.mean_utilisation),
            ]
        )
    return "\n".join(align(rows, right=[False] + [True] * (len(header) - 1)))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def summary_json(summaries: Sequence[Summary], sources: Sequence[str]) -> list[dict[str, Any]]:
    """The summary rows as JSON objects (times in seconds, utilisation as a share 0..1)."""
    return [
        {
            "label": s.label,
            "source": source,
            "jobs": s.jobs,
            "finished": s.finished,
            "unscheduled": s.unscheduled,
            "meanWait": _rounded(s.mean_wait),
            "p50Wait": _rounded(s.p50_wait),
            "p95Wait": _rounded(s.p95_wait),
            "p99Wait": _rounded(s.p99_wait),
            "meanTimeToRunning": _rounded(s.mean_to_running),
            "makespan": _rounded(s.makespan),
            "meanUtilization": _rounded(s.mean_utilisation),
        }
        for s, source in zip(summaries, sources, strict=True)
    ]


def write_files(directory: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Writes each file into ``directory`` (created if needed), each replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        target = directory / name
        temporary = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # created with mode 0666 less the umask, as the figure file itself would be
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser], **kw: Any) -> None:
    """Adds the ``report`` command to the command parsers."""
    parser = commands.add_parser(
        "report",
        help="plots and a summary table of stress runs and simulations",
        description="Compare stress run directories and simulate -o json files: print one\n"
        "summary row per run (or strategy) and write four figures with every run overlaid.\n"
        "Offline: the store is not used.",
        epilog=EXAMPLES,
        **kw,
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a stress run directory or a file written by simulate -o json",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for the figures (default ./{DEFAULT_OUT}, created if needed)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="figure file format (default png)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="summary as a table (default) or json",
    )
    parser.add_argument(
        "--jobs",
        action="append",
        metavar="PATH",
        help="job manifests a simulate file was made from, for the jobs' submit times "
        "(spec.simulation.submitAt); repeatable",
    )
    parser.set_defaults(handler=run, read_only=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Runs ``swarmapply report``; returns 0, or 1 when an input or the plotting failed."""
    submitted = None
    if args.jobs:
        jobs = load_jobs(args.jobs, False, ctx.stdin)
        submitted = {job.request.name: job.submit_at for job in jobs}
    series: list[Series] = []
    errors: list[str] = []
    for run_arg in args.runs:
        try:
            series += _read(Path(run_arg), submitted)
        except ReportInputError as exc:
            errors.append(str(exc))
    if errors:
        for error in errors:
            ctx.err(f"error: {error}")
        count = len(errors)
        ctx.err(f"nothing was written: {count} error{'s' if count != 1 else ''}")
        return 1
    series = _distinct(series)
    summaries = [summarise(s) for s in series]
    if args.output == "json":
        ctx.out(json.dumps(summary_json(summaries, [s.source for s in series]), indent=2))
    else:
        ctx.out(summary_table(summaries))
    try:
        figures = render(series, args.format)
    except PlotsUnavailable as exc:
        ctx.err(f"error: {exc}")
        return 1
    written = write_files(Path(args.out), figures)
    ctx.err(f"wrote {len(written)} figures to {args.out}: {', '.join(p.name for p in written)}")
    return 0
