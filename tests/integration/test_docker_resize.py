"""Live resize on the real Docker Engine: ``swarmapply update task`` changes a running
container's cpuset and memory limit in place (same container id, same start time).

Runs ``swarmapply up --driver docker`` in a test cluster of its own (see
:mod:`tests.integration.docker_cluster`); the engine's ``inspect`` is the proof.
"""

from __future__ import annotations

from typing import Any

import pytest

from swarmapply.agent.model import TASK_UID
from swarmapply.controllers.conditions import find_condition

from .docker_cluster import Cluster
from .helpers import wait_for

pytestmark = pytest.mark.docker

MI = 1 << 20


def inspect(cluster: Cluster, task: dict[str, Any]) -> dict[str, Any]:
    [entry] = cluster.containers(f"{TASK_UID}={task['metadata']['uid']}")
    attrs: dict[str, Any] = cluster.docker.api.inspect_container(entry["Id"])
    return attrs


def test_update_task_resizes_the_running_container_in_place(cluster: Cluster) -> None:
    cluster.up()
    job, path = cluster.job_manifest("resize", [{"name": "a", "command": ["sleep", "60"]}])
    cluster.cli("apply", "-f", path)
    name = wait_for(lambda: cluster.tasks(job).get("a"), 20, "task a created")["metadata"]["name"]
    cluster.wait_phase("Task", name, "Running")
    task = cluster.task(name)
    before = inspect(cluster, task)
    assert before["HostConfig"]["Memory"] == 16 * MI
    assert len(before["HostConfig"]["CpusetCpus"].split(",")) == 1

    cluster.cli("update", "task", name, "--cores", "2", "--memory", "32m")

    def resized() -> dict[str, Any] | None:
        attrs = inspect(cluster, task)
        host = attrs["HostConfig"]
        return attrs if host["CpusetCpus"] == "0-1" and host["Memory"] == 32 * MI else None

    after = wait_for(resized, 20, "the container's cpuset 0-1 and memory 32Mi")
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["State"]["Running"]
    status = cluster.task(name)["status"]
    assert status["cpuset"] == "0-1" and status["memory"] == 32 * MI
    assert status["containerID"] == before["Id"]
    condition = find_condition(status, "Resized")
    assert condition is not None and condition["status"] == "True"
