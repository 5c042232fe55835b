"""What ``swarmapply stress`` records, and the RUN_DIR files it writes.

The pure part turns observed objects into rows: :func:`job_view` reads one Job and its Tasks,
:func:`observe` moves a :class:`JobRecord` forward in time, :func:`cluster_view` sums the Ready
nodes, :func:`interval_row` counts a run's jobs by state, and :func:`job_row`,
:func:`interval_csv_row` and :func:`summary_document` format them as the RUN_DIR contract says
(``docs/stress.md``). The same inputs always give the same rows.

The thin shell: :class:`Mirror` keeps the run's Jobs, their Tasks and every Node as the store
last showed them, listing once and then following the store's watch (re-listing when history
was compacted); :func:`write_run_dir` writes ``jobs.csv``, ``intervals.csv`` and, last and
atomically, ``summary.json``.

What it guarantees: times only move forward for a job (``submitted <= scheduled <= running <=
finished`` whenever set); a state seen without the ones before it (a job first seen Succeeded)
gives the earlier ones the same time. Times are when a change was seen, so they lag the change
by the store's watch latency (tens of milliseconds on SQLite).

What it does not guarantee: a job deleted by someone else during the run keeps the state last
seen; its finish is never recorded unless it was seen.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from swarmapply.api.store import Gone, Object, Store
from swarmapply.controllers.job_tasks import (
    FINISHED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    job_tasks,
    live_tasks,
    task_phase,
)
from swarmapply.controllers.requests import condition_true, node_capacity
from swarmapply.controllers.runtime import percentile

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "INTERVALS_COLUMNS",
    "INTERVALS_FILE",
    "JOBS_COLUMNS",
    "JOBS_FILE",
    "SUMMARY_FILE",
    "ClusterView",
    "IntervalRow",
    "JobRecord",
    "JobView",
    "Mirror",
    "cluster_view",
    "format_time",
    "interval_csv_row",
    "interval_row",
    "job_row",
    "job_view",
    "observe",
    "requested",
    "summary_document",
    "wait_stats",
    "write_run_dir",
]

#: The RUN_DIR format version written to ``summary.json``.
FORMAT = 1
JOBS_COLUMNS = (
    "job",
    "submitted",
    "scheduled",
    "running",
    "finished",
    "phase",
    "tasks",
    "cores",
    "nodes",
    "cpusets",
)
INTERVALS_COLUMNS = (
    "interval",
    "start",
    "submitted",
    "queued",
    "running",
    "finished",
    "cores_in_use",
    "cores_capacity",
)
JOBS_FILE = "jobs.csv"
INTERVALS_FILE = "intervals.csv"
SUMMARY_FILE = "summary.json"


# ------------------------------------------------------------------------------ pure part


@dataclass(frozen=True)
class JobView:
    """One job's state as one look at the store shows it.

    Attributes:
        bound: Every task is bound to a node (or the job's phase says so).
        running: Every task is Running at once, or the job is Running or Succeeded.
        finished: The job is Succeeded or Failed.
        phase: The job's phase as the RUN_DIR shows it: Pending (also for the store's
            Scheduled: placed, not yet running), Running, Succeeded, Failed, or "" when unknown.
        nodes: The nodes of its tasks in ``spec.tasks`` order, when every task is bound.
        cpusets: Their cpusets, in the same order.
    """

    bound: bool
    running: bool
    finished: bool
    phase: str
    nodes: tuple[str, ...] = ()
    cpusets: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """What was recorded of one submitted job; times in seconds since the run's start.

    Attributes:
        name: The job's name.
        submitted: When the create call returned.
        tasks: How many tasks the job has.
        cores: The cores all its tasks ask for together.
        scheduled: When every task was first seen bound; None: not yet.
        running: When every task was first seen Running at once; None: not yet.
        finished: When the job was first seen Succeeded or Failed; None: not yet.
        phase: The phase last seen ("" before any).
        nodes: The nodes of its tasks last seen with all tasks bound.
        cpusets: Their cpusets.
    """

    name: str
    submitted: float
    tasks: int
    cores: int
    scheduled: float | None = None
    running: float | None = None
    finished: float | None = None
    phase: str = ""
    nodes: tuple[str, ...] = ()
    cpusets: tuple[str, ...] = ()


def requested(job: Mapping[str, Any]) -> tuple[int, int]:
    """The number of tasks of a Job and the cores they ask for together."""
    entries = job_tasks(job)
    return len(entries), sum(int(entry.get("cores", 1)) for entry in entries)


def _shown_phase(phase: Any) -> str:
    if phase == SCHEDULED:
        return "Pending"
    return str(phase) if phase in ("Pending", RUNNING, *FINISHED) else ""


def job_view(job: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]]) -> JobView:
    """Reads one Job and its Tasks.

    Args:
        job: The Job as the store has it.
        tasks: Tasks of the job (others, and old attempts, are ignored).

    Returns:
        The job's state (see :class:`JobView`).
    """
    entries = [str(entry["name"]) for entry in job_tasks(job)]
    live = live_tasks(job, tasks)
    phase = (job.get("status") or {}).get("phase")
    ordered = [live.get(name) for name in entries]
    statuses = [(task.get("status") or {}) if task is not None else {} for task in ordered]
    all_bound = bool(entries) and all(status.get("node") for status in statuses)
    all_running = bool(entries) and all(
        task is not None and task_phase(task) == RUNNING for task in ordered
    )
    nodes: tuple[str, ...] = ()
    cpusets: tuple[str, ...] = ()
    if all_bound:
        nodes = tuple(str(status["node"]) for status in statuses)
        cpusets = tuple(str(status.get("cpuset") or "") for status in statuses)
    return JobView(
        bound=all_bound or phase in (SCHEDULED, RUNNING, SUCCEEDED),
        running=all_running or phase in (RUNNING, SUCCEEDED),
        finished=phase in FINISHED,
        phase=_shown_phase(phase),
        nodes=nodes,
        cpusets=cpusets,
    )


def observe(record: JobRecord, view: JobView, now: float) -> JobRecord:
    """The record after seeing ``view`` at time ``now`` (seconds since the run's start).

    Each time is set once, the first time its state is seen; a later state seen first sets the
    earlier ones too (a job first seen Succeeded was scheduled and running by then). A Failed
    job is not assumed to have been scheduled or running. Nodes and cpusets follow the last
    view with every task bound.
    """
    now = max(now, record.submitted)
    finished = record.finished
    if finished is None and view.finished:
        finished = now
    running = record.running
    if running is None and view.running:
        running = now
    scheduled = record.scheduled
    if scheduled is None and (view.bound or running is not None):
        scheduled = now
    if running is not None and scheduled is not None:
        scheduled = min(scheduled, running)
    return replace(
        record,
        scheduled=scheduled,
        running=running,
        finished=finished,
        phase=view.phase or record.phase,
        nodes=view.nodes or record.nodes,
        cpusets=view.cpusets or record.cpusets,
    )


@dataclass(frozen=True)
class ClusterView:
    """The Ready nodes at one moment.

    Attributes:
        cores_in_use: Cores allocated on Ready nodes (to any task, not only this run's).
        cores_capacity: Allocatable cores of Ready nodes.
        nodes: How many nodes are Ready.
        drivers: The drivers of the Ready nodes (``sim``, ``docker``), sorted, no repeats.
    """

    cores_in_use: int
    cores_capacity: int
    nodes: int
    drivers: tuple[str, ...] = ()


def cluster_view(nodes: Iterable[Mapping[str, Any]]) -> ClusterView:
    """Sums the Ready nodes (condition ``Ready`` True): allocated and allocatable cores."""
    in_use = capacity = count = 0
    drivers: set[str] = set()
    for node in nodes:
        if not condition_true(node, "Ready"):
            continue
        status = node.get("status") or {}
        count += 1
        capacity += len(node_capacity(node)[0])
        in_use += int((status.get("allocated") or {}).get("cores", 0))
        if status.get("driver"):
            drivers.add(str(status["driver"]))
    return ClusterView(in_use, capacity, count, tuple(sorted(drivers)))


@dataclass(frozen=True)
class IntervalRow:
    """One row of ``intervals.csv`` (see the RUN_DIR contract)."""

    interval: int
    start: float
    submitted: int
    queued: int
    running: int
    finished: int
    cores_in_use: int
    cores_capacity: int


def interval_row(
    index: int,
    start: float,
    submitted: int,
    records: Iterable[JobRecord],
    cluster: ClusterView,
) -> IntervalRow:
    """Counts the run's jobs by state at an interval's end.

    Args:
        index: The interval's 0-based index.
        start: Its start, seconds since the run's start.
        submitted: Jobs submitted in it.
        records: Every job of the run so far, as recorded at the interval's end.
        cluster: The Ready nodes at the interval's end.
    """
    queued = running = finished = 0
    for record in records:
        if record.finished is not None:
            finished += 1
        elif record.scheduled is not None:
            running += 1
        else:
            queued += 1
    return IntervalRow(
        index,
        start,
        submitted,
        queued,
        running,
        finished,
        cluster.cores_in_use,
        cluster.cores_capacity,
    )


def format_time(seconds: float | None) -> str:
    """A time as the CSV files show it: 3 decimals, or empty for never."""
    return "" if seconds is None else f"{seconds:.3f}"


def job_row(record: JobRecord) -> list[str]:
    """A ``jobs.csv`` row, columns as :data:`JOBS_COLUMNS`."""
    return [
        record.name,
        format_time(record.submitted),
        format_time(record.scheduled),
        format_time(record.running),
        format_time(record.finished),
        record.phase,
        str(record.tasks),
        str(record.cores),
        ";".join(record.nodes),
        ";".join(record.cpusets),
    ]


def interval_csv_row(row: IntervalRow) -> list[str]:
    """An ``intervals.csv`` row, columns as :data:`INTERVALS_COLUMNS`."""
    return [
        str(row.interval),
        format_time(row.start),
        str(row.submitted),
        str(row.queued),
        str(row.running),
        str(row.finished),
        str(row.cores_in_use),
        str(row.cores_capacity),
    ]


def wait_stats(records: Iterable[JobRecord]) -> tuple[int, float, float]:
    """Waits from submit to scheduled over the jobs that were scheduled.

    Returns:
        How many jobs were scheduled, their mean wait and 95th-percentile wait (nearest
        rank), in seconds; both 0.0 when none was.
    """
    waits = [r.scheduled - r.submitted for r in records if r.scheduled is not None]
    if not waits:
        return 0, 0.0, 0.0
    return len(waits), sum(waits) / len(waits), percentile(waits, 0.95)


def summary_document(
    *,
    label: str,
    pattern: str,
    parameters: Mapping[str, Any],
    seed: int | None,
    duration: float,
    interval: float,
    template: str,
    driver: str | None,
    strategy: str | None,
    store: str,
    started: str,
    ended: str,
    records: Sequence[JobRecord],
    capacity_cores: int,
    nodes: int,
) -> dict[str, Any]:
    """The ``summary.json`` object, keys in the contract's order."""
    return {
        "format": FORMAT,
        "label": label,
        "pattern": pattern,
        "parameters": dict(parameters),
        "seed": seed,
        "duration": float(duration),
        "interval": float(interval),
        "template": template,
        "driver": driver,
        "strategy": strategy,
        "store": store,
        "started": started,
        "ended": ended,
        "jobs_submitted": len(records),
        "jobs_finished": sum(1 for r in records if r.finished is not None),
        "capacity_cores": capacity_cores,
        "nodes": nodes,
    }


# ---------------------------------------------------------------------------- the shell


def _write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_run_dir(
    directory: str,
    records: Sequence[JobRecord],
    rows: Sequence[IntervalRow],
    summary: Mapping[str, Any],
) -> None:
    """Writes a complete RUN_DIR: both CSV files, then ``summary.json`` atomically.

    ``summary.json`` is written to a temporary file in ``directory`` and renamed, so a
    reader that sees it sees a finished run.

    Raises:
        OSError: The directory cannot be written.
    """
    os.makedirs(directory, exist_ok=True)
    _write_csv(os.path.join(directory, JOBS_FILE), JOBS_COLUMNS, map(job_row, records))
    _write_csv(
        os.path.join(directory, INTERVALS_FILE), INTERVALS_COLUMNS, map(interval_csv_row, rows)
    )
    handle, temporary = tempfile.mkstemp(prefix=".summary-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=2)
            out.write("\n")
        os.replace(temporary, os.path.join(directory, SUMMARY_FILE))
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _revision_of(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class Mirror:
    """The run's Jobs and their Tasks, and every Node, as the store last showed them.

    :meth:`start` lists once; :meth:`follow` applies the store's later changes until a
    deadline, calling ``on_job`` with the name of every job of the run whose Job or Tasks
    changed. A compacted history (``Gone``) is answered by listing again. Store errors are
    raised to the caller, which retries.
    """

    def __init__(self, store: Store, is_ours: Callable[[str], bool]) -> None:
        """Args:
        store: The store.
        is_ours: Whether a job name belongs to the run (its Job and Tasks are kept).
        """
        self.store = store
        self.is_ours = is_ours
        self.jobs: dict[str, Object] = {}
        self.tasks: dict[str, dict[str, Object]] = {}  # job name -> task name -> Task
        self.nodes: dict[str, Object] = {}
        self.revision = 0
        self._seen: dict[tuple[str, str], int] = {}

    def start(self) -> list[str]:
        """Lists Nodes, the run's Jobs and their Tasks; returns the jobs that changed."""
        revision = self.store.revision()
        self.jobs.clear()
        self.tasks.clear()
        self.nodes.clear()
        self._seen.clear()
        for node in self.store.list("Node").items:
            self._keep("Node", node)
        for job in self.store.list("Job").items:
            if self.is_ours(job["metadata"]["name"]):
                self._keep("Job", job)
        for task in self.store.list("Task").items:
            if self.is_ours(str((task.get("spec") or {}).get("job", ""))):
                self._keep("Task", task)
        self.revision = revision
        return list(self.jobs)

    def _keep(self, kind: str, obj: Object, deleted: bool = False) -> str | None:
        """Stores one object (unless an as new or newer state is kept); returns its job."""
        name = str(obj["metadata"]["name"])
        revision = _revision_of(obj)
        key = (kind, name)
        if not deleted and revision and self._seen.get(key, 0) >= revision:
            return None
        self._seen[key] = revision
        if kind == "Node":
            if deleted:
                self.nodes.pop(name, None)
            else:
                self.nodes[name] = obj
            return None
        if kind == "Job":
            if not deleted:
                self.jobs[name] = obj  # a deleted job keeps its last state
            return name
        job = str((obj.get("spec") or {}).get("job", ""))
        group = self.tasks.setdefault(job, {})
        if deleted:
            group.pop(name, None)
        else:
            group[name] = obj
        return job

    def apply(self, kind: str, obj: Object, deleted: bool) -> str | None:
        """Applies one change; returns the name of the run's job it concerns, if any."""
        if kind == "Node":
            return self._keep(kind, obj, deleted)
        if kind == "Job" and self.is_ours(str(obj["metadata"]["name"])):
            return self._keep(kind, obj, deleted)
        if kind == "Task" and self.is_ours(str((obj.get("spec") or {}).get("job", ""))):
            return self._keep(kind, obj, deleted)
        return None

    def follow(
        self,
        deadline: float,
        stop: threading.Event,
        on_job: Callable[[str], None],
        done: Callable[[], bool] = lambda: False,
    ) -> None:
        """Applies changes until ``deadline`` (monotonic seconds), ``stop``, or ``done()``.

        Raises:
            StoreError: The store failed (the caller retries).
        """
        while not stop.is_set() and not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                for event in self.store.watch(None, self.revision, stop=stop, timeout=remaining):
                    self.revision = max(self.revision, event.revision)
                    kind = str(event.object.get("kind", ""))
                    job = self.apply(kind, event.object, event.type == "DELETED")
                    if job is not None:
                        on_job(job)
                        if done():
                            return
                return  # the watch ended: the deadline passed or stop was set
            except Gone:
                log.warning("stress: the store's history was compacted; listing again")
                for job in self.start():
                    on_job(job)

    def job_view(self, name: str) -> JobView | None:
        """The state of one of the run's jobs, None when its Job was never seen."""
        job = self.jobs.get(name)
        if job is None:
            return None
        return job_view(job, self.tasks.get(name, {}).values())

    def cluster(self) -> ClusterView:
        """The Ready nodes as last seen."""
        return cluster_view(self.nodes.values())
