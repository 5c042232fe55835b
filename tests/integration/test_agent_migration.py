"""Migration steps and Checkpoints carried out by sim node agents through a real store.

The tests play the migrator by writing the Task's ``status.migration`` (and, between the source
and the target steps, the new binding) themselves, and check what the agents do: the container
stops on the source without the task being reported lost, starts on the target only, and every
refusal is acknowledged in the step with the task's phase untouched. A sim driver that can
checkpoint (files on disk, the container ended) stands in for CRIU to run the live path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.agent.agent import NodeAgent
from swarmapply.agent.driver import TaskRefused, directory_bytes
from swarmapply.agent.group import AgentGroup
from swarmapply.agent.model import ContainerSpec, NodeInfo, Observed
from swarmapply.agent.sim import SimCluster, SimDriver
from swarmapply.api.store import Store

from .helpers import wait_for
from .scheduler_objects import API_VERSION, GI, checked
from .test_agent import bound_task, running

Object = dict[str, Any]

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


class CheckpointingSim:
    """A sim node that can checkpoint: it writes a file as the checkpoint and ends the
    container when not left running; it restores by starting the task from that file."""

    def __init__(self, inner: SimDriver) -> None:
        self.inner = inner
        self.checkpoints = 0

    def info(self) -> NodeInfo:
        return self.inner.info()

    def containers(self) -> list[Observed]:
        return self.inner.containers()

    def start(self, spec: ContainerSpec) -> Observed:
        return self.inner.start(spec)

    def update(self, container_id: str, cpuset: str, memory: int) -> None:
        self.inner.update(container_id, cpuset, memory)

    def remove(self, container_id: str) -> None:
        self.inner.remove(container_id)

    def checkpoint(self, container_id: str, directory: str, *, leave_running: bool) -> int:
        found = [c for c in self.inner.containers() if c.container_id == container_id]
        if not found or found[0].state != "running":
            raise TaskRefused("CheckpointFailed", f"container {container_id} is not running")
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "pages-1.img").write_bytes(b"\0" * 4096)
        self.checkpoints += 1
        if not leave_running:
            self.inner.cluster.fail(found[0].task_uid, exit_code=0)
        return directory_bytes(directory)

    def restore(self, spec: ContainerSpec, directory: str) -> Observed:
        if not (Path(directory) / "pages-1.img").is_file():
            raise TaskRefused("RestoreFailed", f"task {spec.task}: no checkpoint in {directory}")
        return self.inner.start(spec)

    def events(self, stop: threading.Event) -> Iterator[str]:
        return self.inner.events(stop)


def group_of(store: Store, agents: list[NodeAgent]) -> AgentGroup:
    return AgentGroup(store, agents, watch_timeout=0.2)


def sim_agents(
    store: Store, cluster: SimCluster, root: Path, *, live: bool = False
) -> list[NodeAgent]:
    agents = []
    for name in ("a", "b"):
        driver: Any = cluster.add_node(name, 4, 8 * GI)
        if live:
            driver = CheckpointingSim(driver)
        root_dir = str(root / name)
        agent = NodeAgent(store, driver, driver_name="sim", name=name, resync=0.3,
                          checkpoint_dir=root_dir)  # fmt: skip
        agents.append(agent)
    return agents


def status_of(store: Store, name: str) -> Object:
    return dict(store.get("Task", name).get("status") or {})


def step_of(store: Store, name: str) -> Object:
    return dict(status_of(store, name).get("migration") or {})


def set_step(store: Store, name: str, step: str, node: str, **fields: Any) -> Object:
    """Write ``status.migration`` as the migrator does (compare-and-swap; retried)."""

    def attempt() -> Object | None:
        task = store.get("Task", name)
        status = dict(task["status"])
        status["migration"] = {"name": "mig-1", "step": step, "node": node, **fields}
        try:
            return store.update_status(checked({**task, "status": status}))
        except Exception:
            return None

    return dict(wait_for(attempt, 5, what=f"the {step} step written"))


def move(store: Store, name: str, node: str, cpuset: str, step: str, **fields: Any) -> Object:
    """Move the binding to ``node``/``cpuset`` with a target step, as the migrator does."""
    task = store.get("Task", name)
    status = {k: v for k, v in task["status"].items() if k not in ("containerID", "startTime")}
    status.update(node=node, cpuset=cpuset)
    status["migration"] = {"name": "mig-1", "step": step, "node": node, **fields}
    return store.update_status(checked({**task, "status": status}))


def uids(cluster: SimCluster, node: str) -> list[tuple[str, str]]:
    return [(c.task_uid, c.state) for c in cluster.node(node).containers()]


def running_on(store: Store, cluster: SimCluster, name: str, node: str) -> Object:
    bound_task(store, name, node, "1", ["sleep", "600"])
    wait_for(lambda: status_of(store, name).get("phase") == "Running", what=f"{name} Running")
    return dict(store.get("Task", name))


# -------------------------------------------------------------------------------- cold


def test_cold_migration_stops_on_the_source_and_starts_on_the_target_only(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path))):
        task = running_on(store, cluster, "web", "a")
        uid = task["metadata"]["uid"]
        old_container = task["status"]["containerID"]
        set_step(store, "web", "Stop", "a")
        wait_for(lambda: step_of(store, "web").get("done"), what="the Stop step done")
        step = step_of(store, "web")
        assert step["started"] is True and "reason" not in step
        assert uids(cluster, "a") == [], "the source container is removed"
        status = status_of(store, "web")
        assert status["phase"] == "Running", "the phase is the migrator's to change"
        assert status["containerID"] == old_container and "reason" not in status
        assert uids(cluster, "b") == [], "nothing starts anywhere while stopped"

        move(store, "web", "b", "2", "Start")
        wait_for(lambda: step_of(store, "web").get("done"), what="the Start step done")
        status = status_of(store, "web")
        assert status["phase"] == "Running" and status["node"] == "b"
        assert status["containerID"] != old_container and status["cpuset"] == "2"
        assert uids(cluster, "b") == [(uid, "running")]
        assert [c.cpuset for c in cluster.node("b").containers()] == ["2"]
        assert uids(cluster, "a") == []


@SQLITE_ONLY
def test_a_start_the_target_refuses_is_acknowledged_and_the_task_is_not_failed(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path))):
        running_on(store, cluster, "web", "a")
        set_step(store, "web", "Stop", "a")
        wait_for(lambda: step_of(store, "web").get("done"), what="the Stop step done")
        move(store, "web", "b", "7", "Start")  # node b has cores 0-3: the sim driver refuses
        wait_for(lambda: step_of(store, "web").get("reason"), what="the refusal acknowledged")
        step = step_of(store, "web")
        assert step["reason"] == "InvalidSpec"
        assert "names cores sim node b does not have" in step["message"]
        assert status_of(store, "web")["phase"] == "Running"
        assert uids(cluster, "b") == [] and uids(cluster, "a") == []


# -------------------------------------------------------------------------------- live


@SQLITE_ONLY
def test_a_checkpoint_the_driver_cannot_take_leaves_the_container_running(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path))):
        task = running_on(store, cluster, "web", "a")
        before = cluster.node("a").containers()
        set_step(store, "web", "Checkpoint", "a")
        wait_for(lambda: step_of(store, "web").get("reason"), what="the refusal acknowledged")
        step = step_of(store, "web")
        assert step["reason"] == "CheckpointUnsupported" and step["started"] is True
        assert "the sim driver cannot checkpoint" in step["message"]
        assert "done" not in step and "checkpoint" not in step
        assert cluster.node("a").containers() == before, "the same container, still running"
        status = status_of(store, "web")
        assert status["phase"] == "Running"
        assert status["containerID"] == task["status"]["containerID"]


@SQLITE_ONLY
def test_live_migration_checkpoints_on_the_source_and_restores_on_the_target(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    agents = sim_agents(store, cluster, tmp_path, live=True)
    with running(group_of(store, agents)):
        task = running_on(store, cluster, "web", "a")
        uid = task["metadata"]["uid"]
        set_step(store, "web", "Checkpoint", "a")
        wait_for(lambda: step_of(store, "web").get("done"), what="the Checkpoint step done")
        step = step_of(store, "web")
        assert step["checkpoint"] == str(tmp_path / "a" / "mig-1" / "web")
        assert step["checkpointBytes"] == 4096
        assert uids(cluster, "a") == []
        assert status_of(store, "web")["phase"] == "Running"

        move(store, "web", "b", "3", "Restore", checkpoint=step["checkpoint"])
        wait_for(lambda: step_of(store, "web").get("done"), what="the Restore step done")
        step = step_of(store, "web")
        assert step["started"] is True and step["transferred"] is True
        local = tmp_path / "b" / "mig-1" / "web"
        assert (local / "pages-1.img").stat().st_size == 4096, "copied below b's root"
        status = status_of(store, "web")
        assert status["phase"] == "Running" and status["containerID"]
        assert uids(cluster, "b") == [(uid, "running")] and uids(cluster, "a") == []


@SQLITE_ONLY
def test_a_restore_of_a_checkpoint_not_readable_here_is_acknowledged_unreachable(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path, live=True))):
        running_on(store, cluster, "web", "a")
        set_step(store, "web", "Stop", "a")
        wait_for(lambda: step_of(store, "web").get("done"), what="the Stop step done")
        move(store, "web", "b", "3", "Restore", checkpoint=str(tmp_path / "elsewhere"))
        wait_for(lambda: step_of(store, "web").get("reason"), what="the failure acknowledged")
        step = step_of(store, "web")
        assert step["reason"] == "CheckpointUnreachable" and "transferred" not in step
        assert status_of(store, "web")["phase"] == "Running"
        assert uids(cluster, "b") == []


# -------------------------------------------------------------------------------- Checkpoints


def checkpoint_object(store: Store, name: str, task: str, **spec: Any) -> Object:
    return store.create(
        checked(
            {
                "apiVersion": API_VERSION,
                "kind": "Checkpoint",
                "metadata": {"name": name},
                "spec": {"task": task, **spec},
            }
        )
    )


def checkpoint_status(store: Store, name: str) -> Object:
    return dict(store.get("Checkpoint", name).get("status") or {})


def event_reasons(store: Store, obj: Object) -> list[str]:
    uid = obj["metadata"]["uid"]
    items = store.list("Event", field_selector=f"involvedObject.uid={uid}").items
    return [e["reason"] for e in items]


def test_checkpoint_objects_fail_on_sim_nodes_and_for_tasks_that_do_not_run(
    store: Store, tmp_path: Path
) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path))):
        task = running_on(store, cluster, "web", "a")
        bound_task(store, "idle", "b", "0", ["sleep", "0.01"])
        wait_for(lambda: status_of(store, "idle").get("phase") == "Succeeded", what="idle done")
        unsupported = checkpoint_object(store, "cp-web", "web")
        not_running = checkpoint_object(store, "cp-idle", "idle")
        wait_for(lambda: checkpoint_status(store, "cp-web").get("phase") == "Failed", what="cp-web")
        status = checkpoint_status(store, "cp-web")
        assert status["reason"] == "CheckpointUnsupported" and status["node"] == "a"
        assert "CheckpointFailed" in wait_for(lambda: event_reasons(store, unsupported))
        assert status_of(store, "web")["containerID"] == task["status"]["containerID"]
        assert status_of(store, "web")["phase"] == "Running"
        wait_for(
            lambda: checkpoint_status(store, "cp-idle").get("phase") == "Failed", what="cp-idle"
        )
        assert checkpoint_status(store, "cp-idle")["reason"] == "TaskNotRunning"
        assert "CheckpointFailed" in wait_for(lambda: event_reasons(store, not_running))


@SQLITE_ONLY
def test_a_checkpoint_that_stops_the_task_ends_it_succeeded(store: Store, tmp_path: Path) -> None:
    cluster = SimCluster(poll=0.05)
    with running(group_of(store, sim_agents(store, cluster, tmp_path, live=True))):
        running_on(store, cluster, "keep", "a")
        running_on(store, cluster, "stop", "b")
        kept = checkpoint_object(store, "cp-keep", "keep")
        checkpoint_object(store, "cp-stop", "stop", leaveRunning=False)
        for name in ("cp-keep", "cp-stop"):
            wait_for(
                lambda n=name: checkpoint_status(store, n).get("phase") == "Succeeded", what=name
            )
        status = checkpoint_status(store, "cp-keep")
        assert status["path"] == str(tmp_path / "a" / "cp-keep")
        assert status["sizeBytes"] == 4096 and status["createdTime"] and status["node"] == "a"
        assert "Checkpointed" in wait_for(lambda: event_reasons(store, kept))
        assert status_of(store, "keep")["phase"] == "Running"
        wait_for(lambda: status_of(store, "stop").get("phase") == "Succeeded", what="stop ended")
        ended = status_of(store, "stop")
        assert ended["reason"] == "Checkpointed" and "cp-stop" in ended["message"]
