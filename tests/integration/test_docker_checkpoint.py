"""Checkpoints and migration steps on a real Docker Engine.

The engine runs with ``--experimental`` and CRIU installed, but CRIU cannot dump on every
kernel; where it cannot, the tests check that the failure is clean: the reason and CRIU's own
text reach the caller, the container keeps running (same id), and the agent acknowledges the
failure in the Checkpoint or the migration step instead of failing the task. Where CRIU works,
the same tests check the checkpoint's files instead. Every container a test makes is removed by
the test's fixtures (they run under a node name of their own).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.agent.agent import NodeAgent
from swarmapply.agent.docker_driver import DockerDriver
from swarmapply.agent.driver import TaskRefused
from swarmapply.agent.group import AgentGroup
from swarmapply.agent.model import NODE_NAME, ContainerSpec
from swarmapply.api.store import Store

from .helpers import wait_for
from .scheduler_objects import API_VERSION, MI, checked
from .test_agent import running

pytestmark = pytest.mark.docker
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

Object = dict[str, Any]


@pytest.fixture
def node(docker_client: Any) -> Iterator[str]:
    """A node name of the test's own; its containers are removed after the test."""
    name = f"cp-test-{uuid.uuid4().hex[:8]}"
    yield name
    for entry in docker_client.api.containers(all=True, filters={"label": f"{NODE_NAME}={name}"}):
        docker_client.api.remove_container(entry["Id"], force=True, v=True)


@pytest.fixture
def driver(docker_client: Any, node: str) -> DockerDriver:
    return DockerDriver(docker_client, name=node, pull=False)


def spec(node: str, image: str, command: tuple[str, ...] = ("sleep", "120")) -> ContainerSpec:
    uid = str(uuid.uuid4())
    return ContainerSpec(
        task=f"cp-{uid[:6]}", task_uid=uid, job="cp", node=node, alias="t", image=image,
        command=command, cpuset="0", memory=32 * MI,
    )  # fmt: skip


def inspect_state(docker_client: Any, container_id: str) -> str:
    return str(docker_client.api.inspect_container(container_id)["State"]["Status"])


# ------------------------------------------------------------------------------ the driver


def test_a_checkpoint_either_writes_files_or_fails_with_criu_reason_and_keeps_running(
    driver: DockerDriver, docker_client: Any, test_image: str, node: str, tmp_path: Path
) -> None:
    started = driver.start(spec(node, test_image))
    directory = tmp_path / "cp" / "one"
    try:
        size = driver.checkpoint(started.container_id, str(directory), leave_running=True)
    except TaskRefused as refused:
        message = str(refused)
        print(f"checkpoint refused: {refused.reason}: {message}")
        assert refused.reason == "CheckpointFailed"
        assert message.startswith(f"checkpointing container {started.container_id[:12]} into")
        assert "criu failed" in message.lower()
        assert "the CRIU log " in message, "names the log (and quotes it: it is on this machine)"
        assert " says: " in message
    else:
        assert size > 0 and any(directory.iterdir())
    assert inspect_state(docker_client, started.container_id) == "running"
    assert [c.container_id for c in driver.containers()] == [started.container_id]


def test_a_restore_without_a_checkpoint_fails_and_leaves_no_container(
    driver: DockerDriver, test_image: str, node: str, tmp_path: Path
) -> None:
    with pytest.raises(TaskRefused) as refused:
        driver.restore(spec(node, test_image), str(tmp_path / "nothing"))
    assert refused.value.reason == "RestoreFailed"
    assert "there is no checkpoint there" in str(refused.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskRefused) as refused:
        driver.restore(spec(node, test_image), str(tmp_path / "empty"))
    assert refused.value.reason == "RestoreFailed"
    assert driver.containers() == [], "the container made for the restore is removed"


def test_an_engine_without_the_experimental_api_is_unsupported(
    driver: DockerDriver, test_image: str, node: str, tmp_path: Path, monkeypatch: Any
) -> None:
    facts = driver._engine_info()
    monkeypatch.setattr(driver, "_engine_info", lambda: {**facts, "ExperimentalBuild": False})
    with pytest.raises(TaskRefused) as refused:
        driver.checkpoint("0123456789ab", str(tmp_path / "x"), leave_running=True)
    assert refused.value.reason == "CheckpointUnsupported"
    assert "start dockerd with --experimental" in str(refused.value)


# ------------------------------------------------------------------------------ the agent


def docker_task(store: Store, name: str, node: str, image: str) -> Object:
    created = store.create(
        checked(
            {
                "apiVersion": API_VERSION,
                "kind": "Task",
                "metadata": {"name": name},
                "spec": {
                    "job": "cp",
                    "image": image,
                    "cores": 1,
                    "memory": 16 * MI,
                    "command": ["sleep", "120"],
                },
            }
        )
    )
    status = {"phase": "Scheduled", "node": node, "cpuset": "0", "memory": 16 * MI}
    return store.update_status(checked({**created, "status": status}))


def set_step(store: Store, name: str, step: str, node: str, **status: Any) -> Object:
    task = store.get("Task", name)
    new = {**task["status"], **status}
    new["migration"] = {"name": "mig-d", "step": step, "node": node}
    return store.update_status(checked({**task, "status": new}))


def status_of(store: Store, name: str) -> Object:
    return dict(store.get("Task", name).get("status") or {})


def agent_group(store: Store, driver: DockerDriver, node: str, root: Path) -> AgentGroup:
    agent = NodeAgent(
        store, driver, driver_name="docker", name=node, resync=0.5, checkpoint_dir=str(root)
    )
    return AgentGroup(store, [agent], watch_timeout=0.2)


@SQLITE_ONLY
def test_agent_checkpoint_object_and_step_fail_cleanly_and_the_container_keeps_running(
    store: Store, driver: DockerDriver, docker_client: Any, test_image: str, node: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    with running(agent_group(store, driver, node, tmp_path)):
        docker_task(store, "live", node, test_image)
        wait_for(lambda: status_of(store, "live").get("phase") == "Running", 15, "Running")
        container = status_of(store, "live")["containerID"]
        checkpoint = store.create(
            checked(
                {
                    "apiVersion": API_VERSION,
                    "kind": "Checkpoint",
                    "metadata": {"name": "cp-live"},
                    "spec": {"task": "live"},
                }
            )
        )
        result = wait_for(
            lambda: (
                (s := store.get("Checkpoint", "cp-live").get("status") or {}).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            15,
            "the Checkpoint finished",
        )
        uid = checkpoint["metadata"]["uid"]
        events = wait_for(
            lambda: store.list("Event", field_selector=f"involvedObject.uid={uid}").items,
            5,
            "an Event on the Checkpoint",
        )
        if result["phase"] == "Failed":
            assert result["reason"] == "CheckpointFailed" and "criu" in result["message"].lower()
            assert [e["reason"] for e in events] == ["CheckpointFailed"]
            assert events[0]["type"] == "Warning"
        else:
            assert result["sizeBytes"] > 0 and [e["reason"] for e in events] == ["Checkpointed"]
        assert result["node"] == node
        assert inspect_state(docker_client, container) == "running"

        set_step(store, "live", "Checkpoint", node)
        wait_for(
            lambda: (m := status_of(store, "live")["migration"]).get("reason") or m.get("done"),
            15,
            "the Checkpoint step acknowledged",
        )
        step = status_of(store, "live")["migration"]
        if step.get("reason"):
            assert step["reason"] == "CheckpointFailed" and "criu" in step["message"].lower()
            assert inspect_state(docker_client, container) == "running"
            assert status_of(store, "live")["containerID"] == container
        assert status_of(store, "live")["phase"] == "Running"


@SQLITE_ONLY
def test_agent_stop_step_removes_the_container_and_a_start_without_the_image_is_acknowledged(
    store: Store, driver: DockerDriver, docker_client: Any, test_image: str, node: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    with running(agent_group(store, driver, node, tmp_path)):
        docker_task(store, "cold", node, test_image)
        wait_for(lambda: status_of(store, "cold").get("phase") == "Running", 15, "Running")
        container = status_of(store, "cold")["containerID"]
        set_step(store, "cold", "Stop", node)
        wait_for(lambda: status_of(store, "cold")["migration"].get("done"), 15, "Stop done")
        assert status_of(store, "cold")["migration"]["started"] is True
        assert driver.containers() == []
        assert all(c["Id"] != container for c in docker_client.api.containers(all=True))
        assert status_of(store, "cold")["phase"] == "Running"

        # The migrator moves the task (here: to the same node) and swaps in an image the
        # engine lacks; the agent does not pull (pull=False) and acknowledges the refusal.
        task = store.get("Task", "cold")
        task["spec"]["image"] = f"swarmapply-test/absent-{uuid.uuid4().hex[:8]}:1"
        store.update(task)
        status = {k: v for k, v in status_of(store, "cold").items()
                  if k not in ("containerID", "startTime")}  # fmt: skip
        task = store.get("Task", "cold")
        status["migration"] = {"name": "mig-d", "step": "Start", "node": node}
        store.update_status(checked({**task, "status": status}))
        wait_for(lambda: status_of(store, "cold")["migration"].get("reason"), 15, "the refusal")
        step = status_of(store, "cold")["migration"]
        assert step["reason"] == "ImageMissing" and "is not present" in step["message"]
        assert status_of(store, "cold")["phase"] == "Running"
        assert driver.containers() == []
