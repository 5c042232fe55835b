"""``swarmapply stress`` against running clusters: every pattern on hollow (sim) nodes, a signal
stopping a run in a real process, template and option errors, and one steady run on the real
Docker Engine.

The clusters are ``swarmapply up`` run on a thread (controllers and agent, SQLite store in a
temporary directory), stopped through its stop event. The docker run deletes its jobs with
``--delete-after`` and checks that the agent removed every container of them; their networks
are the pruner's, only after ``--network-age`` (an hour by default), so the test checks that a
pruner pass would remove exactly them now, then removes them itself and checks none is left.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.api.store import Store, open_store
from swarmapply.cli import up
from swarmapply.cli.context import Context
from swarmapply.cli.main import build_parser, main
from swarmapply.cli.stress_patterns import SESSION_LABEL, counts, make_pattern
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import wait_for

Object = dict[str, Any]
SIM_NODES = 2
SIM_CORES = 4
NAME = re.compile(r"job(\d{13})-([0-9a-f]{6})-(\d+)")


@contextlib.contextmanager
def cluster(url: str, *options: str) -> Iterator[Store]:
    """``swarmapply up OPTIONS`` on a thread until the block ends; yields an open store once
    every node it runs is Ready."""
    args = build_parser().parse_args(["up", *options, "--store", url])
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(store_flag=url, stdout=out, stderr=err)
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(up.run(args, ctx, stop)), daemon=True)
    thread.start()
    store = open_store(url)
    try:
        wait_for(
            lambda: len([n for n in store.list("Node").items if ready(n)]) >= 1,
            15,
            f"a Ready node ({err.getvalue()})",
        )
        yield store
    finally:
        stop.set()
        thread.join(20)
        store.close()
        ctx.close()
    assert not thread.is_alive(), "up did not stop"
    assert codes == [0], err.getvalue()


def ready(node: Object) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def write_template(directory: Path, name: str, task: Object, **spec: Any) -> Path:
    doc = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "research"}},
        "spec": {**spec, "tasks": [task]},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def stress(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str, float]:
    """``swarmapply --store URL stress ARGS`` in this process."""
    started = time.monotonic()
    code = main(["--store", url, "stress", *args])
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def time_of(row: dict[str, str], column: str) -> float:
    assert row[column], f"{row['job']}: {column} is empty"
    return float(row[column])


def check_run(run_dir: Path, expected_counts: list[int], finished: bool = True) -> Object:
    """Checks a RUN_DIR against the counts the pattern should have submitted."""
    summary: Object = json.loads((run_dir / "summary.json").read_text())
    jobs = read_csv(run_dir / "jobs.csv")
    intervals = read_csv(run_dir / "intervals.csv")
    total = sum(expected_counts)
    assert summary["jobs_submitted"] == len(jobs) == total
    sessions = set()
    for seq, row in enumerate(jobs):
        match = NAME.fullmatch(row["job"])
        assert match is not None, row["job"]
        assert int(match.group(3)) == seq
        sessions.add(match.group(2))
        assert row["tasks"] == "1" and row["cores"] == "1"
        if finished:
            submitted, scheduled = time_of(row, "submitted"), time_of(row, "scheduled")
            running, done = time_of(row, "running"), time_of(row, "finished")
            assert submitted <= scheduled <= running <= done, row
            assert row["phase"] == "Succeeded"
            assert row["nodes"] and row["cpusets"], row
    assert len(sessions) <= 1
    n = len(expected_counts)
    assert [int(r["submitted"]) for r in intervals[:n]] == expected_counts
    assert all(r["submitted"] == "0" for r in intervals[n:])
    assert [int(r["interval"]) for r in intervals] == list(range(len(intervals)))
    starts = [float(r["start"]) for r in intervals]
    assert starts == sorted(starts)
    cumulative = 0
    for row in intervals:
        cumulative += int(row["submitted"])
        states = int(row["queued"]) + int(row["running"]) + int(row["finished"])
        assert states == cumulative, row
        assert 0 <= int(row["cores_in_use"]) <= int(row["cores_capacity"])
    if finished and total:
        assert intervals[-1]["finished"] == str(total)
        assert summary["jobs_finished"] == total
    return summary


# ---------------------------------------------------------------------------- the sim driver


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('stress')}/state.db"
    with cluster(
        url, "--driver", "sim", "--sim-nodes", str(SIM_NODES), "--sim-cores", str(SIM_CORES),
        "--sim-memory", "4Gi",
    ) as store:  # fmt: skip
        wait_for(
            lambda: sum(ready(n) for n in store.list("Node").items) == SIM_NODES,
            15,
            "every sim node Ready",
        )
        yield url


@pytest.fixture
def sim_template(tmp_path: Path) -> Path:
    task = {"name": "work", "image": "busybox", "command": "sleep 0.5", "cores": 1, "memory": "16m"}
    return write_template(tmp_path, "template", task, simulation={"duration": 0.5})


PATTERN_RUNS = [
    ("steady", {"--rate": 1.5}, ["--rate", "1.5"], None),
    ("bursty", {"--lambda": 1.0}, ["--lambda", "1"], 11),
    ("incremental", {"--slope": 0.5, "--intercept": 1.0},
     ["--slope", "0.5", "--intercept", "1"], None),
    ("random", {"--min": 1.0, "--max": 3.0}, ["--min", "1", "--max", "3"], 5),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "given", "argv", "seed"), PATTERN_RUNS)
def test_each_pattern_submits_its_counts_and_records_every_job(
    pattern: str,
    given: dict[str, float],
    argv: list[str],
    seed: int | None,
    sim_url: str,
    sim_template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / f"run-{pattern}"
    seed_args = ["--seed", str(seed)] if seed is not None else []
    code, out, err, seconds = stress(
        capsys, sim_url, "--pattern", pattern, *argv, "--duration", "3", "--interval", "0.5",
        "--template", str(sim_template), "--out", str(run_dir), *seed_args,
    )  # fmt: skip
    assert code == 0, err
    expected = counts(make_pattern(pattern, dict(given)), 6, seed)
    summary = check_run(run_dir, expected)
    assert seconds < 3 + 10
    assert summary["pattern"] == pattern and summary["seed"] == seed
    assert summary["label"] == run_dir.name
    assert summary["driver"] == "sim" and summary["nodes"] == SIM_NODES
    assert summary["capacity_cores"] == SIM_NODES * SIM_CORES
    assert summary["template"] == "template.yaml" and summary["store"] == sim_url
    # One progress line per interval, then the summary.
    lines = out.splitlines()
    rows = read_csv(run_dir / "intervals.csv")
    assert len([line for line in lines if line.startswith("interval ")]) == len(rows)
    assert f"jobs: {sum(expected)} submitted" in out and "wait submit->scheduled: mean" in out
    # The jobs are in the store, labelled with the session, the template's labels kept.
    session = NAME.fullmatch(read_csv(run_dir / "jobs.csv")[0]["job"]).group(2)  # type: ignore[union-attr]
    store = open_store(sim_url)
    try:
        jobs = store.list("Job", label_selector=f"{SESSION_LABEL}={session}").items
        assert len(jobs) == sum(expected)
        assert all(j["metadata"]["labels"]["team"] == "research" for j in jobs)
        assert all(j["spec"]["network"]["name"] == j["metadata"]["name"] for j in jobs)
    finally:
        store.close()


def test_a_bursty_run_without_a_seed_records_the_seed_it_drew(
    sim_url: str, sim_template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "bursty"
    code, _, err, _ = stress(
        capsys, sim_url, "--pattern", "bursty", "--lambda", "2", "--duration", "1",
        "--interval", "0.5", "--template", str(sim_template), "--out", str(run_dir),
        "--label", "no seed", "--delete-after",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert isinstance(summary["seed"], int) and summary["label"] == "no seed"
    check_run(run_dir, counts(make_pattern("bursty", {"--lambda": 2.0}), 2, summary["seed"]))
    store = open_store(sim_url)
    try:  # --delete-after: nothing of the session is left
        names = {r["job"] for r in read_csv(run_dir / "jobs.csv")}
        left = {j["metadata"]["name"] for j in store.list("Job").items} & names
        assert not left
    finally:
        store.close()


def test_no_drain_stops_after_the_last_interval_with_jobs_unfinished(
    sim_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {"name": "work", "image": "busybox", "cores": 1, "memory": "16m"}
    template = write_template(tmp_path, "long", task, simulation={"duration": 60})
    run_dir = tmp_path / "nodrain"
    code, _, err, seconds = stress(
        capsys, sim_url, "--pattern", "steady", "--rate", "1", "--duration", "1",
        "--interval", "0.5", "--template", str(template), "--out", str(run_dir),
        "--drain-timeout", "0", "--delete-after",
    )  # fmt: skip
    assert code == 0, err
    assert seconds < 5
    check_run(run_dir, [1, 1], finished=False)
    jobs = read_csv(run_dir / "jobs.csv")
    assert all(row["finished"] == "" for row in jobs)
    assert len(read_csv(run_dir / "intervals.csv")) == 2


def test_sigterm_stops_submitting_and_writes_what_was_recorded(
    sim_url: str, sim_template: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "-m", "swarmapply", "--store", sim_url, "stress", "--pattern", "steady",
         "--rate", "1", "--duration", "30", "--interval", "0.5", "--template", str(sim_template),
         "--out", str(run_dir), "--delete-after"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        read_until(process, "interval 1 ")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 143, err
    summary = json.loads((run_dir / "summary.json").read_text())
    jobs = read_csv(run_dir / "jobs.csv")
    assert 2 <= summary["jobs_submitted"] == len(jobs) < 60
    assert "deleted" in out and "run directory:" in out


def read_until(process: subprocess.Popen[str], prefix: str) -> None:
    """Reads the process's output line by line until a line starts with ``prefix``."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the process ended without printing {prefix!r}: {process.wait(10)}")


def test_an_invalid_template_submits_nothing(
    sim_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = tmp_path / "two.yaml"
    job = {"apiVersion": "swarmapply.io/v1", "kind": "Job", "metadata": {"name": "a"},
           "spec": {"tasks": [{"name": "t", "image": "x", "memory": "16m"}]}}  # fmt: skip
    two.write_text(yaml.safe_dump_all([job, {**job, "metadata": {"name": "b"}}]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**job, "spec": {"tasks": [{"name": "t", "image": "x"}]}}))
    store = open_store(sim_url)
    try:
        before = len(store.list("Job").items)
        for template, message in [
            (two, f"{two}: a stress template must hold exactly one Job, found 2"),
            (bad, f"{bad}: document 1: spec.tasks[0]"),
        ]:
            run_dir = tmp_path / f"run-{template.stem}"
            code, _, err, _ = stress(
                capsys, sim_url, "--pattern", "steady", "--rate", "1", "--duration", "1",
                "--interval", "0.5", "--template", str(template), "--out", str(run_dir),
            )  # fmt: skip
            assert code == 1
            assert message in err, err
            assert "nothing was changed" in err
            assert not run_dir.exists()
        assert len(store.list("Job").items) == before
    finally:
        store.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pattern", "steady"], "--rate: required with this --pattern"),
        (["--pattern", "random", "--min", "3", "--max", "1"], "--min: must not be above --max"),
        (["--pattern", "bursty", "--lambda", "-1"], "--lambda: expected a number > 0, got -1"),
        (["--pattern", "steady", "--rate", "1", "--slope", "1"], "--slope: only with --pattern"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(
            ["--store", f"sqlite:///{tmp_path}/s.db", "stress", *argv, "--duration", "1",
             "--interval", "0.5", "--template", "t.yaml", "--out", str(tmp_path / "r")]
        )  # fmt: skip
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.db").exists()


# -------------------------------------------------------------------------- the Docker Engine


@pytest.fixture
def engine_node(docker_client: Any, test_image: str) -> Iterator[str]:
    """A unique node name on the real engine; its containers are removed afterwards."""
    name = f"swarmapply-test-stress-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        label = f"swarmapply.io/node={name}"
        for container in docker_client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)


@pytest.mark.docker
def test_a_steady_run_on_the_docker_engine(
    engine_node: str,
    docker_client: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import docker.errors

    url = f"sqlite:///{tmp_path}/state.db"
    task = {"name": "work", "image": TEST_IMAGE, "command": ["sleep", "0.3"], "cores": 1,
            "memory": "16m"}  # fmt: skip
    template = write_template(tmp_path, "docker-template", task)
    run_dir = tmp_path / "docker"
    names: list[str] = []
    try:
        with cluster(url, "--driver", "docker", "--name", engine_node):
            code, _, err, seconds = stress(
                capsys, url, "--pattern", "steady", "--rate", "1", "--duration", "2",
                "--interval", "0.5", "--template", str(template), "--out", str(run_dir),
                "--drain-timeout", "30", "--delete-after",
            )  # fmt: skip
            assert code == 0, err
            assert seconds < 40
            summary = check_run(run_dir, [1, 1, 1, 1])
            assert summary["driver"] == "docker" and summary["nodes"] >= 1
            names = [row["job"] for row in read_csv(run_dir / "jobs.csv")]
            assert {row["nodes"] for row in read_csv(run_dir / "jobs.csv")} == {engine_node}
            # Deleting the jobs stops and removes their containers (the agent does that).
            label = f"swarmapply.io/node={engine_node}"
            wait_for(
                lambda: not docker_client.containers.list(all=True, filters={"label": label}),
                30,
                "the jobs' containers removed",
                interval=0.2,
            )
        # The job networks are the pruner's, after --network-age: it would remove them now.
        code = main(["--store", url, "prune", "--dry-run", "--network-age", "0"])
        out = capsys.readouterr().out
        assert code == 0
        for name in names:
            assert f"would remove network {name} (job {name} is gone" in out, out
    finally:
        for name in names:  # the networks the pruner would remove later
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_network(name)
    assert not [n for n in docker_client.networks.list() if n.name in names]
