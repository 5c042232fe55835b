"""A real two-node Swarm on one machine: an agent started with ``--join`` joins it by itself.

Two extra Docker daemons, each in its own network namespace on a bridge of the test's own
(:mod:`tests.integration.swarm_nodes`, through the ``make_swarm_nodes`` fixture), neither in a
Swarm yet: a manager and a worker. The machine's own engine is never used. The deployer
initialises the Swarm on the manager daemon and publishes the join facts in a fresh SQLite
store; ``swarmapply agent --driver docker --join``, pointed at the worker daemon, waits for
them, joins, and registers its Node. The fixture removes everything afterwards.

Needs root, ``ip`` (iproute2), ``nsenter`` and ``unshare`` (util-linux) and ``dockerd``; without
them the test is skipped with a how-to (under ``CI=true`` it fails instead).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.store import NotFound, Store, open_store
from swarmapply.controllers.deployer import Deployer, read_join_info
from swarmapply.controllers.settings import DeployerSettings
from swarmapply.controllers.swarm import DockerEngine
from tests.integration.helpers import wait_for
from tests.integration.swarm_nodes import MakeSwarmNodes

pytestmark = pytest.mark.docker

API = "swarmapply.io/v1"


def a_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "a", "image": "busybox", "cores": 1, "memory": 1 << 26}]},
    }


def node_status(store: Store, name: str) -> dict[str, Any]:
    try:
        return dict(store.get("Node", name).get("status") or {})
    except NotFound:
        return {}


def test_an_agent_with_join_joins_the_swarm_the_deployer_made(
    make_swarm_nodes: MakeSwarmNodes, tmp_path: Path
) -> None:
    manager, worker = make_swarm_nodes(["manager", "worker"], swarm=False, image=None).daemons
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.poll_interval = 0.01  # type: ignore[attr-defined]
    log = tmp_path / "agent.log"
    env = {**os.environ, "DOCKER_HOST": worker.url}
    command = [
        sys.executable, "-m", "swarmapply", "agent", "--driver", "docker", "--join",
        "--name", "worker-1", "--store", url, "--heartbeat", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        agent = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    manager_client = manager.client()
    output: Callable[[], str] = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        # Started before the Swarm exists, the agent waits for the join facts.
        wait_for(lambda: "not published yet" in output(), 20, "the agent waiting to join")
        assert node_status(store, "worker-1") == {}

        settings = DeployerSettings(docker_host=manager.url, advertise_addr=manager.address)
        engine = DockerEngine(settings.docker_host)
        try:
            store.create(a_job("join-it"))
            Deployer(store, engine, settings).reconcile("join-it")
        finally:
            engine.close()
        info = read_join_info(store)
        assert info is not None and info.manager_addr == f"{manager.address}:2377"

        status = wait_for(
            lambda: (s := node_status(store, "worker-1")).get("swarmNodeID") and s,
            30,
            "Node worker-1 registered with its Swarm node id",
        )
        assert status["role"] == "worker" and status["swarmState"] == "active"
        nodes = {n.id: n.attrs for n in manager_client.nodes.list()}
        assert len(nodes) == 2, nodes
        joined = nodes[status["swarmNodeID"]]
        assert joined["Spec"]["Role"] == "worker"
        assert joined["Description"]["Hostname"].endswith("-worker")
        assert "Swarm membership: joined" in output()

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0, output()
    except BaseException:
        sys.stderr.write(f"--- agent\n{output()}\n")
        raise
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        manager_client.close()
        store.close()
