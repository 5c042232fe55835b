"""Migrations on a real three-node Swarm: cold moves, the live path, and injected failures.

Each test runs ``swarmapply controllers`` (short migration step timeout) and one ``swarmapply
agent`` per node of the ``swarm_nodes`` fixture (three Docker daemons in one Swarm, each in its
own network namespace) on a SQLite store of its own. While a migration runs, a thread checks
the allocation invariant against the store every few milliseconds — including the cores a
Migration holds on both nodes — and the test fails if it ever broke. The engines are the
proof: ``inspect`` on each node's daemon shows where a task's container runs and its cpuset.

This machine's kernel cannot checkpoint (CRIU fails), so the live path is exercised up to
that failure: ``live`` fails and leaves the task running as it was, ``auto`` falls back to cold
and says so in an Event.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmapply.agent.model import JOB_NAME, TASK_NAME
from swarmapply.api.store import NotFound, Store
from swarmapply.cli.main import main
from tests.integration.helpers import wait_for
from tests.integration.scheduler_objects import assert_allocation_invariant
from tests.integration.swarm_nodes import SwarmNodes
from tests.integration.test_swarm_nodes import (
    START_SECONDS,
    apply_job,
    ready,
    tasks_of,
    wait_phase,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # processes share it
]

Object = dict[str, Any]
#: Seconds an alive agent has to begin a migration step before the migration gives up.
STEP_TIMEOUT = "4"
#: Seconds a migration may take in these tests.
MIGRATION_SECONDS = 40.0
SLEEP = ["sleep", "300"]
#: Answers ``pong`` to every connection on port 7000.
SERVE = "while true; do echo pong | busybox nc -l -p 7000; done"


def start_all(nodes: SwarmNodes, store: Store, store_url: str, directory: Path) -> None:
    """The controllers and an agent per node (checkpoints kept in ``directory``), all Ready."""
    nodes.start_controllers(store_url, "--migration-step-timeout", STEP_TIMEOUT)
    for daemon in nodes.daemons:
        nodes.start_agent(daemon, store_url, "--checkpoint-dir", str(directory / "checkpoints"))
    names = [d.name for d in nodes.daemons]
    wait_for(lambda: all(ready(store, n) for n in names), START_SECONDS, f"Nodes {names} Ready")


@contextlib.contextmanager
def invariant_watch(store: Store) -> Iterator[None]:
    """Checks the allocation invariant continuously while the block runs."""
    stop = threading.Event()
    broken: list[str] = []
    checks = [0]

    def watch() -> None:
        while not stop.is_set():
            try:
                assert_allocation_invariant(store)
            except AssertionError as exc:
                broken.append(str(exc))
                return
            checks[0] += 1
            stop.wait(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
    assert not broken, broken
    assert checks[0] > 10


def migrate(store_url: str, *args: str) -> int:
    return main(["migrate", *args, "--store", store_url])


def migration(store: Store, name: str) -> Object:
    return dict(store.get("Migration", name).get("status") or {})


def finished(store: Store, name: str) -> Object:
    def done() -> Object | None:
        status = migration(store, name)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(done, MIGRATION_SECONDS, f"migration {name} to finish")


def only_migration(store: Store) -> str:
    [item] = store.list("Migration").items
    return str(item["metadata"]["name"])


def containers(nodes: SwarmNodes, node: str, job: str, task: str) -> list[Object]:
    with contextlib.closing(nodes.node(node).client()) as client:
        found: list[Object] = client.api.containers(
            all=True, filters={"label": [f"{JOB_NAME}={job}", f"{TASK_NAME}={task}"]}
        )
        return [client.api.inspect_container(c["Id"]) for c in found]


def placement(nodes: SwarmNodes, job: str, task: str) -> dict[str, list[tuple[str, str]]]:
    """Node -> (container id, cpuset) of the task's containers on every daemon."""
    found = {}
    for daemon in nodes.daemons:
        here = containers(nodes, daemon.name, job, task)
        if here:
            found[daemon.name] = [(c["Id"], c["HostConfig"]["CpusetCpus"]) for c in here]
    return found


def task_status(store: Store, job: str, task: str) -> Object:
    return dict(tasks_of(store, job)[task].get("status") or {})


def running_on(store: Store, job: str, task: str, node: str) -> Object:
    def check() -> Object | None:
        status = task_status(store, job, task)
        ok = status.get("phase") == "Running" and status.get("node") == node
        return status if ok and status.get("containerID") else None

    return wait_for(check, MIGRATION_SECONDS, f"{job}/{task} Running on {node}")


def allocated_tasks(store: Store, node: str) -> list[str]:
    try:
        allocated = (store.get("Node", node).get("status") or {}).get("allocated") or {}
    except NotFound:
        return []
    return [e["task"] for e in allocated.get("tasks") or []]


def events(store: Store, kind: str, name: str) -> list[Object]:
    uid = store.get(kind, name)["metadata"]["uid"]
    return store.list("Event", field_selector=f"involvedObject.uid={uid}").items


def reaches(nodes: SwarmNodes, node: str, container: str, name: str) -> bool:
    """Whether ``container`` gets ``pong`` from task ``name``'s port 7000 over the job's
    network, trying for up to 20 seconds (a moved endpoint takes a moment to be known)."""
    probe = (
        "i=0; while [ $i -lt 20 ]; do "
        f'[ "$(sleep 1 | busybox nc -w 2 {name} 7000)" = pong ] && exit 0; '
        "i=$((i+1)); done; exit 1"
    )
    with contextlib.closing(nodes.node(node).client()) as client:
        result = client.containers.get(container).exec_run(["sh", "-c", probe])
        return result.exit_code == 0


def test_cold_migration_of_a_task_and_of_a_whole_job(
    swarm_nodes: SwarmNodes,
    store: Store,
    store_url: str,
    tmp_path: Path,
) -> None:
    start_all(swarm_nodes, store, store_url, tmp_path)
    apply_job(
        tmp_path,
        store_url,
        "pair",
        [
            {"name": "server", "node": "node-2", "command": ["sh", "-c", SERVE]},
            {"name": "client", "node": "node-3", "command": SLEEP},
        ],
    )
    wait_phase(store, "Job", "pair", "Running", MIGRATION_SECONDS)
    client_before = task_status(store, "pair", "client")
    client_task = tasks_of(store, "pair")["client"]
    server_name = "server"  # tasks reach each other by their names within the job
    assert reaches(swarm_nodes, "node-3", client_before["containerID"], server_name)

    # One task, node-3 -> node-1, through the CLI, waiting for the result.
    with invariant_watch(store):
        code = migrate(
            store_url, "task", client_task["metadata"]["name"], "--to", "node-1",
            "--mode", "cold", "--wait",
        )  # fmt: skip
    assert code == 0
    done = migration(store, only_migration(store))
    assert done["phase"] == "Succeeded" and done["mode"] == "cold"
    assert (done["sourceNode"], done["targetNode"]) == ("node-3", "node-1")
    moved = running_on(store, "pair", "client", "node-1")
    assert tasks_of(store, "pair")["client"]["metadata"]["uid"] == client_task["metadata"]["uid"]
    assert moved["cpuset"] == done["targetCpuset"]
    assert placement(swarm_nodes, "pair", "client") == {
        "node-1": [(moved["containerID"], done["targetCpuset"])]
    }
    wait_for(lambda: allocated_tasks(store, "node-3") == [], 10, "node-3's cores given back")
    assert reaches(swarm_nodes, "node-1", moved["containerID"], server_name)

    # The whole job (node-2 and node-1) -> node-3.
    with invariant_watch(store):
        assert migrate(store_url, "job", "pair", "--to", "node-3", "--mode", "cold") == 0
        name = next(
            m["metadata"]["name"]
            for m in store.list("Migration").items
            if (m.get("spec") or {}).get("job") == "pair"
        )
        group = finished(store, name)
    assert group["phase"] == "Succeeded", group
    assert [(e["task"].rsplit("-", 1)[-1], e["targetNode"]) for e in group["tasks"]] == [
        ("client", "node-3"),
        ("server", "node-3"),
    ]
    statuses = {t: running_on(store, "pair", t, "node-3") for t in ("client", "server")}
    for task, status in statuses.items():
        assert list(placement(swarm_nodes, "pair", task)) == ["node-3"]
        assert [c[1] for c in placement(swarm_nodes, "pair", task)["node-3"]] == [status["cpuset"]]
    assert reaches(swarm_nodes, "node-3", statuses["client"]["containerID"], server_name)
    wait_for(
        lambda: allocated_tasks(store, "node-1") == allocated_tasks(store, "node-2") == [],
        10,
        "node-1's and node-2's cores given back",
    )
    wait_phase(store, "Job", "pair", "Running", 5)


def test_live_fails_cleanly_here_and_auto_falls_back_to_cold(
    swarm_nodes: SwarmNodes,
    store: Store,
    store_url: str,
    tmp_path: Path,
) -> None:
    start_all(swarm_nodes, store, store_url, tmp_path)
    apply_job(tmp_path, store_url, "solo", [{"name": "a", "node": "node-2", "command": SLEEP}])
    wait_phase(store, "Job", "solo", "Running", MIGRATION_SECONDS)
    task = tasks_of(store, "solo")["a"]["metadata"]["name"]
    before = task_status(store, "solo", "a")

    with invariant_watch(store):
        assert migrate(store_url, "task", task, "--to", "node-3", "--mode", "live", "--wait") == 1
    live = migration(store, only_migration(store))
    assert live["phase"] == "Failed"
    assert "CheckpointFailed" in live["message"] or "CheckpointUnsupported" in live["message"]
    after = task_status(store, "solo", "a")
    assert (after["node"], after["containerID"], after["phase"]) == (
        "node-2",
        before["containerID"],
        "Running",
    )
    assert "migration" not in after
    assert list(placement(swarm_nodes, "solo", "a")) == ["node-2"]
    wait_for(lambda: allocated_tasks(store, "node-3") == [], 10, "the reservation released")

    with invariant_watch(store):
        assert migrate(store_url, "task", task, "--to", "node-3", "--wait") == 0
    [auto] = [
        m for m in store.list("Migration").items if (m.get("spec") or {}).get("mode") != "live"
    ]
    status = auto["status"]
    assert status["phase"] == "Succeeded" and status["mode"] == "cold"
    reasons = events(store, "Migration", auto["metadata"]["name"])
    fallback = [e for e in reasons if e["reason"] == "FellBackToCold"]
    assert fallback and "live migration is not possible" in fallback[0]["message"]
    moved = running_on(store, "solo", "a", "node-3")
    assert list(placement(swarm_nodes, "solo", "a")) == ["node-3"]
    assert moved["containerID"] != before["containerID"]


def test_a_killed_source_agent_delays_the_move_and_nothing_runs_twice(
    swarm_nodes: SwarmNodes,
    store: Store,
    store_url: str,
    tmp_path: Path,
) -> None:
    start_all(swarm_nodes, store, store_url, tmp_path)
    apply_job(tmp_path, store_url, "k", [{"name": "a", "node": "node-2", "command": SLEEP}])
    wait_phase(store, "Job", "k", "Running", MIGRATION_SECONDS)
    task = tasks_of(store, "k")["a"]["metadata"]["name"]
    before = task_status(store, "k", "a")

    with invariant_watch(store):
        swarm_nodes.kill_agent("node-2")
        assert migrate(store_url, "task", task, "--to", "node-3", "--mode", "cold") == 0
        name = only_migration(store)
        wait_for(
            lambda: "not alive" in migration(store, name).get("message", ""),
            MIGRATION_SECONDS,
            "the migrator waiting for node-2's agent",
        )
        # Well past the step timeout: still waiting, and the task still runs on node-2.
        threading.Event().wait(float(STEP_TIMEOUT) + 2)
        assert migration(store, name)["phase"] == "Stopping"
        assert list(placement(swarm_nodes, "k", "a")) == ["node-2"]
        swarm_nodes.start_agent(
            swarm_nodes.node("node-2"), store_url, "--checkpoint-dir", str(tmp_path / "checkpoints")
        )
        done = finished(store, name)
    assert done["phase"] == "Succeeded", done
    moved = running_on(store, "k", "a", "node-3")
    assert placement(swarm_nodes, "k", "a") == {
        "node-3": [(moved["containerID"], done["targetCpuset"])]
    }
    assert moved["containerID"] != before["containerID"]


def test_a_target_engine_that_stops_mid_migration_rolls_the_task_back(
    swarm_nodes: SwarmNodes,
    store: Store,
    store_url: str,
    tmp_path: Path,
) -> None:
    start_all(swarm_nodes, store, store_url, tmp_path)
    # A task that ignores SIGTERM takes the driver's whole stop grace to stop: time enough
    # to stop the target's engine while the source stops it.
    stubborn = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
    apply_job(tmp_path, store_url, "t", [{"name": "a", "node": "node-2", "command": stubborn}])
    wait_phase(store, "Job", "t", "Running", MIGRATION_SECONDS)
    task = tasks_of(store, "t")["a"]["metadata"]["name"]

    with invariant_watch(store):
        assert migrate(store_url, "task", task, "--to", "node-3", "--mode", "cold") == 0
        name = only_migration(store)
        wait_for(
            lambda: migration(store, name).get("phase") == "Stopping",
            MIGRATION_SECONDS,
            "the source stopping the task",
        )
        target = swarm_nodes.node("node-3")
        assert target.stop_engine() == []
        done = finished(store, name)
        assert done["phase"] == "Failed" and done["reason"] == "RolledBack", done
        back = running_on(store, "t", "a", "node-2")
        target.start_engine()
        wait_for(lambda: ready(store, "node-3"), START_SECONDS, "node-3 Ready again")
    assert placement(swarm_nodes, "t", "a") == {"node-2": [(back["containerID"], back["cpuset"])]}
    wait_for(lambda: allocated_tasks(store, "node-3") == [], 10, "the reservation released")
    assert "started again on the source" in done["message"]
