"""Node loss on a real three-node Swarm: a killed agent, a stopped engine, and the way back.

``swarmapply controllers`` (every controller, the node lifecycle's grace period made 2 s and
its eviction timeout 1 s) and one ``swarmapply agent`` per node (heartbeat 0.5 s) run as
processes on a SQLite store of the test's own. The job under test has ``restartPolicy: OnFailure``
and is not pinned: it is applied while node-2's agent is the only one up, so the scheduler can
only put it there, and its replacement may go to any node. The engines are the proof: each
node's daemon shows where the task's containers are.

The measured times (node lost -> NotReady, NotReady -> replacement Running elsewhere) are
printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmapply.agent.model import JOB_NAME, TASK_NAME
from swarmapply.api.store import NotFound, Store
from swarmapply.cli.main import main
from tests.conftest import TEST_IMAGE
from tests.integration.helpers import seconds_until, wait_for
from tests.integration.swarm_nodes import SwarmNodes

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # processes share it
]

Object = dict[str, Any]

GRACE = 2.0
HEARTBEAT = 0.5  # what SwarmNodes.agent_command gives every agent
EVICTION = 1.0
#: Seconds for agents and controllers to come up, a job to run, a node to come back.
STEP = 40.0
LOST = "node-2"
OTHERS = ["node-1", "node-3"]


def ready(store: Store, node: str) -> str | None:
    try:
        conditions = (store.get("Node", node).get("status") or {}).get("conditions") or []
    except NotFound:
        return None
    return next((str(c["status"]) for c in conditions if c["type"] == "Ready"), None)


def ready_reason(store: Store, node: str) -> str | None:
    conditions = (store.get("Node", node).get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if c["type"] == "Ready"), None)


def wait_ready(store: Store, names: list[str]) -> None:
    wait_for(lambda: all(ready(store, n) == "True" for n in names), STEP, f"{names} Ready")


def apply_job(directory: Path, store_url: str, name: str) -> None:
    """A one-task Job (``sleep 300``, one core, 16m), restartPolicy OnFailure, not pinned."""
    doc = {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "OnFailure",
            "tasks": [
                {
                    "name": "a",
                    "image": TEST_IMAGE,
                    "cores": 1,
                    "memory": "16m",
                    "command": ["sleep", "300"],
                }
            ],
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["apply", "-f", str(path), "--store", store_url]) == 0


def live_task(store: Store, job: str) -> Object | None:
    found = [
        t
        for t in store.list("Task", field_selector=f"spec.job={job}").items
        if (t.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        and not t["metadata"].get("deletionTimestamp")
    ]
    return found[0] if len(found) == 1 else None


def running(store: Store, job: str, *, on: str | None = None, off: str | None = None) -> Object:
    def check() -> Object | None:
        task = live_task(store, job)
        status = (task or {}).get("status") or {}
        node = status.get("node")
        ok = status.get("phase") == "Running" and status.get("containerID")
        ok = ok and (on is None or node == on) and (off is None or node != off)
        return task if ok else None

    return wait_for(check, STEP, f"job {job} Running (on {on}, not on {off})")


def containers(nodes: SwarmNodes, node: str, job: str) -> list[Object]:
    """The containers (any state) of ``job``'s task ``a`` on ``node``'s daemon."""
    with contextlib.closing(nodes.node(node).client()) as client:
        found: list[Object] = client.api.containers(
            all=True, filters={"label": [f"{JOB_NAME}={job}", f"{TASK_NAME}=a"]}
        )
    return found


def running_containers(nodes: SwarmNodes, job: str) -> dict[str, list[str]]:
    """Node -> ids of the running containers of ``job``'s task ``a`` (answering daemons)."""
    found: dict[str, list[str]] = {}
    for daemon in nodes.daemons:
        ids = [c["Id"] for c in containers(nodes, daemon.name, job) if c["State"] == "running"]
        if ids:
            found[daemon.name] = ids
    return found


@contextlib.contextmanager
def started(nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path, job: str
            ) -> Iterator[Object]:  # fmt: skip
    """The controllers (the node lifecycle's grace and eviction made short), node-2's agent,
    the job on node-2, then the other agents; yields the job's Running task."""
    nodes.start_controllers(
        store_url, "--node-grace", str(GRACE), "--eviction-timeout", str(EVICTION)
    )
    nodes.start_agent(LOST, store_url)
    wait_ready(store, [LOST])
    apply_job(tmp_path, store_url, job)
    task = running(store, job, on=LOST)
    for name in OTHERS:
        nodes.start_agent(name, store_url)
    wait_ready(store, OTHERS)
    yield task


def after_loss(nodes: SwarmNodes, store: Store, job: str, before: Object,
               lost_at: float) -> tuple[float, float, Object]:  # fmt: skip
    """Measures detection and replacement; returns them and the replacement task."""
    detection = seconds_until(lambda: ready(store, LOST) == "False", STEP, f"{LOST} NotReady")
    not_ready_at = time.monotonic()
    replacement = running(store, job, off=LOST)
    replaced = time.monotonic() - not_ready_at
    detection = not_ready_at - lost_at
    assert replacement["metadata"]["uid"] != before["metadata"]["uid"]
    assert replacement["metadata"]["annotations"]["swarmapply.io/failures"] == "1"
    return detection, replaced, replacement


def test_a_killed_agent_loses_its_node_and_the_task_runs_elsewhere_once(
    swarm_nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path
) -> None:
    with started(swarm_nodes, store, store_url, tmp_path, "lost") as before:
        [old] = containers(swarm_nodes, LOST, "lost")
        assert old["Id"] == before["status"]["containerID"] and old["State"] == "running"

        swarm_nodes.kill_agent(LOST)
        lost_at = time.monotonic()
        detection, replaced, after = after_loss(swarm_nodes, store, "lost", before, lost_at)
        assert ready_reason(store, LOST) == "NodeLost"
        print(
            f"\nswarm, agent SIGKILL: detection (kill -> NotReady) {detection:.2f}s, "
            f"replacement (NotReady -> Running on {after['status']['node']}) {replaced:.2f}s"
        )
        assert detection < GRACE + HEARTBEAT + 1.0, detection
        # Nobody runs node-2 meanwhile: the old container is still there, as after any crash.
        assert [c["State"] for c in containers(swarm_nodes, LOST, "lost")] == ["running"]

        swarm_nodes.start_agent(LOST, store_url)
        wait_ready(store, [LOST])
        wait_for(
            lambda: containers(swarm_nodes, LOST, "lost") == [], STEP,
            "the old container removed from node-2",
        )  # fmt: skip
        one = running_containers(swarm_nodes, "lost")
        assert one == {after["status"]["node"]: [after["status"]["containerID"]]}, one


def test_a_stopped_engine_loses_its_node_until_it_starts_again(
    swarm_nodes: SwarmNodes, store: Store, store_url: str, tmp_path: Path
) -> None:
    with started(swarm_nodes, store, store_url, tmp_path, "down") as before:
        engine = swarm_nodes.node(LOST)
        problems: list[str] = []
        gone: list[float] = []

        def stop() -> None:
            problems.extend(engine.stop_engine())
            gone.append(time.monotonic())

        stopping = threading.Thread(target=stop)
        lost_at = time.monotonic()
        stopping.start()
        try:
            detection, replaced, after = after_loss(swarm_nodes, store, "down", before, lost_at)
            reason = ready_reason(store, LOST)
        finally:
            stopping.join(60)
        assert not problems, problems
        # dockerd gives its containers their stop timeout (10 s) before it exits.
        exited = gone[0] - lost_at
        print(
            f"\nswarm, engine stopped ({reason}): dockerd exited {exited:.2f}s after SIGTERM; "
            f"detection (SIGTERM -> NotReady) {detection:.2f}s, replacement (NotReady -> "
            f"Running on {after['status']['node']}) {replaced:.2f}s"
        )
        lost = [
            t
            for t in store.list("Event").items
            if t["reason"] == "NodeLost"
            and t["involvedObject"]["name"] == before["metadata"]["name"]
        ]
        assert lost, "the old task was failed with reason NodeLost"
        failed = [
            e["message"]
            for e in store.list("Event").items
            if e["reason"] == "Failed" and e["involvedObject"]["name"] == before["metadata"]["name"]
        ]
        assert not failed, f"the engine's shutdown was reported as the task's failure: {failed}"

        engine.start_engine()
        wait_ready(store, [LOST])
        wait_for(
            lambda: containers(swarm_nodes, LOST, "down") == [], STEP,
            "the old container removed from node-2",
        )  # fmt: skip
        one = running_containers(swarm_nodes, "down")
        assert one == {after["status"]["node"]: [after["status"]["containerID"]]}, one
