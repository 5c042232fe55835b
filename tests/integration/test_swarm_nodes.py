"""Smoke tests of a real three-node Swarm on one machine, run by swarmapply end to end.

The ``swarm_nodes`` fixture (tests/integration/swarm_nodes.py) gives three Docker daemons in
one Swarm, each in its own network namespace: ``node-1`` (the manager), ``node-2`` and
``node-3``. Each test runs ``swarmapply controllers`` against the manager and one
``swarmapply agent`` per node, on a SQLite store of its own, and applies Jobs with the CLI.

* Two tasks pinned to two different nodes talk over the job's overlay network by task name
  (a TCP exchange with busybox ``nc``); the Job succeeds and each container ran on its own
  node's daemon.
* An agent killed and started again adopts its node's running container (same container id,
  no second container) and the Node is Ready again under the new agent.
* A daemon stopped and started again is back in its Swarm under the same node id.

Needs root, iproute2, util-linux and dockerd (skipped with a how-to otherwise; a failure under
``CI=true``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.agent.agent import lease_name
from swarmapply.agent.model import JOB_NAME, TASK_NAME
from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.cli.main import main
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import eventually, wait_for
from tests.integration.swarm_nodes import SwarmNodes

pytestmark = pytest.mark.docker

Object = dict[str, Any]

#: Seconds the three agents and the controllers may take to come up.
START_SECONDS = 20.0
#: Seconds a job may take from apply to its end (network, containers, the exchange).
RUN_SECONDS = 30.0


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.poll_interval = 0.01  # type: ignore[attr-defined]
    yield opened
    opened.close()


def start_all(nodes: SwarmNodes, store: Store, store_url: str) -> None:
    """Starts the controllers and one agent per node; returns once every Node is Ready."""
    nodes.start_controllers(store_url)
    for daemon in nodes.daemons:
        nodes.start_agent(daemon, store_url)
    names = [d.name for d in nodes.daemons]
    wait_for(lambda: all(ready(store, n) for n in names), START_SECONDS, f"Nodes {names} Ready")


def ready(store: Store, node: str) -> bool:
    try:
        conditions = (store.get("Node", node).get("status") or {}).get("conditions") or []
    except NotFound:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def apply_job(directory: Path, store_url: str, name: str, tasks: list[Object]) -> None:
    """Applies a Job of ``tasks`` (test image, one core, 16m each) with ``swarmapply apply``."""
    entries = [{"image": TEST_IMAGE, "cores": 1, "memory": "16m", **t} for t in tasks]
    doc = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"tasks": entries},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["apply", "-f", str(path), "--store", store_url]) == 0


def phase(store: Store, kind: str, name: str) -> str | None:
    try:
        return (store.get(kind, name).get("status") or {}).get("phase")
    except NotFound:
        return None


def wait_phase(store: Store, kind: str, name: str, wanted: str, timeout: float) -> None:
    def check() -> None:
        current = phase(store, kind, name)
        assert current == wanted, f"{kind} {name} is {current}"
        return None

    eventually(check, timeout, f"{kind} {name} to be {wanted}")


def containers(nodes: SwarmNodes, node: str, job: str, task: str) -> list[Object]:
    """Containers (any state) of ``task`` of ``job`` on the daemon of ``node``."""
    with contextlib.closing(nodes.node(node).client()) as client:
        found: list[Object] = client.api.containers(
            all=True, filters={"label": [f"{JOB_NAME}={job}", f"{TASK_NAME}={task}"]}
        )
    return found


def tasks_of(store: Store, job: str) -> dict[str, Object]:
    items = store.list("Task", field_selector=f"spec.job={job}").items
    return {t["metadata"]["labels"][TASK_NAME]: t for t in items}


def test_tasks_on_two_nodes_talk_over_the_jobs_overlay_network(
    swarm_nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path
) -> None:
    start_all(swarm_nodes, store, store_url)
    listen = '[ "$(busybox nc -l -p 7000)" = hello ]'
    talk = (
        "i=0; while [ $i -lt 100 ]; do "
        "echo hello | busybox nc listener 7000 && exit 0; i=$((i+1)); sleep 0.2; done; exit 1"
    )
    apply_job(
        tmp_path,
        store_url,
        "talk",
        [
            {"name": "listener", "node": "node-3", "command": ["sh", "-c", listen]},
            {"name": "talker", "node": "node-2", "command": ["sh", "-c", talk]},
        ],
    )
    wait_phase(store, "Job", "talk", "Succeeded", RUN_SECONDS)

    tasks = tasks_of(store, "talk")
    for task, node, elsewhere in (("listener", "node-3", "node-2"), ("talker", "node-2", "node-3")):
        status = tasks[task]["status"]
        assert (status["node"], status["phase"], status["exitCode"]) == (node, "Succeeded", 0)
        ran = containers(swarm_nodes, node, "talk", task)
        assert [c["Id"] for c in ran] == [status["containerID"]], ran
        assert containers(swarm_nodes, elsewhere, "talk", task) == []
    with contextlib.closing(swarm_nodes.manager.client()) as client:
        assert client.networks.get("talk").attrs["Driver"] == "overlay"


def test_a_restarted_agent_adopts_its_nodes_running_container(
    swarm_nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path
) -> None:
    start_all(swarm_nodes, store, store_url)
    apply_job(
        tmp_path, store_url, "long", [{"name": "a", "node": "node-2", "command": ["sleep", "300"]}]
    )
    wait_phase(store, "Job", "long", "Running", RUN_SECONDS)
    (before,) = containers(swarm_nodes, "node-2", "long", "a")
    assert before["State"] == "running"
    lease = lease_name("node-2")
    holder = store.get("Lease", lease)["spec"]["holderIdentity"]

    swarm_nodes.kill_agent("node-2")
    heartbeat = store.get("Node", "node-2")["status"]["heartbeatTime"]
    assert containers(swarm_nodes, "node-2", "long", "a")[0]["State"] == "running"
    swarm_nodes.start_agent("node-2", store_url)

    def taken_over() -> None:
        assert store.get("Lease", lease)["spec"].get("holderIdentity") not in (holder, None, "")
        assert store.get("Node", "node-2")["status"]["heartbeatTime"] != heartbeat
        assert ready(store, "node-2")

    eventually(taken_over, 15, "the new agent to hold node-2's Lease and report it Ready")
    # A job the new agent must run on the same node: once it succeeded, the agent has made
    # at least one full round over node-2's tasks, the adopted one included.
    apply_job(tmp_path, store_url, "probe", [{"name": "p", "node": "node-2", "command": ["true"]}])
    wait_phase(store, "Job", "probe", "Succeeded", RUN_SECONDS)

    (after,) = containers(swarm_nodes, "node-2", "long", "a")
    assert (after["Id"], after["State"]) == (before["Id"], "running")
    task = tasks_of(store, "long")["a"]
    assert (task["status"]["phase"], task["status"]["containerID"]) == ("Running", before["Id"])


def test_a_stopped_engine_starts_again_and_rejoins_its_swarm(swarm_nodes: SwarmNodes) -> None:
    import docker.errors

    node = swarm_nodes.node("node-3")
    assert node.swarm_node_id
    assert node.stop_engine() == []
    with pytest.raises(docker.errors.DockerException), contextlib.closing(node.client()) as c:
        c.ping()

    node.start_engine()

    def rejoined() -> None:
        with contextlib.closing(node.client()) as client:
            swarm = client.info()["Swarm"]
        assert (swarm["LocalNodeState"], swarm["NodeID"]) == ("active", node.swarm_node_id)

    eventually(rejoined, 20, "node-3 back in its Swarm under the same node id")
    with contextlib.closing(swarm_nodes.manager.client()) as manager:
        states = {n.id: n.attrs["Status"]["State"] for n in manager.nodes.list()}
    assert states == {d.swarm_node_id: "ready" for d in swarm_nodes.daemons}
