"""The deployer against the real Docker Engine: Swarm, job networks, images, the controller.

Initialising a Swarm changes the engine for everyone using it, so when the engine is in no
Swarm the first test makes it the manager of a single-node Swarm advertising 127.0.0.1 and
leaves it so (leaving would remove every Swarm network other tests or people rely on; CI's
engine is thrown away after the run). Every network a test creates is removed by the test,
found by the job label the deployer puts on it or by its name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import Store
from swarmapply.controllers.deployer import (
    Deployer,
    JoinInfo,
    build,
    read_join_info,
)
from swarmapply.controllers.settings import ControllerSettings, DeployerSettings
from swarmapply.controllers.swarm import DockerEngine
from tests.integration.helpers import Running, wait_for

pytestmark = pytest.mark.docker

API = "swarmapply.io/v1"
JOB_LABEL = "swarmapply.io/job"
SETTINGS = DeployerSettings(advertise_addr="127.0.0.1")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only: the deployer's store use is the same on every backend."""
    return f"sqlite:///{tmp_path}/state.db"


@pytest.fixture
def names() -> str:
    """A fresh job name per test (also its default network's name)."""
    return f"deployer-it-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def networks(docker_client: Any) -> Iterator[list[str]]:
    """Names of networks to remove after the test (plus any labelled with a test job)."""
    made: list[str] = []
    yield made
    for net in docker_client.networks.list():
        labels = net.attrs.get("Labels") or {}
        if net.name in made or str(labels.get(JOB_LABEL, "")).startswith("deployer-it-"):
            net.remove()


def job(name: str, network: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tasks": [{"name": "a", "image": "busybox", "cores": 1, "memory": 1 << 26}],
        "network": {"name": name, "driver": "overlay", **(network or {})},
    }
    return {"apiVersion": API, "kind": "Job", "metadata": {"name": name}, "spec": spec}


def exact(docker_client: Any, name: str) -> list[Any]:
    return [n for n in docker_client.networks.list(names=[name]) if n.name == name]


def test_swarm_is_initialised_and_the_job_network_created_once(
    docker_client: Any, store: Store, names: str, networks: list[str]
) -> None:
    networks.append(names)
    store.create(job(names, {"subnet": "10.231.7.0/24"}))
    deployer = Deployer(store, DockerEngine(client=docker_client), SETTINGS)

    deployer.reconcile(names)

    swarm = docker_client.info()["Swarm"]
    assert swarm["LocalNodeState"] == "active" and swarm["ControlAvailable"]
    info = read_join_info(store)
    assert info is not None
    token = docker_client.api.inspect_swarm()["JoinTokens"]["Worker"]
    assert info == JoinInfo(token, info.manager_addr)
    assert info.manager_addr.endswith(":2377")
    [net] = exact(docker_client, names)
    attrs = docker_client.api.inspect_network(net.id)
    assert attrs["Driver"] == "overlay"
    assert attrs["Attachable"] is True
    assert attrs["Labels"] == {"swarmapply.io/managed-by": "swarmapply", JOB_LABEL: names}
    assert [c["Subnet"] for c in attrs["IPAM"]["Config"]] == ["10.231.7.0/24"]

    deployer.reconcile(names)  # idempotent: nothing new
    Deployer(store, DockerEngine(client=docker_client), SETTINGS).reconcile(names)  # new term
    assert [n.id for n in exact(docker_client, names)] == [net.id]
    created = [e for e in store.list("Event").items if e["reason"] == "NetworkCreated"]
    assert [e["count"] for e in created] == [1]
    assert created[0]["message"] == (
        f"created network {names} (driver overlay, subnet 10.231.7.0/24, attachable)"
    )


def test_a_conflicting_network_gets_an_event_and_is_left_alone(
    docker_client: Any, store: Store, names: str, networks: list[str]
) -> None:
    networks.append(names)
    existing = docker_client.networks.create(names, driver="bridge")
    store.create(job(names))

    Deployer(store, DockerEngine(client=docker_client), SETTINGS).reconcile(names)

    [event] = [e for e in store.list("Event").items if e["reason"] == "NetworkConflict"]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == names
    assert "spec.network.driver is overlay but the network's is bridge" in event["message"]
    [net] = exact(docker_client, names)
    assert net.id == existing.id
    assert net.attrs["Driver"] == "bridge"
    assert (net.attrs.get("Labels") or {}) == {}


def test_the_controller_creates_networks_and_reports_failed_pulls(
    docker_client: Any,
    open_test_store: Callable[[str], Store],
    store_url: str,
    names: str,
    networks: list[str],
    test_image: str,
) -> None:
    networks.append(names)
    store = open_test_store(store_url)
    host = docker_client.info()["Name"]
    store.create({"apiVersion": API, "kind": "Node", "metadata": {"name": host}})
    created_job = store.create(job(names))
    absent = f"swarmapply-test/absent-{uuid.uuid4().hex[:8]}:1"
    owner = {"apiVersion": API, "kind": "Job", "name": names, "controller": True,
             "uid": created_job["metadata"]["uid"]}  # fmt: skip
    for index, image in enumerate((test_image, absent)):
        task = store.create(
            {
                "apiVersion": API,
                "kind": "Task",
                "metadata": {"name": f"{names}-{index}", "ownerReferences": [owner]},
                "spec": {"job": names, "image": image, "cores": 1, "memory": 1 << 26},
            }
        )
        status = {"phase": "Scheduled", "node": host, "cpuset": "0", "memory": 1 << 26}
        store.update_status({**task, "status": status})
    settings = ControllerSettings(workers=1, resync=None, deployer=SETTINGS)

    with Running(build(store, settings)):
        wait_for(lambda: exact(docker_client, names), 15, f"network {names}")
        failed = wait_for(
            lambda: [e for e in store.list("Event").items if e["reason"] == "ImagePullFailed"],
            15,
            "an ImagePullFailed Event",
        )

    assert len(failed) == 1
    assert f"image {absent} could not be pulled on engine {host}" in failed[0]["message"]
    assert failed[0]["involvedObject"]["name"] == names
    pulled = [e for e in store.list("Event").items if e["reason"] == "ImagePulled"]
    assert pulled == []  # the test image is present: never pulled
