"""Drain and remove on a real three-node Swarm.

``swarmapply controllers`` and one ``swarmapply agent`` per node of the ``swarm_nodes`` fixture
run on a SQLite store of the test's own. ``swarmapply drain`` moves every task off node-2 by
migration and leaves it cordoned and empty (each daemon's containers are the proof);
``swarmapply node remove`` then takes the drained node, whose agent was stopped, out of the
Swarm (the manager's node list is the proof) and deletes its Node.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from swarmapply.api.store import NotFound, Store
from swarmapply.cli.main import main
from tests.integration.swarm_nodes import SwarmNodes
from tests.integration.test_swarm_migration import (
    MIGRATION_SECONDS,
    allocated_tasks,
    placement,
    running_on,
    start_all,
    task_status,
)
from tests.integration.test_swarm_nodes import apply_job, tasks_of, wait_phase

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # processes share it
]

SLEEP = ["sleep", "300"]


def test_drain_empties_a_node_and_remove_takes_one_out_of_the_swarm(
    swarm_nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path
) -> None:
    start_all(swarm_nodes, store, store_url, tmp_path)
    apply_job(
        tmp_path,
        store_url,
        "d",
        [
            {"name": "a", "node": "node-2", "command": SLEEP},
            {"name": "b", "node": "node-2", "command": SLEEP},
        ],
    )
    wait_phase(store, "Job", "d", "Running", MIGRATION_SECONDS)

    assert main(["drain", "node-2", "--timeout", str(MIGRATION_SECONDS), "--store", store_url]) == 0
    node = store.get("Node", "node-2")
    assert node["spec"]["unschedulable"] is True
    for task in ("a", "b"):
        where = task_status(store, "d", task)["node"]
        assert where != "node-2"
        running_on(store, "d", task, where)
        assert list(placement(swarm_nodes, "d", task)) == [where]
    assert allocated_tasks(store, "node-2") == []
    assert [t["status"]["node"] for t in tasks_of(store, "d").values()].count("node-2") == 0

    # The drained node's agent stops; then the node leaves the Swarm and the store.
    assert swarm_nodes.stop_agent("node-2", 15) == 0
    leaving = swarm_nodes.node("node-2").swarm_node_id
    with contextlib.closing(swarm_nodes.manager.client()) as client:
        assert leaving in {n.id for n in client.nodes.list()}
        remove = ["node", "remove", "node-2", "--docker-host", swarm_nodes.manager.url]
        assert main([*remove, "--store", store_url]) == 0
        assert leaving not in {n.id for n in client.nodes.list()}
    with pytest.raises(NotFound):
        store.get("Node", "node-2")
    for task in ("a", "b"):  # the tasks run on where they were drained to
        status = task_status(store, "d", task)
        assert status["phase"] == "Running" and status["node"] != "node-2"
