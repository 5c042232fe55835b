"""End to end on the real Docker Engine: the processes a user runs, and what the engine holds.

Each test runs the cluster as real processes against a store of its own: ``swarmapply up
--driver docker`` serving (the README's way), or ``swarmapply controllers`` beside ``swarmapply
agent --driver docker`` when the agent itself is killed. Manifests go in with ``swarmapply
apply`` and jobs go away with ``swarmapply delete``, and the results are checked twice: in the
store (Task and Job status) and in the engine (``docker inspect`` of the containers and the
job's network).

Every test uses a node name and job names of its own; every container of its node and every
network of its jobs is removed afterwards, whatever happened, and every process it started is
killed by its pid. The output of those processes is written to stderr at teardown (pytest
shows it when a test fails).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.agent.agent import lease_name
from swarmapply.agent.model import JOB_NAME, NODE_NAME, TASK_NAME, TASK_UID
from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.cli.main import main
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import ControllersProcess, Fleet, eventually, wait_for
from tests.integration.test_cli_up import EXAMPLES, UpProcess, holders

pytestmark = pytest.mark.docker

Object = dict[str, Any]

#: Seconds a job may take to get from apply to every task Running (network, image, start).
START_TIMEOUT = 20.0


class AgentProcess(ControllersProcess):
    """One ``swarmapply agent`` subprocess (same handling as a controllers process)."""

    def __init__(self, log: Path, args: Sequence[str]) -> None:
        """Starts ``python -m swarmapply agent ARGS``, its output going to ``log``."""
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmapply", "agent", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )


class Cluster:
    """One test's cluster: its store, node name, processes, and what it made on the engine."""

    def __init__(self, docker_client: Any, directory: Path) -> None:
        suffix = secrets.token_hex(3)
        self.docker = docker_client
        self.directory = directory
        self.suffix = suffix
        self.node = f"e2e-{suffix}"
        self.url = f"sqlite:///{directory}/state.db"
        self.store: Store = open_store(self.url)
        self.jobs: list[str] = []
        self.processes: list[UpProcess | ControllersProcess] = []

    # -- names and manifests -------------------------------------------------------------

    def job_name(self, base: str) -> str:
        """A job name unique to this test; its containers and network are cleaned up."""
        name = f"{base}-{self.suffix}"
        self.jobs.append(name)
        return name

    def manifest(self, doc: Object) -> str:
        """Writes ``doc`` to a file of the test's directory; returns its path."""
        path = self.directory / f"{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def job_manifest(self, base: str, tasks: list[Object]) -> tuple[str, str]:
        """A manifest of a job with ``tasks`` (test image, one core, 16m each): (name, path)."""
        name = self.job_name(base)
        entries = [{"image": TEST_IMAGE, "cores": 1, "memory": "16m", **t} for t in tasks]
        doc = {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"tasks": entries},
        }
        return name, self.manifest(doc)

    # -- processes -----------------------------------------------------------------------

    def up(self) -> UpProcess:
        """``swarmapply up --driver docker`` serving; returned once its node runs and leads."""
        process = UpProcess(
            self.directory / f"up-{len(self.processes)}.log",
            "--driver", "docker", "--name", self.node, "--store", self.url,
        )  # fmt: skip
        self.processes.append(process)
        self.wait_running(process, ("controller-scheduler", "controller-deployer"))
        return process

    def agent(self) -> AgentProcess:
        """``swarmapply agent --driver docker``; returned once it holds its node's Lease."""
        index = len(self.processes)
        process = AgentProcess(
            self.directory / f"agent-{index}.log",
            ["--driver", "docker", "--name", self.node, "--store", self.url,
             "--heartbeat", "1", "--resync", "1"],
        )  # fmt: skip
        self.processes.append(process)
        return process

    def controllers_and_agent(self) -> AgentProcess:
        """Starts ``swarmapply controllers`` and ``swarmapply agent`` as separate processes;
        returns the agent once both run."""
        controllers = Fleet(self.directory, "--store", self.url).start()
        self.processes.append(controllers)
        agent = self.agent()
        self.wait_running(agent, ())
        self.wait_running(controllers, ("controller-scheduler", "controller-deployer"))
        return agent

    def sleepers(self, name: str) -> str:
        """Applies a job of two ``sleep 20`` tasks, a and b; returns the job's name."""
        sleep = ["sleep", "20"]
        job, path = self.job_manifest(
            name, [{"name": "a", "command": sleep}, {"name": "b", "command": sleep}]
        )
        self.cli("apply", "-f", path)
        return job

    def wait_running(self, process: UpProcess | ControllersProcess, leases: Sequence[str]) -> None:
        """Waits until the node's Lease and ``leases`` are held (the process must stay up)."""

        def up() -> bool:
            assert process.alive(), process.output()
            held = holders(self.store)
            return all(held.get(name) for name in (lease_name(self.node), *leases))

        wait_for(up, 20, f"node {self.node} and {', '.join(leases)} to be running")

    def cli(self, *args: str) -> None:
        """Runs a ``swarmapply`` command against this cluster's store; it must exit 0."""
        code = main([*args, "--store", self.url])
        assert code == 0, f"swarmapply {' '.join(args)} exited {code}"

    # -- reading -------------------------------------------------------------------------

    def tasks(self, job: str) -> dict[str, Object]:
        """The job's Tasks by their name within the job."""
        items = self.store.list("Task", field_selector=f"spec.job={job}").items
        return {t["metadata"]["labels"][TASK_NAME]: t for t in items}

    def task(self, name: str) -> Object:
        task: Object = self.store.get("Task", name)
        return task

    def phase(self, kind: str, name: str) -> str | None:
        try:
            return (self.store.get(kind, name).get("status") or {}).get("phase")
        except NotFound:
            return None

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = START_TIMEOUT) -> None:
        wait_for(
            lambda: self.phase(kind, name) == phase,
            timeout,
            f"{kind} {name} to be {phase} (it is {self.phase(kind, name)})",
            interval=0.05,
        )

    def containers(self, *labels: str) -> list[Object]:
        """List entries of this node's containers (any state) carrying every ``labels``."""
        filters = {"label": [f"{NODE_NAME}={self.node}", *labels]}
        entries: list[Object] = self.docker.api.containers(all=True, filters=filters)
        return entries

    # -- cleanup -------------------------------------------------------------------------

    def close(self) -> None:
        """Kills the processes, removes the containers and networks, closes the store."""
        import docker.errors

        try:
            for process in self.processes:
                if process.alive():
                    process.process.kill()
                process.process.wait(10)
                sys.stderr.write(f"--- {process.log.name}\n{process.output()}\n")
        finally:
            for entry in self.docker.api.containers(
                all=True, filters={"label": f"{NODE_NAME}={self.node}"}
            ):
                with contextlib.suppress(docker.errors.NotFound):
                    self.docker.api.remove_container(entry["Id"], force=True, v=True)
            for job in self.jobs:
                for network in self.docker.api.networks(filters={"label": f"{JOB_NAME}={job}"}):
                    with contextlib.suppress(docker.errors.NotFound):
                        self.docker.api.remove_network(network["Id"])
            self.store.close()


@pytest.fixture
def cluster(docker_client: Any, test_image: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own; everything it made is removed afterwards."""
    made = Cluster(docker_client, tmp_path)
    try:
        yield made
    finally:
        made.close()


def events(store: Store, obj: Object) -> list[Object]:
    uid = obj["metadata"]["uid"]
    return store.list("Event", field_selector=f"involvedObject.uid={uid}").items


# ---------------------------------------------------------------------------- the tests


def test_two_task_job_runs_pinned_talks_by_name_succeeds_and_delete_removes_it(
    cluster: Cluster, docker_client: Any
) -> None:
    up = cluster.up()
    doc = yaml.safe_load((EXAMPLES / "talk.yaml").read_text())
    job = cluster.job_name("talk")
    doc["metadata"]["name"] = job
    for task in doc["spec"]["tasks"]:
        task["image"] = TEST_IMAGE
    cluster.cli("apply", "-f", cluster.manifest(doc))

    # The job's network: attachable overlay (the engine is a Swarm manager), labelled.
    network = wait_for(
        lambda: docker_client.api.networks(names=[job]), START_TIMEOUT, f"network {job}"
    )
    assert len(network) == 1
    network = docker_client.api.inspect_network(network[0]["Id"])
    assert network["Driver"] == "overlay"
    assert network["Attachable"] is True
    assert network["Labels"][JOB_NAME] == job

    # Both containers exist with exactly the cores and memory the scheduler bound.
    def started() -> dict[str, Object]:
        tasks = cluster.tasks(job)
        ids = [(t.get("status") or {}).get("containerID") for t in tasks.values()]
        assert len(tasks) == 2 and all(ids), {n: t.get("status") for n, t in tasks.items()}
        return tasks

    tasks = eventually(started, START_TIMEOUT, "both tasks to have a container")
    cpusets = set()
    for name, task in tasks.items():
        status = task["status"]
        attrs = docker_client.api.inspect_container(status["containerID"])
        assert attrs["HostConfig"]["CpusetCpus"] == status["cpuset"], name
        assert attrs["HostConfig"]["Memory"] == status["memory"] == 16 * 1024 * 1024, name
        assert attrs["Config"]["Labels"][TASK_UID] == task["metadata"]["uid"]
        endpoint = attrs["NetworkSettings"]["Networks"][job]
        assert name in endpoint["Aliases"]
        cpusets.add(status["cpuset"])
    assert len(cpusets) == 2, "two tasks were given the same core"

    # The client reached the server by name: its exit code 0 reached its status.
    cluster.wait_phase("Job", job, "Succeeded", 30)
    tasks = cluster.tasks(job)
    client = tasks["client"]["status"]
    assert client["phase"] == "Succeeded"
    assert (client["exitCode"], client["reason"]) == (0, "Completed")
    assert b"the server answered" in docker_client.api.logs(client["containerID"])
    assert tasks["server"]["status"]["exitCode"] == 0
    assert len(cluster.containers(f"{JOB_NAME}={job}")) == 2  # kept for their logs

    # Deleting the job removes its containers.
    cluster.cli("delete", "job", job)
    wait_for(
        lambda: not cluster.containers(f"{JOB_NAME}={job}"), 15, f"the containers of {job} gone"
    )
    assert cluster.store.list("Task", field_selector=f"spec.job={job}").items == []

    # SIGTERM: a clean stop that hands over the node and every controller at once.
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(10) == 0, up.output()
    assert set(holders(cluster.store).values()) == {""}


def test_exit_code_reaches_the_task_status(cluster: Cluster, docker_client: Any) -> None:
    cluster.up()
    three = {"name": "three", "command": ["sh", "-c", "exit 3"]}
    job, path = cluster.job_manifest("exits", [three])
    cluster.cli("apply", "-f", path)
    cluster.wait_phase("Task", f"{job}-three", "Failed")
    status = cluster.task(f"{job}-three")["status"]
    assert status["exitCode"] == 3
    assert status["reason"] == "Error"
    assert "exited with code 3" in status["message"]
    assert docker_client.api.inspect_container(status["containerID"])["State"]["ExitCode"] == 3
    cluster.wait_phase("Job", job, "Failed")


def test_agent_killed_and_restarted_mid_job_adopts_its_containers(
    cluster: Cluster, docker_client: Any
) -> None:
    first = cluster.controllers_and_agent()
    job = cluster.sleepers("sleepers")
    for task in ("a", "b"):
        cluster.wait_phase("Task", f"{job}-{task}", "Running")
    before = {name: t["status"] for name, t in cluster.tasks(job).items()}
    old_holder = holders(cluster.store)[lease_name(cluster.node)]

    first.kill()  # SIGKILL: no cleanup, the Lease is not released
    assert {c["State"] for c in cluster.containers()} == {"running"}
    second = cluster.agent()
    wait_for(
        lambda: holders(cluster.store).get(lease_name(cluster.node)) not in ("", old_holder),
        20,
        "the restarted agent to take its node's Lease",
    )
    # Over several resync periods of the new agent: two containers, the same ones, Running.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert second.alive(), second.output()
        assert len(cluster.containers()) == 2, cluster.containers()
        time.sleep(0.2)
    after = {name: t["status"] for name, t in cluster.tasks(job).items()}
    assert {n: s["phase"] for n, s in after.items()} == {"a": "Running", "b": "Running"}
    assert {n: s["containerID"] for n, s in after.items()} == {
        n: s["containerID"] for n, s in before.items()
    }
    assert {c["Id"] for c in cluster.containers()} == {s["containerID"] for s in after.values()}
    assert cluster.phase("Job", job) == "Running"
    assert second.stop() == 0
    assert "agent stopped: 0 containers started" in second.output()


def test_container_killed_behind_the_agents_back_fails_with_137(
    cluster: Cluster, docker_client: Any
) -> None:
    cluster.up()
    job, path = cluster.job_manifest("killed", [{"name": "victim", "command": ["sleep", "30"]}])
    cluster.cli("apply", "-f", path)
    name = f"{job}-victim"
    cluster.wait_phase("Task", name, "Running")
    container = cluster.task(name)["status"]["containerID"]
    docker_client.api.kill(container)
    cluster.wait_phase("Task", name, "Failed", 15)
    status = cluster.task(name)["status"]
    assert status["exitCode"] == 137
    assert status["containerID"] == container
    assert f"container {container} exited with code 137" in status["message"]
    cluster.wait_phase("Job", job, "Failed")
    assert len(cluster.containers()) == 1  # not started again


def test_a_bind_of_etc_is_refused_and_no_container_is_made(
    cluster: Cluster, docker_client: Any
) -> None:
    cluster.up()
    volume = {"source": "/etc", "target": "/host-etc"}
    job, path = cluster.job_manifest(
        "refused", [{"name": "nosy", "command": ["cat", "/host-etc/hostname"], "volumes": [volume]}]
    )
    cluster.cli("apply", "-f", path)
    name = f"{job}-nosy"
    cluster.wait_phase("Task", name, "Failed")
    task = cluster.task(name)
    status = task["status"]
    assert status["reason"] == "RefusedSetting"
    assert status["message"].startswith(f"task {name}: spec.volumes[0].source: a bind of /etc ")
    assert "containerID" not in status and "exitCode" not in status
    assert "Refused" in [e["reason"] for e in events(cluster.store, task)]
    assert cluster.containers() == []
    assert (
        docker_client.api.containers(
            all=True, filters={"label": f"{TASK_UID}={task['metadata']['uid']}"}
        )
        == []
    )
    cluster.wait_phase("Job", job, "Failed")


def test_agent_killed_while_creating_then_a_container_dies_while_it_is_down(
    cluster: Cluster, docker_client: Any
) -> None:
    first = cluster.controllers_and_agent()
    job = cluster.sleepers("racing")
    wait_for(cluster.containers, START_TIMEOUT, "the first container", interval=0.001)
    first.kill()  # as soon as the first container exists (usually only created)

    second = cluster.agent()
    for task in ("a", "b"):
        cluster.wait_phase("Task", f"{job}-{task}", "Running")
    tasks = cluster.tasks(job)
    entries = cluster.containers()
    assert sorted(c["Labels"][TASK_UID] for c in entries) == sorted(
        t["metadata"]["uid"] for t in tasks.values()
    ), "one container per task, none duplicated"
    assert {c["Id"] for c in entries} == {t["status"]["containerID"] for t in tasks.values()}

    second.kill()
    victim = tasks["a"]["status"]["containerID"]
    docker_client.api.kill(victim)  # dies while no agent runs
    third = cluster.agent()
    cluster.wait_phase("Task", f"{job}-a", "Failed", 15)
    status = cluster.task(f"{job}-a")["status"]
    assert (status["exitCode"], status["containerID"]) == (137, victim)
    uid = tasks["a"]["metadata"]["uid"]
    assert [c["Id"] for c in cluster.containers(f"{TASK_UID}={uid}")] == [victim]
    assert third.alive(), third.output()


def test_a_bind_under_etc_is_refused_too(cluster: Cluster) -> None:
    cluster.up()
    volume = {"source": "/etc/cron.d", "target": "/host-cron", "readOnly": True}
    job, path = cluster.job_manifest(
        "cron", [{"name": "nosy", "command": ["true"], "volumes": [volume]}]
    )
    cluster.cli("apply", "-f", path)
    name = f"{job}-nosy"
    wait_for(lambda: cluster.phase("Task", name) in ("Failed", "Succeeded"), START_TIMEOUT, name)
    status = cluster.task(name)["status"]
    assert status.get("reason") == "RefusedSetting", status
    assert cluster.containers() == []
