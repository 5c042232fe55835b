"""``swarmapply report`` on stress run directories written here and on real ``simulate -o json``
output: the four figures, the summary table and JSON, input errors, and matplotlib missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarmapply.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
NODES = str(ROOT / "manifests" / "sim" / "nodes.yaml")
JOBS = str(ROOT / "manifests" / "sim" / "jobs.yaml")
FIGURES = ["jobs.png", "queue.png", "utilisation.png", "wait_cdf.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

JOBS_HEADER = "job,submitted,scheduled,running,finished,phase,tasks,cores,nodes,cpusets\n"
INTERVALS_HEADER = "interval,start,submitted,queued,running,finished,cores_in_use,cores_capacity\n"


@pytest.fixture(autouse=True)
def no_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command must not need a store: point it at a place that cannot hold one."""
    monkeypatch.setenv("SWARMAPPLY_STORE", f"sqlite:///{tmp_path}/missing/dir/state.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_run(directory: Path, label: str, jobs: str, intervals: str) -> Path:
    """A complete stress run directory in the shared RUN_DIR format."""
    directory.mkdir(parents=True)
    (directory / "jobs.csv").write_text(JOBS_HEADER + jobs)
    (directory / "intervals.csv").write_text(INTERVALS_HEADER + intervals)
    summary = {
        "format": 1,
        "label": label,
        "pattern": "burst",
        "parameters": {"count": 4},
        "seed": 7,
        "duration": 6.0,
        "interval": 2.0,
        "template": "job.yaml",
        "driver": "sim",
        "strategy": "best-fit",
        "store": "sqlite:///state.db",
        "started": "2024-05-01T10:00:00Z",
        "ended": "2024-05-01T10:00:06Z",
        "jobs_submitted": 4,
        "jobs_finished": 3,
        "capacity_cores": 8,
        "nodes": 2,
    }
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    fast = write_run(
        tmp_path / "runs" / "fast",
        "fast",
        "j1,0.000,0.500,1.000,3.000,Succeeded,1,4,n1,0-3\n"
        "j2,0.000,0.500,1.000,3.000,Succeeded,1,4,n2,0-3\n"
        "j3,1.000,3.000,3.250,5.000,Succeeded,1,4,n1,0-3\n"
        "j4,1.000,,,,Pending,1,16,,\n",
        "0,0.000,2,0,2,0,8,8\n1,2.000,2,2,2,0,4,8\n2,4.000,0,1,1,3,4,8\n",
    )
    slow = write_run(
        tmp_path / "runs" / "slow",
        "slow",
        "j1,0.000,1.000,2.000,4.000,Succeeded,1,4,n1,0-3\n"
        "j2,0.000,2.000,3.000,5.000,Succeeded,1,4,n2,0-3\n"
        "j3,1.000,4.000,5.000,6.000,Succeeded,1,4,n1,0-3\n"
        "j4,1.000,5.000,5.500,,Running,1,4,n2,0-3\n",
        "0,0.000,2,1,1,0,4,8\n1,2.000,2,2,2,0,8,8\n2,4.000,0,0,2,2,8,8\n",
    )
    return [fast, slow]


def assert_figures(directory: Path) -> None:
    assert sorted(p.name for p in directory.iterdir()) == FIGURES
    for name in FIGURES:
        content = (directory / name).read_bytes()
        assert content.startswith(PNG_MAGIC), name
        assert len(content) > 10_000, f"{name} is only {len(content)} bytes"


def test_stress_runs_give_figures_and_table(
    capsys: pytest.CaptureFixture[str], runs: list[Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "plots"
    code, out, err = run(capsys, "report", *map(str, runs), "--out", str(out_dir))
    assert code == 0, err
    assert_figures(out_dir)
    assert "wrote 4 figures" in err
    header, fast, slow = out.splitlines()
    assert header.split() == [
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
    # fast: waits 0.5, 0.5, 2 (j4 never scheduled); to running 1, 1, 2.25; makespan 0 -> 5;
    # in use (8 + 4 + 4) * 2 s over 8 * 6 s
    assert fast.split() == [
        "fast", "4", "3", "1", "1s", "0.5s", "2s", "2s", "1.42s", "5s", "66.7%"
    ]  # fmt: skip
    # slow: waits 1, 2, 3, 4; to running 2, 3, 4, 4.5; makespan 0 -> 6; (4 + 8 + 8) / 24
    assert slow.split() == [
        "slow", "4", "3", "0", "2.5s", "2s", "4s", "4s", "3.38s", "6s", "83.3%"
    ]  # fmt: skip


def test_json_summary(capsys: pytest.CaptureFixture[str], runs: list[Path], tmp_path: Path) -> None:
    code, out, err = run(capsys, "report", str(runs[0]), "-o", "json", "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert json.loads(out) == [
        {
            "label": "fast",
            "source": str(runs[0]),
            "jobs": 4,
            "finished": 3,
            "unscheduled": 1,
            "meanWait": 1.0,
            "p50Wait": 0.5,
            "p95Wait": 2.0,
            "p99Wait": 2.0,
            "meanTimeToRunning": 1.416667,
            "makespan": 5.0,
            "meanUtilization": 0.666667,
        }
    ]


def test_real_simulate_output_matches_simulate_metrics(
    capsys: pytest.CaptureFixture[str], runs: list[Path], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "simulate", "--nodes", NODES, "-f", JOBS, "--strategy", "all", "-o", "json"
    )
    assert (code, err) == (0, "")
    simulated = json.loads(out)
    sim_file = tmp_path / "sim.json"
    sim_file.write_text(out)
    out_dir = tmp_path / "plots"
    code, out, err = run(
        capsys,
        "report",
        str(sim_file),
        str(runs[1]),
        "--jobs",
        JOBS,
        "-o",
        "json",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    assert_figures(out_dir)
    rows = json.loads(out)
    labels = [row["label"] for row in rows]
    assert labels == [f"sim:{doc['strategy']}" for doc in simulated] + ["slow"]
    for row, doc in zip(rows, simulated, strict=False):
        metrics = doc["metrics"]
        # every job of manifests/sim is submitted from 0 on, so makespans agree
        assert row["makespan"] == pytest.approx(metrics["makespan"]), row["label"]
        assert row["meanWait"] == pytest.approx(metrics["meanWait"], rel=1e-5), row["label"]
        assert row["p95Wait"] == pytest.approx(metrics["p95Wait"]), row["label"]
        assert row["meanUtilization"] == pytest.approx(metrics["coreUtilization"], rel=1e-5)
        assert row["unscheduled"] == len(doc["unscheduled"])
        assert row["jobs"] == 5


def test_simulate_file_without_submit_times_says_how(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "simulate", "--nodes", NODES, "-f", JOBS, "-o", "json")
    assert code == 0
    sim_file = tmp_path / "one.json"
    sim_file.write_text(out)
    out_dir = tmp_path / "plots"
    code, out, err = run(capsys, "report", str(sim_file), "--out", str(out_dir))
    assert code == 0 and "one:best-fit" in out, err  # the submit times are in the file
    older = json.loads(sim_file.read_text())
    del older["jobs"], older["capacityCores"]  # as simulate wrote it before it had them
    sim_file.write_text(json.dumps(older))
    out_dir = tmp_path / "plots-older"
    code, out, err = run(capsys, "report", str(sim_file), "--out", str(out_dir))
    assert (code, out) == (1, "")
    assert "no job submit times: pass the job manifests it was simulated from with --jobs" in err
    assert not out_dir.exists()


def test_input_errors_are_all_reported_and_nothing_is_written(
    capsys: pytest.CaptureFixture[str], runs: list[Path], tmp_path: Path
) -> None:
    (runs[0] / "summary.json").unlink()
    jobs_csv = runs[1] / "jobs.csv"
    jobs_csv.write_text(jobs_csv.read_text().replace(",cores,", ",cpus,", 1))
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello\n")
    out_dir = tmp_path / "plots"
    code, out, err = run(
        capsys,
        "report",
        *map(str, runs),
        str(not_json),
        str(tmp_path / "nope"),
        "--out",
        str(out_dir),
    )
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"error: incomplete run: {runs[0]}: summary.json missing (still running, or interrupted)",
        f"error: {jobs_csv}: line 1: missing column 'cores' "
        "(expected job,submitted,scheduled,running,finished,phase,tasks,cores,nodes,cpusets)",
        err.splitlines()[2],
        f"error: {tmp_path / 'nope'}: no such file or directory",
        "nothing was written: 4 errors",
    ]
    assert err.splitlines()[2].startswith(
        f"error: {not_json}: neither a stress run directory nor simulate output"
    )
    assert not out_dir.exists()


def test_without_matplotlib_the_table_is_printed_and_the_exit_is_1(
    capsys: pytest.CaptureFixture[str],
    runs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    out_dir = tmp_path / "plots"
    code, out, err = run(capsys, "report", str(runs[0]), "--out", str(out_dir))
    assert code == 1
    assert out.splitlines()[1].split()[0] == "fast"
    assert err == "error: plots need matplotlib: pip install 'swarmapply[report]'\n"
    assert not out_dir.exists()


def test_svg_format(capsys: pytest.CaptureFixture[str], runs: list[Path], tmp_path: Path) -> None:
    out_dir = tmp_path / "plots"
    code, _, err = run(capsys, "report", str(runs[0]), "--format", "svg", "--out", str(out_dir))
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [name.replace(".png", ".svg") for name in FIGURES]
    assert b"<svg" in (out_dir / "jobs.svg").read_bytes()[:500]


def test_the_command_line_does_not_import_matplotlib() -> None:
    code = (
        "import sys\n"
        "from swarmapply.cli.main import build_parser\n"
        "build_parser().parse_args(['report', 'x'])\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
