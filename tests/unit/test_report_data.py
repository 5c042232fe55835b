"""The report's data layer: stress run files and simulate output read into series, the curves
drawn from them, and the summary figures, all checked against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from swarmapply.cli.report_data import (
    ReportInputError,
    Series,
    is_simulate_output,
    jobs_curves,
    parse_intervals_csv,
    parse_jobs_csv,
    queue_curve,
    read_run_dir,
    simulate_series,
    summarise,
    utilisation_curve,
    wait_cdf,
)
from swarmapply.cli.stress_record import INTERVALS_COLUMNS, JOBS_COLUMNS

JOBS_CSV = """\
job,submitted,scheduled,running,finished,phase,tasks,cores,nodes,cpusets
b,1.000,4.000,4.500,8.000,Succeeded,2,2,n1;n2,2;0
a,0.000,1.000,2.000,5.000,Succeeded,1,2,n1,0-1
c,2.000,,,,Pending,1,4,,
d,3.000,3.000,3.500,,Running,1,1,n2,1
"""

INTERVALS_CSV = """\
interval,start,submitted,queued,running,finished,cores_in_use,cores_capacity
0,0.000,2,1,1,0,2,8
1,2.000,2,2,2,0,3,8
2,4.000,0,1,2,1,4,8
3,6.000,0,1,1,1,2,4
"""


def summary(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "format": 1,
        "label": "burst",
        "pattern": "burst",
        "parameters": {},
        "seed": 1,
        "duration": 8.0,
        "interval": 2.0,
        "template": "job.yaml",
        "driver": "sim",
        "strategy": "best-fit",
        "store": "sqlite:///state.db",
        "started": "2024-01-01T00:00:00Z",
        "ended": "2024-01-01T00:00:08Z",
        "jobs_submitted": 4,
        "jobs_finished": 2,
        "capacity_cores": 8,
        "nodes": 2,
    }
    doc.update(changes)
    return doc


def write_run(directory: Path, **summary_changes: object) -> Path:
    directory.mkdir()
    (directory / "jobs.csv").write_text(JOBS_CSV)
    (directory / "intervals.csv").write_text(INTERVALS_CSV)
    (directory / "summary.json").write_text(json.dumps(summary(**summary_changes)))
    return directory


@pytest.fixture
def stress(tmp_path: Path) -> Series:
    return read_run_dir(write_run(tmp_path / "run-1"))


# ------------------------------------------------------------------------------ stress run


def test_jobs_csv_rows_become_job_times_in_submit_order() -> None:
    jobs = parse_jobs_csv(JOBS_CSV, "jobs.csv")
    assert [job.name for job in jobs] == ["a", "b", "c", "d"]
    a, _, c, d = jobs
    assert (a.submitted, a.scheduled, a.running, a.finished) == (0.0, 1.0, 2.0, 5.0)
    assert a.queued == ((0.0, 1.0),)
    assert (c.scheduled, c.running, c.finished, c.queued) == (None, None, None, ((2.0, None),))
    assert (d.finished, d.queued) == (None, ((3.0, 3.0),))


def test_a_job_failed_before_binding_is_queued_until_it_finished() -> None:
    text = JOBS_CSV.splitlines()[0] + "\nx,1.5,,,4.25,Failed,1,1,,\n"
    [job] = parse_jobs_csv(text, "jobs.csv")
    assert job.queued == ((1.5, 4.25),)


def test_intervals_become_usage_spans_the_last_one_interval_long() -> None:
    usage = parse_intervals_csv(INTERVALS_CSV, "intervals.csv", 2.0)
    assert [(u.start, u.end, u.cores_in_use, u.capacity) for u in usage] == [
        (0.0, 2.0, 2.0, 8.0),
        (2.0, 4.0, 3.0, 8.0),
        (4.0, 6.0, 4.0, 8.0),
        (6.0, 8.0, 2.0, 4.0),
    ]
    # without the run's interval, the last span is as long as the one before it
    assert parse_intervals_csv(INTERVALS_CSV, "intervals.csv", None)[-1].end == 8.0


def test_run_dir_is_labelled_from_its_summary_or_its_name(tmp_path: Path) -> None:
    assert read_run_dir(write_run(tmp_path / "one")).label == "burst"
    assert read_run_dir(write_run(tmp_path / "two", label="")).label == "two"


def test_stress_summary_figures(stress: Series) -> None:
    figures = summarise(stress)
    assert (figures.label, figures.jobs, figures.finished, figures.unscheduled) == (
        "burst",
        4,
        2,
        1,
    )
    # waits of the scheduled jobs a, b, d: 1, 3, 0
    assert figures.mean_wait == pytest.approx(4 / 3)
    # nearest rank over [0, 1, 3]: ceil(0.5 * 3) = 2nd, ceil(0.95 * 3) = 3rd
    assert (figures.p50_wait, figures.p95_wait, figures.p99_wait) == (1.0, 3.0, 3.0)
    # submit -> running of a, b, d: 2, 3.5, 0.5
    assert figures.mean_to_running == pytest.approx(2.0)
    # first submit 0, last finish 8
    assert figures.makespan == 8.0
    # (2*2 + 3*2 + 4*2 + 2*2) core-seconds over (8*2 + 8*2 + 8*2 + 4*2)
    assert figures.mean_utilisation == pytest.approx(22 / 56)


def test_stress_curves(stress: Series) -> None:
    submitted, finished = jobs_curves(stress)
    assert submitted == ([0.0, 1.0, 2.0, 3.0, 8.0], [1.0, 2.0, 3.0, 4.0, 4.0])
    assert finished == ([0.0, 5.0, 8.0], [0.0, 1.0, 2.0])
    # a queued 0-1, b 1-4, c from 2 on, d for no time at 3
    assert queue_curve(stress) == ([0.0, 2.0, 4.0, 8.0], [1.0, 2.0, 1.0, 1.0])
    assert utilisation_curve(stress) == ([0.0, 2.0, 4.0, 6.0, 8.0], [25.0, 37.5, 50.0, 50.0, 50.0])
    xs, ys = wait_cdf(stress)
    assert xs == [0.0, 1.0, 3.0]
    assert ys == pytest.approx([100 / 3, 200 / 3, 100.0])


def test_equal_waits_make_one_cdf_step() -> None:
    text = JOBS_CSV.splitlines()[0] + "\nx,0,2,,,Running,1,1,n,0\ny,1,3,,,Running,1,1,n,1\n"
    series = Series("s", "s", tuple(parse_jobs_csv(text, "jobs.csv")), (), 3.0)
    assert wait_cdf(series) == ([2.0], [100.0])


def test_zero_capacity_shows_as_a_gap_and_is_left_out_of_the_mean() -> None:
    text = ",".join(INTERVALS_COLUMNS) + "\n0,0,0,0,0,0,0,0\n1,1,0,0,0,0,2,4\n"
    usage = parse_intervals_csv(text, "intervals.csv", 1.0)
    series = Series("s", "s", (), tuple(usage), 2.0)
    xs, ys = utilisation_curve(series)
    assert xs == [0.0, 1.0, 2.0]
    assert math.isnan(ys[0]) and ys[1:] == [50.0, 50.0]
    assert summarise(series).mean_utilisation == 0.5


def test_nothing_scheduled_or_finished_gives_no_figures() -> None:
    text = JOBS_CSV.splitlines()[0] + "\nx,0,,,,Pending,1,1,,\n"
    series = Series("s", "s", tuple(parse_jobs_csv(text, "jobs.csv")), (), 5.0)
    figures = summarise(series)
    assert (figures.jobs, figures.unscheduled) == (1, 1)
    assert figures.mean_wait is figures.p50_wait is figures.p99_wait is None
    assert figures.makespan is figures.mean_to_running is figures.mean_utilisation is None
    assert wait_cdf(series) == ([], [])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("column", JOBS_COLUMNS)
def test_a_missing_jobs_column_is_named_with_file_and_line(column: str) -> None:
    header, *rows = JOBS_CSV.splitlines()
    index = header.split(",").index(column)
    text = "\n".join(
        ",".join(c for i, c in enumerate(r.split(",")) if i != index) for r in [header, *rows]
    )
    with pytest.raises(ReportInputError) as caught:
        parse_jobs_csv(text, "run/jobs.csv")
    assert str(caught.value).startswith(f"run/jobs.csv: line 1: missing column {column!r}")


def test_a_missing_intervals_column_is_named() -> None:
    text = INTERVALS_CSV.replace("cores_capacity", "capacity")
    with pytest.raises(ReportInputError, match=r"intervals\.csv: line 1: missing column 'cores_c"):
        parse_intervals_csv(text, "intervals.csv", 2.0)


def test_a_bad_cell_is_named_with_line_and_column() -> None:
    text = JOBS_CSV.replace("4.500", "soon")
    with pytest.raises(ReportInputError) as caught:
        parse_jobs_csv(text, "jobs.csv")
    assert str(caught.value) == "jobs.csv: line 2: column 'running': not a number: 'soon'"
    with pytest.raises(ReportInputError, match="line 3: column 'submitted': empty"):
        parse_jobs_csv(JOBS_CSV.replace("a,0.000", "a,"), "jobs.csv")
    with pytest.raises(ReportInputError, match="line 4: 9 cells, but the header has 10"):
        parse_jobs_csv(JOBS_CSV.replace("c,2.000,,,,Pending", "c,2.000,,,Pending"), "jobs.csv")


def test_a_run_without_summary_is_incomplete(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / "summary.json").unlink()
    with pytest.raises(ReportInputError) as caught:
        read_run_dir(run)
    assert str(caught.value) == (
        f"incomplete run: {run}: summary.json missing (still running, or interrupted)"
    )


def test_a_run_of_another_format_or_without_csv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="field 'format': expected 1, got 2"):
        read_run_dir(write_run(tmp_path / "new", format=2))
    run = write_run(tmp_path / "partial")
    (run / "intervals.csv").unlink()
    with pytest.raises(ReportInputError, match=r"intervals\.csv missing"):
        read_run_dir(run)


# ------------------------------------------------------------------------------ simulate


def simulate_doc(**changes: object) -> dict[str, object]:
    """x runs 0-4 (evicted by y), y 4-10, x again 10-14, z forever from 2, w never placed."""
    doc: dict[str, object] = {
        "strategy": "priority",
        "placements": [
            {"job": "x", "task": "t", "node": "n", "cpuset": "0-1", "start": 0, "end": 4},
            {"job": "z", "task": "t", "node": "n", "cpuset": "7", "start": 2, "end": None},
            {"job": "y", "task": "a", "node": "n", "cpuset": "0-2", "start": 4, "end": 10},
            {"job": "y", "task": "b", "node": "n", "cpuset": "3", "start": 4, "end": 10},
            {"job": "x", "task": "t", "node": "n", "cpuset": "0-1", "start": 10, "end": 14},
        ],
        "unscheduled": ["w"],
        "metrics": {
            "makespan": 14,
            "meanWait": 3.66667,
            "p95Wait": 10,
            # (2*4 + 1*12 + 4*6 + 2*4) = 52 core-seconds over 8 cores * 14 s
            "coreUtilization": 0.464286,
            "nodesUsed": 1,
            "preemptions": 1,
        },
    }
    doc.update(changes)
    return doc


SUBMITTED = {"x": 0.0, "y": 3.0, "z": 2.0, "w": 5.0}


def test_simulate_jobs_runs_and_queue_spans() -> None:
    [series] = simulate_series(simulate_doc(), "sim.json", "sim", SUBMITTED)
    assert series.label == "sim:priority"
    assert series.end == 14.0
    jobs = {job.name: job for job in series.jobs}
    assert [job.name for job in series.jobs] == ["x", "z", "y", "w"]
    x = jobs["x"]
    assert (x.scheduled, x.running, x.finished) == (10.0, 10.0, 14.0)
    assert x.queued == ((0.0, 0.0), (4.0, 10.0))  # queued again when evicted
    assert (jobs["y"].scheduled, jobs["y"].finished) == (4.0, 10.0)
    assert (jobs["z"].scheduled, jobs["z"].finished) == (2.0, None)
    assert (jobs["w"].scheduled, jobs["w"].queued) == (None, ((5.0, None),))
    assert [(u.start, u.end, u.cores_in_use, u.capacity) for u in series.usage] == [
        (0.0, 2.0, 2.0, 8.0),
        (2.0, 4.0, 3.0, 8.0),
        (4.0, 10.0, 5.0, 8.0),
        (10.0, 14.0, 3.0, 8.0),
    ]
    assert queue_curve(series) == ([0.0, 3.0, 5.0, 10.0, 14.0], [0.0, 1.0, 2.0, 1.0, 1.0])


def test_simulate_summary_agrees_with_simulate_metrics() -> None:
    [series] = simulate_series(simulate_doc(), "sim.json", "sim", SUBMITTED)
    figures = summarise(series)
    assert (figures.jobs, figures.finished, figures.unscheduled) == (4, 2, 1)
    # waits x 10, y 1, z 0
    assert figures.mean_wait == pytest.approx(11 / 3)
    assert (figures.p50_wait, figures.p95_wait, figures.p99_wait) == (1.0, 10.0, 10.0)
    assert figures.mean_to_running == pytest.approx(11 / 3)
    assert figures.makespan == 14.0
    assert figures.mean_utilisation == pytest.approx(52 / 112)


def test_simulate_capacity_given_wins_over_the_derived_one() -> None:
    doc = simulate_doc(capacityCores=16)
    [series] = simulate_series(doc, "sim.json", "sim", SUBMITTED)
    assert {u.capacity for u in series.usage} == {16.0}


def test_simulate_submit_times_in_the_document_are_used() -> None:
    jobs = [{"job": name, "submitted": at} for name, at in SUBMITTED.items()]
    [series] = simulate_series(simulate_doc(jobs=jobs), "sim.json", "sim")
    assert {job.name: job.submitted for job in series.jobs} == SUBMITTED


def test_simulate_without_submit_times_says_how_to_give_them() -> None:
    with pytest.raises(ReportInputError, match="no job submit times: pass the job manifests"):
        simulate_series(simulate_doc(), "sim.json", "sim")
    with pytest.raises(ReportInputError, match="no submit time for job 'w'"):
        simulate_series(simulate_doc(), "sim.json", "sim", {"x": 0, "y": 0, "z": 0})


def test_simulate_all_gives_one_series_per_strategy() -> None:
    docs = [simulate_doc(), simulate_doc(strategy="best-fit")]
    labels = [s.label for s in simulate_series(docs, "all.json", "all", SUBMITTED)]
    assert labels == ["all:priority", "all:best-fit"]


def test_simulate_with_nothing_placed_has_no_usage() -> None:
    doc = simulate_doc(
        placements=[],
        unscheduled=["w"],
        metrics={"makespan": 0, "meanWait": 0, "p95Wait": 0, "coreUtilization": 0},
    )
    [series] = simulate_series(doc, "sim.json", "sim", SUBMITTED)
    assert series.usage == ()
    assert summarise(series).mean_utilisation is None
    assert summarise(series).unscheduled == 1


def test_simulate_shape_is_checked() -> None:
    assert is_simulate_output(simulate_doc())
    assert is_simulate_output([simulate_doc(), simulate_doc()])
    assert not is_simulate_output([])
    assert not is_simulate_output({"strategy": "x"})
    with pytest.raises(ReportInputError, match="not simulate output"):
        simulate_series({"kind": "Job"}, "job.json", "job", SUBMITTED)
    bad = simulate_doc()
    bad["placements"] = [{"job": "x", "start": "soon", "cpuset": "0"}]
    with pytest.raises(ReportInputError, match=r"placements\[0\]: field 'start'"):
        simulate_series(bad, "sim.json", "sim", SUBMITTED)
