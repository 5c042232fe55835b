"""What ``swarmapply stress`` records: job and cluster views, rows, and the RUN_DIR files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from swarmapply.cli.stress_record import (
    INTERVALS_COLUMNS,
    JOBS_COLUMNS,
    ClusterView,
    IntervalRow,
    JobRecord,
    JobView,
    cluster_view,
    format_time,
    interval_csv_row,
    interval_row,
    job_row,
    job_view,
    observe,
    requested,
    summary_document,
    wait_stats,
    write_run_dir,
)
from swarmapply.controllers.job_tasks import ATTEMPT_ANNOTATION, build_task

Object = dict[str, Any]


def job(phase: str | None = None, tasks: tuple[str, ...] = ("b", "a")) -> Object:
    """A Job with tasks named in this (non-alphabetical) order, 1 and 2 cores."""
    obj: Object = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": "j", "uid": "uid-j"},
        "spec": {
            "tasks": [
                {"name": name, "image": "x", "cores": i + 1, "memory": 1}
                for i, name in enumerate(tasks)
            ]
        },
    }
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def task(
    of: Object, entry: str, phase: str = "Pending", node: str = "", cpuset: str = ""
) -> Object:
    (spec,) = [e for e in of["spec"]["tasks"] if e["name"] == entry]
    obj = build_task(of, spec)
    status: Object = {"phase": phase}
    if node:
        status.update(node=node, cpuset=cpuset)
    obj["status"] = status
    return obj


def node(name: str, ready: bool, cores: int, allocated: int, driver: str = "sim") -> Object:
    return {
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "capacity": {"cores": cores, "memory": 1},
            "allocated": {"cores": allocated},
            "driver": driver,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


# --------------------------------------------------------------------------------- job view


def test_a_job_without_tasks_yet_is_queued() -> None:
    view = job_view(job(), [])
    assert view == JobView(bound=False, running=False, finished=False, phase="")


def test_partly_bound_is_not_bound() -> None:
    j = job("Pending")
    view = job_view(j, [task(j, "a", "Scheduled", "n1", "0"), task(j, "b")])
    assert not view.bound and view.phase == "Pending" and view.nodes == ()


def test_all_bound_gives_nodes_and_cpusets_in_spec_order() -> None:
    j = job("Scheduled")
    tasks = [task(j, "a", "Scheduled", "n1", "0-1"), task(j, "b", "Running", "n2", "3")]
    view = job_view(j, tasks)
    assert view.bound and not view.running
    assert view.phase == "Pending"  # the store's Scheduled: placed, not running yet
    assert view.nodes == ("n2", "n1") and view.cpusets == ("3", "0-1")  # b first, as in spec


def test_all_tasks_running_is_running_even_before_the_job_phase_says_so() -> None:
    j = job("Scheduled")
    tasks = [task(j, "a", "Running", "n1", "0"), task(j, "b", "Running", "n1", "1")]
    view = job_view(j, tasks)
    assert view.bound and view.running and not view.finished


def test_job_phases_alone_imply_bound_running_finished() -> None:
    assert job_view(job("Running"), []).running
    succeeded = job_view(job("Succeeded"), [])
    assert succeeded.bound and succeeded.running and succeeded.finished
    failed = job_view(job("Failed"), [])
    assert failed.finished and not failed.bound and failed.phase == "Failed"


def test_old_attempts_and_other_jobs_tasks_are_ignored() -> None:
    j = job("Pending", tasks=("a",))
    old = task(j, "a", "Failed", "n9", "7")
    new = task(j, "a", "Scheduled", "n1", "2")
    new["metadata"]["annotations"][ATTEMPT_ANNOTATION] = "1"
    new["metadata"]["name"] += "-1"
    stranger = task(j, "a", "Running", "n5", "5")
    stranger["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    view = job_view(j, [old, new, stranger])
    assert view.nodes == ("n1",) and view.cpusets == ("2",)


def test_requested_counts_tasks_and_cores() -> None:
    assert requested(job()) == (2, 3)


# ----------------------------------------------------------------------------------- observe

QUEUED = JobView(False, False, False, "Pending")
BOUND = JobView(True, False, False, "Pending", ("n1",), ("0",))
RUNNING = JobView(True, True, False, "Running", ("n1",), ("0",))
SUCCEEDED = JobView(True, True, True, "Succeeded")
FAILED_UNPLACED = JobView(False, False, True, "Failed")


def test_each_time_is_set_once_when_first_seen() -> None:
    record = JobRecord("j", 1.0, 1, 1)
    record = observe(record, QUEUED, 1.1)
    assert (record.scheduled, record.running, record.finished) == (None, None, None)
    record = observe(record, BOUND, 1.5)
    record = observe(record, BOUND, 1.7)
    record = observe(record, RUNNING, 2.0)
    record = observe(record, RUNNING, 2.5)
    record = observe(record, SUCCEEDED, 3.0)
    record = observe(record, SUCCEEDED, 4.0)
    assert (record.scheduled, record.running, record.finished) == (1.5, 2.0, 3.0)
    assert record.phase == "Succeeded"
    assert record.nodes == ("n1",) and record.cpusets == ("0",)  # kept from the last bound view


def test_a_job_first_seen_succeeded_gets_every_time_at_once() -> None:
    record = observe(JobRecord("j", 1.0, 1, 1), SUCCEEDED, 2.0)
    assert (record.scheduled, record.running, record.finished) == (2.0, 2.0, 2.0)


def test_a_failed_job_never_placed_only_finishes() -> None:
    record = observe(JobRecord("j", 1.0, 1, 1), FAILED_UNPLACED, 2.0)
    assert (record.scheduled, record.running, record.finished) == (None, None, 2.0)


def test_times_never_precede_the_submit_time() -> None:
    record = observe(JobRecord("j", 5.0, 1, 1), RUNNING, 4.9)
    assert record.scheduled == record.running == 5.0


def test_an_empty_phase_keeps_the_last_known_one() -> None:
    record = observe(
        JobRecord("j", 0.0, 1, 1, phase="Running"), JobView(False, False, False, ""), 1
    )
    assert record.phase == "Running"


# ----------------------------------------------------------------------------------- cluster


def test_cluster_view_sums_ready_nodes_only() -> None:
    nodes = [
        node("a", True, 4, 3),
        node("b", True, 8, 0, driver="docker"),
        node("c", False, 16, 16),
        {"kind": "Node", "metadata": {"name": "declared"}, "spec": {"capacity": {"cores": 2}}},
    ]
    assert cluster_view(nodes) == ClusterView(3, 12, 2, ("docker", "sim"))


def test_cluster_capacity_counts_allocatable_core_ids() -> None:
    n = node("a", True, 8, 1)
    n["status"]["capacity"]["coreIds"] = [0, 2, 4]
    assert cluster_view([n]).cores_capacity == 3


# ------------------------------------------------------------------------------------- rows


def test_interval_row_counts_jobs_by_state() -> None:
    records = [
        JobRecord("q", 0.0, 1, 1),
        JobRecord("r", 0.0, 1, 1, scheduled=0.5),
        JobRecord("r2", 0.0, 1, 1, scheduled=0.5, running=0.6),
        JobRecord("f", 0.0, 1, 1, scheduled=0.5, running=0.6, finished=0.9),
        JobRecord("failed", 0.0, 1, 1, finished=0.9),
    ]
    row = interval_row(3, 1.5, 2, records, ClusterView(5, 8, 2))
    assert row == IntervalRow(3, 1.5, 2, 1, 2, 2, 5, 8)
    assert interval_csv_row(row) == ["3", "1.500", "2", "1", "2", "2", "5", "8"]


def test_job_row_formats_times_and_lists() -> None:
    record = JobRecord("j", 0.1, 2, 3, 0.25, 1.0 / 3, None, "Running", ("n2", "n1"), ("0-1,4", "3"))
    row = job_row(record)
    assert len(row) == len(JOBS_COLUMNS)
    assert row == ["j", "0.100", "0.250", "0.333", "", "Running", "2", "3", "n2;n1", "0-1,4;3"]
    assert format_time(None) == "" and format_time(2) == "2.000"


def test_wait_stats_over_scheduled_jobs() -> None:
    records = [JobRecord(f"j{i}", 0.0, 1, 1, scheduled=float(i)) for i in range(1, 21)]
    records.append(JobRecord("never", 0.0, 1, 1))
    assert wait_stats(records) == (20, 10.5, 19.0)
    assert wait_stats([JobRecord("never", 0.0, 1, 1)]) == (0, 0.0, 0.0)


def summary(records: list[JobRecord]) -> dict[str, Any]:
    return summary_document(
        label="run", pattern="steady", parameters={"rate": 1.0}, seed=None, duration=3,
        interval=0.5, template="t.yaml", driver="sim", strategy=None, store="sqlite:///x.db",
        started="2024-01-01T00:00:00.000Z", ended="2024-01-01T00:00:03.000Z", records=records,
        capacity_cores=8, nodes=2,
    )  # fmt: skip


def test_summary_has_the_contract_keys_in_order() -> None:
    records = [JobRecord("a", 0.0, 1, 1, finished=1.0), JobRecord("b", 0.0, 1, 1)]
    doc = summary(records)
    assert list(doc) == [
        "format", "label", "pattern", "parameters", "seed", "duration", "interval",
        "template", "driver", "strategy", "store", "started", "ended", "jobs_submitted",
        "jobs_finished", "capacity_cores", "nodes",
    ]  # fmt: skip
    assert doc["format"] == 1 and doc["jobs_submitted"] == 2 and doc["jobs_finished"] == 1
    assert isinstance(doc["duration"], float) and isinstance(doc["interval"], float)


def test_write_run_dir_writes_the_three_files(tmp_path: Path) -> None:
    records = [JobRecord("a", 0.0, 1, 1, 0.1, 0.2, 0.3, "Succeeded", ("n",), ("0",))]
    rows = [IntervalRow(0, 0.0, 1, 0, 0, 1, 0, 8)]
    out = tmp_path / "run"
    write_run_dir(str(out), records, rows, summary(records))
    assert sorted(p.name for p in out.iterdir()) == ["intervals.csv", "jobs.csv", "summary.json"]
    with (out / "jobs.csv").open(newline="") as f:
        jobs = list(csv.reader(f))
    assert jobs[0] == list(JOBS_COLUMNS)
    assert jobs[1] == ["a", "0.000", "0.100", "0.200", "0.300", "Succeeded", "1", "1", "n", "0"]
    with (out / "intervals.csv").open(newline="") as f:
        intervals = list(csv.reader(f))
    assert intervals == [list(INTERVALS_COLUMNS), ["0", "0.000", "1", "0", "0", "1", "0", "8"]]
    assert json.loads((out / "summary.json").read_text())["label"] == "run"
