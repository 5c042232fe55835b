"""``swarmapply up``: the example jobs run to the end on the sim driver (in-process, on both
store backends) and on the real Docker Engine; serving until SIGTERM in a real process; a
second ``up`` on the same store; option and driver errors; and the pure parts (options, driver
choice, progress lines, lease judgement).

Sim runs leave the Docker Engine alone: the sim driver runs no engine-side controller (the
deployer), and where the driver is chosen automatically ``DOCKER_HOST`` points nowhere. The
docker tests remove every container and network they make.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.api.admission import admit_paths
from swarmapply.api.store import Store, open_store
from swarmapply.cli.main import build_parser, main
from swarmapply.cli.up import (
    DriverUnavailable,
    Progress,
    UsageError,
    check_options,
    choose_driver,
    controllers_for,
    held_by_other,
)
from swarmapply.controllers.manager import known_controllers
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
HELLO = str(EXAMPLES / "hello.yaml")
NOWHERE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


def job(store: Store, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = store.get("Job", name)
    return obj


def holders(store: Store) -> dict[str, str]:
    """Every Lease's holder by name (empty: released)."""
    return {
        lease["metadata"]["name"]: (lease.get("spec") or {}).get("holderIdentity", "")
        for lease in store.list("Lease").items
    }


def run_up(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    """``swarmapply up ARGS`` in this process: exit code, stdout, stderr and seconds taken."""
    started = time.monotonic()
    code = main(["up", *args])
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    return code, out, err, seconds


# ----------------------------------------------------------------------- the sim driver


def test_hello_runs_to_succeeded_on_the_sim_driver(
    store_url: str, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, seconds = run_up(
        capsys, "--driver", "sim", "-f", HELLO, "--until-done", "--store", store_url
    )
    assert code == 0, err
    assert seconds < 15
    lines = out.splitlines()
    assert lines[0] == "job.swarmapply.io/hello-world created"
    assert "job hello-world: Running -> Succeeded" in lines
    assert lines[-1].startswith("job hello-world: Pending -> ")
    assert lines[-1].endswith(" -> Running -> Succeeded")
    assert job(store, "hello-world")["status"]["phase"] == "Succeeded"
    task = store.list("Task", field_selector="spec.job=hello-world").items
    assert [t["status"]["phase"] for t in task] == ["Succeeded"]
    assert task[0]["status"]["node"] == "sim-0"
    # A clean shutdown: every controller Lease and the node's heartbeat Lease are released.
    leases = holders(store)
    assert {"controller-job", "controller-scheduler", "node-sim-0"} <= set(leases)
    assert "controller-deployer" not in leases  # no engine-side controller for hollow nodes
    assert set(leases.values()) == {""}, leases


def test_two_jobs_and_several_nodes(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err, seconds = run_up(
        capsys, "--driver", "sim", "--sim-nodes", "3", "--sim-cores", "2", "--sim-memory", "1Gi",
        "-f", HELLO, "-f", str(EXAMPLES / "talk.yaml"), "--until-done", "--store", sqlite_url,
    )  # fmt: skip
    assert code == 0, err
    assert seconds < 15
    summary = out.splitlines()[-2:]
    assert [line.split(":")[0] for line in summary] == ["job hello-world", "job talk"]
    assert all(line.endswith("-> Succeeded") for line in summary)
    store = open_store(sqlite_url)
    try:
        nodes = sorted(n["metadata"]["name"] for n in store.list("Node").items)
        assert nodes == ["sim-0", "sim-1", "sim-2"]
        assert store.get("Node", "sim-1")["status"]["capacity"]["cores"] == 2
    finally:
        store.close()


def test_without_an_engine_it_falls_back_to_sim_and_a_rerun_sees_the_job_finished(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NOWHERE)
    code, out, err, _ = run_up(capsys, "-f", HELLO, "--until-done", "--store", sqlite_url)
    assert code == 0, err
    notices = [line for line in err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1
    assert NOWHERE in notices[0] and "using the sim driver" in notices[0]
    assert out.splitlines()[-1].endswith("-> Succeeded")
    code, out, err, _ = run_up(capsys, "-f", HELLO, "--until-done", "--store", sqlite_url)
    assert code == 0, err
    assert out.splitlines() == [
        "job.swarmapply.io/hello-world unchanged",
        "job hello-world: Succeeded (it had finished before; delete it to run it again)",
        "job hello-world: Succeeded",
    ]


def test_driver_docker_without_an_engine_is_an_error_naming_docker_host(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NOWHERE)
    code, out, err, seconds = run_up(capsys, "--driver", "docker", "--store", sqlite_url)
    assert code == 1
    assert seconds < 10
    assert out == ""
    assert err.startswith(
        f"error: --driver docker: no Docker Engine answers at DOCKER_HOST={NOWHERE}"
    )


def test_an_invalid_manifest_starts_and_writes_nothing(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: swarmapply.io/v1\nkind: Job\nmetadata: {name: bad}\n"
        "spec: {tasks: [{name: t, image: x, cores: -1}]}\n"
    )
    code, _, err, _ = run_up(capsys, "--driver", "sim", "-f", str(bad), "--store", sqlite_url)
    assert code == 1
    assert "spec.tasks[0].cores" in err and "nothing was changed" in err
    store = open_store(sqlite_url)
    try:
        assert store.list("Lease").items == []
        assert store.list("Job").items == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--until-done"], "--until-done: give the jobs to wait for with -f PATH"),
        (["--driver", "podman"], "--driver: expected docker or sim, got 'podman'"),
        (["--driver", "docker", "--sim-nodes", "2"], "--sim-nodes: only with the sim driver"),
        (["--sim-nodes", "0"], "--sim-nodes: expected at least 1, got 0"),
        (["--sim-memory", "lots"], "--sim-memory: "),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    args: list[str], message: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err, _ = run_up(capsys, *args, "--store", sqlite_url)
    assert code == 2
    assert err.startswith(f"error: {message}")
    assert len(err.splitlines()) == 1


def test_help_lists_the_options_and_up_comes_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    text = capsys.readouterr().out
    for option in ("--until-done", "--driver", "--sim-nodes", "--sim-cores", "--sim-memory"):
        assert option in text
    with pytest.raises(SystemExit):
        main(["--help"])
    commands = capsys.readouterr().out.split("COMMAND", 1)[1]
    assert commands.index(" up ") < commands.index(" apply ")


# ------------------------------------------------------------------- serving, two processes


class UpProcess:
    """``python -m swarmapply up ARGS`` with its output in a log file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmapply", "up", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def serving(sqlite_url: str, tmp_path: Path) -> Iterator[UpProcess]:
    """A serving ``up --driver sim``, up when yielded (controllers leading, node Ready)."""
    process = UpProcess(tmp_path / "up.log", "--driver", "sim", "--store", sqlite_url)
    store = open_store(sqlite_url)
    try:

        def ready() -> bool:
            assert process.alive(), process.output()
            leases = holders(store)
            sim = controllers_for("sim", known_controllers())
            wanted = [f"controller-{name}" for name in sim] + ["node-sim-0"]
            return all(leases.get(name) for name in wanted)

        wait_for(ready, 15, "up to start its controllers and agent")
        yield process
    finally:
        store.close()
        if process.alive():
            process.process.kill()
        process.process.wait(10)


def test_serves_until_sigterm_then_releases_its_leases(
    serving: UpProcess, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Other commands use the same cluster meanwhile.
    assert main(["apply", "-f", HELLO, "--store", sqlite_url]) == 0
    wait_code = main(
        ["wait", "job/hello-world", "--for=phase=Succeeded", "--timeout", "15", "--store",
         sqlite_url]
    )  # fmt: skip
    assert wait_code == 0, capsys.readouterr().err
    started = time.monotonic()
    serving.process.send_signal(signal.SIGTERM)
    assert serving.process.wait(10) == 0, serving.output()
    assert time.monotonic() - started < 5
    assert "SIGTERM received: stopping" in serving.output()
    store = open_store(sqlite_url)
    try:
        leases = holders(store)
        assert {"controller-job", "controller-scheduler", "node-sim-0"} <= set(leases)
        assert set(leases.values()) == {""}, leases
    finally:
        store.close()


def test_a_second_up_on_the_same_store_only_applies_and_follows(
    serving: UpProcess, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(sqlite_url)
    try:
        before = holders(store)
        code, out, err, seconds = run_up(
            capsys, "--driver", "sim", "-f", HELLO, "--until-done", "--store", sqlite_url
        )
        assert code == 0, err
        assert seconds < 15
        notice = "notice: the local agent stands by: its nodes are run by another agent (sim-0 by "
        assert notice in err
        assert out.splitlines()[-1].endswith("-> Succeeded")
        assert holders(store) == before  # the serving process still leads and runs the node
        assert serving.alive()
    finally:
        store.close()


# ------------------------------------------------------------------ the Docker Engine


@pytest.fixture
def engine_job(docker_client: Any, test_image: str) -> Iterator[dict[str, str]]:
    """A unique node name and job name on the real engine; cleaned up afterwards.

    The deployer creates the job's network. Every container of the node, and the network, are
    removed after the test.
    """
    import docker.errors

    suffix = secrets.token_hex(3)
    names = {"node": f"swarmapply-test-up-{suffix}", "job": f"hello-{suffix}"}
    try:
        yield names
    finally:
        label = f"swarmapply.io/node={names['node']}"
        for container in docker_client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):  # the job never got that far
            docker_client.api.remove_network(names["job"])


def docker_manifest(tmp_path: Path, name: str, command: list[str] | None = None) -> str:
    """hello.yaml under another job name, with the test image (and optionally a command)."""
    doc = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["tasks"][0]["image"] = TEST_IMAGE
    if command is not None:
        doc["spec"]["tasks"][0]["command"] = command
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.docker
def test_hello_runs_to_succeeded_on_the_docker_engine(
    engine_job: dict[str, str],
    docker_client: Any,
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = docker_manifest(tmp_path, engine_job["job"])
    code, out, err, seconds = run_up(
        capsys, "--driver", "docker", "--name", engine_job["node"], "-f", manifest,
        "--until-done", "--store", sqlite_url,
    )  # fmt: skip
    assert code == 0, err
    assert seconds < 30
    assert out.splitlines()[-1].endswith("-> Succeeded")
    store = open_store(sqlite_url)
    try:
        (task,) = store.list("Task", field_selector=f"spec.job={engine_job['job']}").items
        assert task["status"]["phase"] == "Succeeded"
        assert task["status"]["node"] == engine_job["node"]
        container = docker_client.containers.get(task["status"]["containerID"])
        assert container.attrs["HostConfig"]["CpusetCpus"] == task["status"]["cpuset"]
        assert container.attrs["State"]["ExitCode"] == 0
        assert b"hello from swarmapply" in container.logs()
        assert set(holders(store).values()) == {""}
    finally:
        store.close()


@pytest.mark.docker
def test_a_failing_job_makes_up_exit_1(
    engine_job: dict[str, str], sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = docker_manifest(tmp_path, engine_job["job"], ["sh", "-c", "exit 3"])
    code, out, _, seconds = run_up(
        capsys, "--driver", "docker", "--name", engine_job["node"], "-f", manifest,
        "--until-done", "--store", sqlite_url,
    )  # fmt: skip
    assert code == 1
    assert seconds < 30
    assert out.splitlines()[-1].endswith("-> Failed")
    store = open_store(sqlite_url)
    try:
        (task,) = store.list("Task", field_selector=f"spec.job={engine_job['job']}").items
        assert task["status"]["phase"] == "Failed"
        assert task["status"]["exitCode"] == 3
    finally:
        store.close()


# ------------------------------------------------------------------------- the examples


def test_the_examples_admit_and_talk_json_is_talk_yaml() -> None:
    admitted = admit_paths([str(EXAMPLES)], recursive=False, stdin=io.StringIO())
    jobs = {item.obj["metadata"]["name"]: item.obj for item in admitted}
    assert sorted(jobs) == ["hello-world", "talk", "talk-restfulswarm"]
    assert [t["name"] for t in jobs["hello-world"]["spec"]["tasks"]] == ["hello"]

    def tasks(job: dict[str, Any]) -> list[dict[str, Any]]:
        return sorted(job["spec"]["tasks"], key=lambda t: t["name"])

    assert tasks(jobs["talk-restfulswarm"]) == tasks(jobs["talk"])
    assert [t["name"] for t in tasks(jobs["talk"])] == ["client", "server"]
    client = next(t for t in jobs["talk"]["spec"]["tasks"] if t["name"] == "client")
    assert "server 8080" in " ".join(client["command"])  # reaches the server by task name
    assert json.loads((EXAMPLES / "talk.json").read_text())["job_name"] == "talk-restfulswarm"


# ------------------------------------------------------------------------ the pure parts


def options(*words: str) -> argparse.Namespace:
    args: argparse.Namespace = build_parser().parse_args(["up", *words])
    return args


def test_check_options_defaults_and_sim_options_with_auto() -> None:
    checked = check_options(options("-f", "a.yaml", "-f", "b", "-R", "--sim-nodes", "2"))
    assert checked.paths == ("a.yaml", "b")
    assert checked.recursive and checked.driver == "auto" and checked.sim_nodes == "2"
    with pytest.raises(UsageError, match=r"^-R: "):
        check_options(options("-R"))
    with pytest.raises(UsageError, match=r"^--name: "):
        check_options(options("--name", " "))


def test_choose_driver() -> None:
    assert choose_driver("sim", None, "h") == ("sim", None)
    assert choose_driver("auto", None, "h") == ("docker", None)
    assert choose_driver("docker", None, "h") == ("docker", None)
    driver, notice = choose_driver("auto", "refused", "tcp://h:2375")
    assert driver == "sim" and notice is not None
    assert notice.startswith("notice: no Docker Engine answers at tcp://h:2375 (refused)")
    with pytest.raises(DriverUnavailable, match="DOCKER_HOST=tcp://h:2375: refused"):
        choose_driver("docker", "refused", "tcp://h:2375")


def test_controllers_for() -> None:
    known = ["job", "scheduler", "deployer", "extra"]
    assert controllers_for("docker", known) == known
    assert controllers_for("sim", known) == ["job", "scheduler", "extra"]


def test_held_by_other() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def lease(holder: str, renewed: datetime) -> dict[str, Any]:
        stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": 40,
                         "renewTime": stamp}}  # fmt: skip

    assert held_by_other(lease("them", now - timedelta(seconds=5)), "me", now) == "them"
    assert held_by_other(lease("them", now - timedelta(seconds=41)), "me", now) is None
    assert held_by_other(lease("me", now), "me", now) is None
    assert held_by_other(lease("", now), "me", now) is None


def status(phase: str | None, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if phase:
        body["phase"] = phase
    if message:
        body["message"] = message
    return {"metadata": {"name": "j"}, "status": body}


def test_progress_prints_each_change_once_and_sums_up() -> None:
    progress = Progress(["j", "k"])
    assert progress.observe("j", None) == []  # not created yet
    assert progress.observe("j", status(None, "0/1 nodes can run task j-t")) == [
        "job j: Pending",
        "job j: Pending: 0/1 nodes can run task j-t",
    ]
    assert progress.observe("j", status("Pending", "0/1 nodes can run task j-t")) == []
    assert progress.observe("j", status("Running")) == ["job j: Pending -> Running"]
    assert progress.observe("j", status("Failed", "task j-t failed: exit code 3")) == [
        "job j: Running -> Failed",
        "job j: Failed: task j-t failed: exit code 3",
    ]
    assert progress.observe("j", status("Pending")) == []  # finished: no more lines
    assert not progress.done
    assert progress.observe("k", status("Succeeded")) == [
        "job k: Succeeded (it had finished before; delete it to run it again)"
    ]
    assert progress.done and not progress.succeeded
    assert progress.summary() == ["job j: Pending -> Running -> Failed", "job k: Succeeded"]


def test_progress_of_a_deleted_job() -> None:
    progress = Progress(["j"])
    progress.observe("j", status("Running"))
    assert progress.observe("j", None) == ["job j: deleted before it finished (last phase Running)"]
    assert progress.done and not progress.succeeded
    assert progress.summary() == ["job j: Running -> deleted"]


def test_progress_of_nothing_yet() -> None:
    progress = Progress(["j"])
    assert progress.summary() == ["job j: not found (not finished)"]
    assert not progress.done and not progress.succeeded
