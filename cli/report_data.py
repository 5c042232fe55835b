"""Stress runs and simulations as comparable series, and the summary figures of each.

``swarmapply report`` compares runs of two origins: stress run directories (``jobs.csv``,
``intervals.csv``, ``summary.json``, as ``swarmapply stress`` writes them) and the JSON that
``swarmapply simulate -o json`` prints (one strategy, or a list for ``--strategy all``). Both
become a :class:`Series`: every job's submit, schedule, running and finish times, the spans it
spent queued, and the cores in use against the capacity over time. Everything else (curves for
the plots, the summary table's figures) is computed from a :class:`Series` by pure functions.

Guarantees: parsing is strict. A run directory without ``summary.json`` is reported as
incomplete; a CSV without a required column, or a cell that is not a number, is reported with
its file, line and column; a JSON file that does not have the shape of simulate output is
refused. Nothing is guessed silently: where simulate output lacks what a series needs (job
submit times) the caller must supply it, and the one derived figure (a simulation's core
capacity, see :func:`simulate_series`) follows from the figures simulate printed.

Not guaranteed: a stress run's core usage is sampled (its value at each interval's end stands
for the whole interval), so utilisation figures are as fine as the run's sampling interval.
Percentiles use the nearest-rank method (:func:`swarmapply.controllers.runtime.percentile`),
the one ``simulate`` uses for its ``p95Wait``.

File reading is confined to :func:`read_run_dir` and :func:`read_simulate_file`; the parsers
they call take text and documents and can be used on their own.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmapply.api.quantity import QuantityError, parse_cpuset
from swarmapply.cli.stress_record import (
    FORMAT,
    INTERVALS_COLUMNS,
    INTERVALS_FILE,
    JOBS_COLUMNS,
    JOBS_FILE,
    SUMMARY_FILE,
)
from swarmapply.controllers.runtime import percentile
from swarmapply.errors import PermanentError

__all__ = [
    "Curve",
    "JobTimes",
    "ReportInputError",
    "Series",
    "Summary",
    "Usage",
    "is_simulate_output",
    "jobs_curves",
    "parse_intervals_csv",
    "parse_jobs_csv",
    "queue_curve",
    "read_run_dir",
    "read_simulate_file",
    "simulate_series",
    "summarise",
    "utilisation_curve",
    "wait_cdf",
]


_SIMULATE_KEYS = ("strategy", "placements", "unscheduled", "metrics")

#: A step curve: x values (seconds) and y values; y[i] holds from x[i] until x[i + 1].
Curve = tuple[list[float], list[float]]


class ReportInputError(PermanentError):
    """An input is not a complete stress run or simulate output, or holds a bad value."""


@dataclass(frozen=True)
class JobTimes:
    """When one job reached each stage, in seconds since its run (or simulation) started.

    Attributes:
        name: The job's name.
        submitted: When it was submitted.
        scheduled: When every task was bound to a node; None if that never happened.
        running: When every task was running at once; None if that never happened.
        finished: When it reached Succeeded or Failed; None if it never did.
        queued: The spans it spent queued (submitted or evicted, not bound), as ``(from,
            until)``; ``until`` is None when it was still queued when the run ended.
    """

    name: str
    submitted: float
    scheduled: float | None
    running: float | None
    finished: float | None
    queued: tuple[tuple[float, float | None], ...]


@dataclass(frozen=True)
class Usage:
    """Cores in use during ``[start, end)``, against the capacity then."""

    start: float
    end: float
    cores_in_use: float
    capacity: float


@dataclass(frozen=True)
class Series:
    """One run (or one strategy of a simulation), ready to plot and summarise.

    Attributes:
        label: The legend entry.
        source: The file or directory it was read from.
        jobs: Its jobs, in submit order.
        usage: Consecutive spans of core usage, in time order (empty when unknown).
        end: The time the run's observation ends (curves extend to it).
    """

    label: str
    source: str
    jobs: tuple[JobTimes, ...]
    usage: tuple[Usage, ...]
    end: float


@dataclass(frozen=True)
class Summary:
    """The summary figures of one series (times in seconds; None where undefined).

    Attributes:
        label: The series' label.
        jobs: Jobs submitted.
        finished: Jobs that reached Succeeded or Failed.
        unscheduled: Jobs never scheduled (left out of the wait figures).
        mean_wait: Mean of submit -> scheduled over scheduled jobs.
        p50_wait: Median wait (nearest rank).
        p95_wait: 95th percentile wait (nearest rank).
        p99_wait: 99th percentile wait (nearest rank).
        mean_to_running: Mean of submit -> all tasks running, over jobs that got there.
        makespan: First submit -> last finish; None when no job finished.
        mean_utilisation: Core-seconds in use over core-seconds of capacity, over the whole
            observed time (a share, 0..1); None when the capacity is unknown or zero.
    """

    label: str
    jobs: int
    finished: int
    unscheduled: int
    mean_wait: float | None
    p50_wait: float | None
    p95_wait: float | None
    p99_wait: float | None
    mean_to_running: float | None
    makespan: float | None
    mean_utilisation: float | None


# ----------------------------------------------------------------------------- stress runs


def _records(text: str, source: str, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The data rows of a CSV as (line number, cells by column), the header checked."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ReportInputError(f"{source}: line 1: no header row (expected {','.join(columns)})")
    header = [cell.strip() for cell in header]
    for column in columns:
        if column not in header:
            raise ReportInputError(
                f"{source}: line 1: missing column {column!r} (expected {','.join(columns)})"
            )
    rows = []
    for cells in reader:
        line = reader.line_num
        if not cells:
            continue
        if len(cells) != len(header):
            raise ReportInputError(
                f"{source}: line {line}: {len(cells)} cells, but the header has {len(header)}"
            )
        rows.append((line, dict(zip(header, cells, strict=True))))
    return rows


def _number(cells: Mapping[str, str], column: str, source: str, line: int) -> float | None:
    """A cell as a finite number; None when it is empty."""
    text = cells[column].strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ReportInputError(f"{source}: line {line}: column {column!r}: not a number: {text!r}")
    return value


def _required(cells: Mapping[str, str], column: str, source: str, line: int) -> float:
    value = _number(cells, column, source, line)
    if value is None:
        raise ReportInputError(f"{source}: line {line}: column {column!r}: empty, needs a number")
    return value


def parse_jobs_csv(text: str, source: str) -> list[JobTimes]:
    """The jobs of a stress run's ``jobs.csv``, in submit order.

    A job is queued from its submission until it is scheduled, or until it finished if it
    never was (it failed first).

    Args:
        text: The file's content.
        source: The file's name, for error messages.

    Raises:
        ReportInputError: A required column is missing, a row has the wrong number of cells,
            a job name or submit time is empty, or a time is not a number.
    """
    jobs = []
    for line, cells in _records(text, source, JOBS_COLUMNS):
        name = cells["job"].strip()
        if not name:
            raise ReportInputError(f"{source}: line {line}: column 'job': empty, needs a name")
        submitted = _required(cells, "submitted", source, line)
        scheduled = _number(cells, "scheduled", source, line)
        running = _number(cells, "running", source, line)
        finished = _number(cells, "finished", source, line)
        until = scheduled if scheduled is not None else finished
        jobs.append(JobTimes(name, submitted, scheduled, running, finished, ((submitted, until),)))
    jobs.sort(key=lambda job: job.submitted)
    return jobs


def parse_intervals_csv(text: str, source: str, interval: float | None) -> list[Usage]:
    """The core usage of a stress run's ``intervals.csv``, one span per sampling interval.

    Each row's ``cores_in_use`` and ``cores_capacity`` were sampled at the interval's end and
    stand for the whole interval: from its ``start`` to the next row's ``start``; the last row
    lasts ``interval`` seconds (or as long as the one before it when ``interval`` is None).

    Args:
        text: The file's content.
        source: The file's name, for error messages.
        interval: The run's sampling interval in seconds (``summary.json`` ``interval``).

    Raises:
        ReportInputError: A required column is missing, or a cell is empty or not a number.
    """
    samples = []
    for line, cells in _records(text, source, INTERVALS_COLUMNS):
        start = _required(cells, "start", source, line)
        in_use = _required(cells, "cores_in_use", source, line)
        capacity = _required(cells, "cores_capacity", source, line)
        samples.append((start, in_use, capacity))
    samples.sort(key=lambda sample: sample[0])
    usage = []
    for i, (start, in_use, capacity) in enumerate(samples):
        if i + 1 < len(samples):
            end = samples[i + 1][0]
        elif interval is not None and interval > 0:
            end = start + interval
        elif i > 0:
            end = start + (start - samples[i - 1][0])
        else:
            continue  # one sample of unknown length: no span to weigh it by
        if end > start:
            usage.append(Usage(start, end, in_use, capacity))
    return usage


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"{path}: not valid JSON: {exc}") from exc


def read_run_dir(path: Path) -> Series:
    """Reads a complete stress run directory.

    The label is ``summary.json``'s ``label``, else the directory's name.

    Raises:
        ReportInputError: ``summary.json`` is missing (the run is incomplete), unreadable or of
            another format, or ``jobs.csv`` / ``intervals.csv`` is missing or malformed.
    """
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        raise ReportInputError(
            f"incomplete run: {path}: {SUMMARY_FILE} missing (still running, or interrupted)"
        )
    summary = _load_json(summary_path)
    if not isinstance(summary, dict):
        raise ReportInputError(f"{summary_path}: expected a JSON object")
    if summary.get("format") != FORMAT:
        raise ReportInputError(
            f"{summary_path}: field 'format': expected {FORMAT}, got {summary.get('format')!r}"
        )
    interval = summary.get("interval")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool):
        interval = None
    texts = {}
    for name in (JOBS_FILE, INTERVALS_FILE):
        try:
            texts[name] = (path / name).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ReportInputError(f"{path}: {name} missing") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportInputError(f"{path / name}: cannot read: {exc}") from exc
    jobs = parse_jobs_csv(texts[JOBS_FILE], str(path / JOBS_FILE))
    usage = parse_intervals_csv(texts[INTERVALS_FILE], str(path / INTERVALS_FILE), interval)
    duration = summary.get("duration")
    ends = [usage[-1].end] if usage else []
    ends += [t for job in jobs for t in (job.submitted, job.scheduled, job.finished) if t]
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        ends.append(float(duration))
    label = summary.get("label")
    return Series(
        label if isinstance(label, str) and label else path.name,
        str(path),
        tuple(jobs),
        tuple(usage),
        max(ends, default=0.0),
    )


# ------------------------------------------------------------------------------ simulations


def is_simulate_output(doc: Any) -> bool:
    """Whether a JSON document has the shape ``swarmapply simulate -o json`` prints."""
    docs = doc if isinstance(doc, list) else [doc]
    return bool(docs) and all(
        isinstance(d, dict) and all(key in d for key in _SIMULATE_KEYS) for d in docs
    )


def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReportInputError(f"{where}: field {key!r}: missing or of the wrong type")
    return value


@dataclass(frozen=True)
class _Run:
    job: str
    start: float
    end: float | None
    cores: int


def _runs(doc: Mapping[str, Any], where: str) -> list[_Run]:
    """The runs of a strategy: its placements grouped by job and start time."""
    grouped: dict[tuple[str, float], _Run] = {}
    for i, placement in enumerate(_field(doc, "placements", list, where)):
        at = f"{where}: placements[{i}]"
        if not isinstance(placement, dict):
            raise ReportInputError(f"{at}: expected an object")
        job = _field(placement, "job", str, at)
        start = float(_field(placement, "start", (int, float), at))
        end = placement.get("end")
        if end is not None:
            end = float(_field(placement, "end", (int, float), at))
        try:
            cores = len(parse_cpuset(placement.get("cpuset")))
        except QuantityError as exc:
            raise ReportInputError(f"{at}: field 'cpuset': {exc}") from exc
        key = (job, start)
        known = grouped.get(key)
        grouped[key] = _Run(job, start, end, cores + (known.cores if known else 0))
    return sorted(grouped.values(), key=lambda run: run.start)


def _capacity(doc: Mapping[str, Any], runs: Sequence[_Run], where: str) -> int | None:
    """The simulated cluster's cores: ``capacityCores`` if given, else derived.

    simulate defines ``coreUtilization`` as the core-seconds of all runs within
    ``[0, makespan]`` over ``capacity * makespan``; so ``capacity`` is those core-seconds over
    ``coreUtilization * makespan``, rounded (the printed figures have 6 significant digits).
    """
    given = doc.get("capacityCores")
    if given is not None:
        return int(_field(doc, "capacityCores", int, where))
    metrics = _field(doc, "metrics", dict, where)
    makespan = metrics.get("makespan")
    share = metrics.get("coreUtilization")
    if not isinstance(makespan, (int, float)) or not isinstance(share, (int, float)):
        return None
    if makespan <= 0 or share <= 0:
        return None
    used = sum(
        run.cores * max(0.0, min(makespan if run.end is None else run.end, makespan) - run.start)
        for run in runs
    )
    return round(used / (share * makespan)) or None


def _usage(runs: Sequence[_Run], capacity: int | None, end: float) -> list[Usage]:
    """Core usage as spans between consecutive run starts and ends, up to ``end``."""
    if capacity is None or end <= 0:
        return []
    change: dict[float, int] = {0.0: 0, end: 0}
    for run in runs:
        change[run.start] = change.get(run.start, 0) + run.cores
        if run.end is not None:
            change[run.end] = change.get(run.end, 0) - run.cores
    usage, in_use = [], 0
    times = sorted(change)
    for start, stop in itertools.pairwise(times):
        in_use += change[start]
        if start >= end:
            break
        usage.append(Usage(start, stop, float(in_use), float(capacity)))
    return usage


def _submit_times(
    doc: Mapping[str, Any], names: Iterable[str], given: Mapping[str, float] | None, where: str
) -> dict[str, float]:
    """Submit times per job: the document's ``jobs`` list if it has one, else ``given``."""
    if "jobs" in doc:
        times = {}
        for i, item in enumerate(_field(doc, "jobs", list, where)):
            at = f"{where}: jobs[{i}]"
            if not isinstance(item, dict):
                raise ReportInputError(f"{at}: expected an object")
            times[_field(item, "job", str, at)] = float(_field(item, "submitted", (int, float), at))
    elif given is not None:
        times = dict(given)
    else:
        raise ReportInputError(
            f"{where}: simulate output has no job submit times: pass the job manifests it was "
            "simulated from with --jobs"
        )
    missing = [name for name in names if name not in times]
    if missing:
        raise ReportInputError(f"{where}: no submit time for job {missing[0]!r}")
    return times


def simulate_series(
    doc: Any, source: str, stem: str, submitted: Mapping[str, float] | None = None
) -> list[Series]:
    """The series of a ``swarmapply simulate -o json`` document, one per strategy.

    Each is labelled ``<stem>:<strategy>``. A job's scheduled and running times are the start
    of its last run (as simulate measures waits), its finish is that run's end; the jobs
    simulate lists as unscheduled were never scheduled. A job preempted by another is queued
    again from the end of its evicted run. Core usage counts every run, evicted ones included.
    The series ends at the later of the simulation's makespan and the last submission.

    Args:
        doc: The parsed JSON (an object, or a list of them for ``--strategy all``).
        source: The file it came from, for messages.
        stem: The file's name without its suffix, for labels.
        submitted: Submit time per job name, used when a strategy has no ``jobs`` list of
            ``{"job", "submitted"}`` objects (simulate prints none today).

    Returns:
        One series per strategy, in document order.

    Raises:
        ReportInputError: The document is not simulate output, or a job's submit time is
            unknown.
    """
    if not is_simulate_output(doc):
        raise ReportInputError(
            f"{source}: not simulate output: expected an object with "
            f"{', '.join(_SIMULATE_KEYS)} (or a list of them)"
        )
    series = []
    for index, strategy_doc in enumerate(doc if isinstance(doc, list) else [doc]):
        where = f"{source}: [{index}]" if isinstance(doc, list) else source
        strategy = _field(strategy_doc, "strategy", str, where)
        runs = _runs(strategy_doc, where)
        unscheduled = _field(strategy_doc, "unscheduled", list, where)
        if not all(isinstance(name, str) for name in unscheduled):
            raise ReportInputError(f"{where}: field 'unscheduled': expected job names")
        names = list(dict.fromkeys([run.job for run in runs] + unscheduled))
        times = _submit_times(strategy_doc, names, submitted, where)
        jobs = []
        for name in names:
            mine = [run for run in runs if run.job == name]
            queued: list[tuple[float, float | None]] = []
            since: float | None = times[name]
            for run in mine:
                queued.append((since if since is not None else run.start, run.start))
                since = run.end
            last = None if name in unscheduled or not mine else mine[-1]
            if last is None and since is not None:
                queued.append((since, None))
            start = None if last is None else last.start
            finish = None if last is None else last.end
            jobs.append(JobTimes(name, times[name], start, start, finish, tuple(queued)))
        jobs.sort(key=lambda job: job.submitted)
        makespan = max((run.start if run.end is None else run.end for run in runs), default=0.0)
        end = max([makespan, *(job.submitted for job in jobs)])
        capacity = _capacity(strategy_doc, runs, where)
        label = f"{stem}:{strategy}"
        series.append(Series(label, source, tuple(jobs), tuple(_usage(runs, capacity, end)), end))
    return series


def read_simulate_file(path: Path, submitted: Mapping[str, float] | None = None) -> list[Series]:
    """Reads a file written by ``swarmapply simulate -o json`` (see :func:`simulate_series`).

    Raises:
        ReportInputError: The file is not JSON or not simulate output, or submit times are
            missing.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(
            f"{path}: neither a stress run directory nor simulate output (not JSON: {exc})"
        ) from exc
    return simulate_series(doc, str(path), path.stem, submitted)


# ----------------------------------------------------------------------------- the figures


def jobs_curves(series: Series) -> tuple[Curve, Curve]:
    """Cumulative counts of jobs submitted and of jobs finished, from 0 to the series' end."""
    submitted = _count_curve([job.submitted for job in series.jobs], series.end)
    finished = _count_curve(
        [job.finished for job in series.jobs if job.finished is not None], series.end
    )
    return submitted, finished


def _count_curve(times: Sequence[float], end: float) -> Curve:
    changes: dict[float, int] = {}
    for t in times:
        changes[t] = changes.get(t, 0) + 1
    return _steps(changes, end)


def _steps(changes: Mapping[float, int], end: float) -> Curve:
    """A step curve starting at 0 from 0, adding ``changes[t]`` at each t, held to ``end``."""
    xs, ys, value = [0.0], [0.0], 0.0
    for t in sorted(changes):
        value += changes[t]
        if t <= xs[-1]:
            ys[-1] = value
        elif value != ys[-1]:
            xs.append(t)
            ys.append(value)
    if end > xs[-1]:
        xs.append(end)
        ys.append(value)
    return xs, ys


def queue_curve(series: Series) -> Curve:
    """Jobs queued (submitted, or evicted, and not bound to nodes) over time."""
    changes: dict[float, int] = {}
    for job in series.jobs:
        for since, until in job.queued:
            changes[since] = changes.get(since, 0) + 1
            if until is not None:
                changes[until] = changes.get(until, 0) - 1
    return _steps(changes, series.end)


def utilisation_curve(series: Series) -> Curve:
    """Cores in use as a percentage of the capacity, per usage span (NaN where the capacity
    is 0); empty when the usage is unknown."""
    xs: list[float] = []
    ys: list[float] = []
    for span in series.usage:
        share = 100.0 * span.cores_in_use / span.capacity if span.capacity > 0 else math.nan
        xs.append(span.start)
        ys.append(share)
    if series.usage:
        xs.append(series.usage[-1].end)
        ys.append(ys[-1])
    return xs, ys


def waits(series: Series) -> list[float]:
    """Submit -> scheduled of every scheduled job, ascending."""
    return sorted(job.scheduled - job.submitted for job in series.jobs if job.scheduled is not None)


def wait_cdf(series: Series) -> Curve:
    """The empirical CDF of the wait of scheduled jobs, in percent of the scheduled jobs: at
    each distinct wait ``w``, the share of waits ``<= w``. Empty when no job was scheduled."""
    samples = waits(series)
    xs: list[float] = []
    ys: list[float] = []
    for i, wait in enumerate(samples, start=1):
        share = 100.0 * i / len(samples)
        if xs and wait == xs[-1]:
            ys[-1] = share
        else:
            xs.append(wait)
            ys.append(share)
    return xs, ys


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(series: Series) -> Summary:
    """The summary figures of a series (see :class:`Summary` for their definitions)."""
    jobs = series.jobs
    wait = waits(series)
    to_running = [job.running - job.submitted for job in jobs if job.running is not None]
    finishes = [job.finished for job in jobs if job.finished is not None]
    makespan = max(finishes) - min(job.submitted for job in jobs) if finishes else None
    used = sum(span.cores_in_use * (span.end - span.start) for span in series.usage)
    capacity = sum(span.capacity * (span.end - span.start) for span in series.usage)
    return Summary(
        label=series.label,
        jobs=len(jobs),
        finished=len(finishes),
        unscheduled=sum(1 for job in jobs if job.scheduled is None),
        mean_wait=_mean(wait),
        p50_wait=percentile(wait, 0.50) if wait else None,
        p95_wait=percentile(wait, 0.95) if wait else None,
        p99_wait=percentile(wait, 0.99) if wait else None,
        mean_to_running=_mean(to_running),
        makespan=makespan,
        mean_utilisation=used / capacity if capacity > 0 else None,
    )
