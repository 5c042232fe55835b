"""End to end on the real Docker Engine: the processes a user runs, and what the engine holds.

Each test runs the cluster as real processes against a store of its own: ``swarmapply up
--driver docker`` serving (the README's way), or ``swarmapply controllers`` beside ``swarmapply
agent --driver docker`` when the agent itself is killed. Manifests go in with ``swarmapply
apply`` and jobs go away with ``swarmapply delete``, and the results are checked twice: in the
store (Task and Job status) and in the engine (``docker inspect`` of the containers and the
job's network).

Every test uses a cluster of its own (:mod:`tests.integration.docker_cluster`): a node name and
job names of its own, all of it removed afterwards, whatever happened.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import yaml

from swarmapply.agent.agent import lease_name
from swarmapply.agent.model import JOB_NAME, TASK_UID
from tests.conftest import TEST_IMAGE
from tests.integration.docker_cluster import START_TIMEOUT, Cluster, events
from tests.integration.helpers import eventually, wait_for
from tests.integration.test_cli_up import EXAMPLES, holders

pytestmark = pytest.mark.docker

Object = dict[str, Any]

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
