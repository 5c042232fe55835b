"""cordon, uncordon, drain, node remove, describe node and cluster info against a real store.

No controllers or agents run: a thread plays the scheduler and the migrator (it re-binds moved
tasks and writes the Migrations' phases), and the tests write Node and Lease objects as agents
and controllers would.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from swarmapply.api.admission import admit
from swarmapply.api.store import Conflict, Store, open_store
from swarmapply.cli import node as node_cli
from swarmapply.cli.main import main
from swarmapply.controllers.deployer import (
    JOIN_LEASE,
    JOIN_TOKEN_ANNOTATION,
    MANAGER_ADDR_ANNOTATION,
)
from swarmapply.controllers.job_tasks import build_task

MI = 2**20
Object = dict[str, Any]


def job_doc(name: str, priority: int, *entries: str) -> str:
    tasks = [{"name": e, "image": "busybox", "cores": 1, "memory": "64Mi"} for e in entries]
    return json.dumps(
        {
            "apiVersion": "swarmapply.io/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"priority": priority, "tasks": tasks},
        }
    )


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An SQLite store, made the command line's default."""
    store_url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("SWARMAPPLY_STORE", store_url)
    return store_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_node(store: Store, name: str, **status: Any) -> None:
    node = {"apiVersion": "swarmapply.io/v1", "kind": "Node", "metadata": {"name": name}}
    created = store.create({**node, "spec": {}})
    capacity = {"cores": 4, "memory": 8 * 2**30, "coreIds": [0, 1, 2, 3]}
    store.update_status({**created, "status": {"capacity": capacity, **status}})


def cluster(url: str) -> None:
    """Nodes n1, n2; Job web (priority 0: web-server, web-db) and Job hi (priority 5: hi-main),
    all Running on n1."""
    with open_store(url) as store:
        add_node(store, "n1")
        add_node(store, "n2")
        cpus = iter(("0", "1", "2"))
        for doc in (job_doc("web", 0, "server", "db"), job_doc("hi", 5, "main")):
            job = store.create(admit([("job.json", doc)])[0].obj)
            for entry in job["spec"]["tasks"]:
                task = store.create(build_task(job, entry))
                status = {"phase": "Running", "node": "n1", "cpuset": next(cpus), "memory": 64 * MI}
                store.update_status({**task, "status": status})


@pytest.fixture
def migrator() -> Iterator[Callable[[Callable[[Store, Object], Object | None]], None]]:
    """Starts a thread playing the migrator on the command line's store: ``decide(store,
    migration)`` gives the final status of each new Migration (or None: ask again later)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(decide: Callable[[Store, Object], Object | None]) -> None:
        url = os.environ["SWARMAPPLY_STORE"]

        def loop() -> None:
            with open_store(url) as store:
                handled: set[str] = set()
                deadline = time.monotonic() + 15
                while not stop.is_set() and time.monotonic() < deadline:
                    for migration in store.list("Migration").items:
                        name = migration["metadata"]["name"]
                        if name in handled:
                            continue
                        status = decide(store, migration)
                        if status is not None:
                            handled.add(name)
                            store.update_status({**migration, "status": status})
                    time.sleep(0.02)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def move_to(store: Store, task_name: str, node: str) -> Object:
    """Re-binds a task to ``node`` and returns a Succeeded Migration status for it."""
    task = store.get("Task", task_name)
    source = task["status"]["node"]
    store.update_status({**task, "status": {**task["status"], "node": node, "cpuset": "3"}})
    move = {"task": task_name, "sourceNode": source, "targetNode": node, "targetCpuset": "3"}
    return {"phase": "Succeeded", "mode": "cold", "tasks": [move]}


def moves_all_but(failing: str) -> Callable[[Store, Object], Object | None]:
    def decide(store: Store, migration: Object) -> Object | None:
        task = migration["spec"]["task"]
        if task == failing:
            return {"phase": "Failed", "reason": "Unschedulable", "message": "no node has 1 core"}
        return move_to(store, task, "n2")

    return decide


def created_order(out: str) -> list[str]:
    return [line.split()[1].rstrip(":") for line in out.splitlines() if line.endswith(" created")]


# --------------------------------------------------------------------- cordon, uncordon


def test_cordon_and_uncordon(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    assert run(capsys, "cordon", "n1") == (0, "node/n1 cordoned\n", "")
    assert run(capsys, "cordon", "n1") == (0, "node/n1 already cordoned\n", "")
    with open_store(url) as store:
        assert store.get("Node", "n1")["spec"]["unschedulable"] is True
        assert store.get("Node", "n1")["status"]["capacity"]["cores"] == 4  # status kept
    assert "SchedulingDisabled" in run(capsys, "get", "nodes")[1]
    assert run(capsys, "uncordon", "n1") == (0, "node/n1 uncordoned\n", "")
    assert run(capsys, "uncordon", "n1") == (0, "node/n1 already uncordoned\n", "")
    with open_store(url) as store:
        assert not store.get("Node", "n1")["spec"].get("unschedulable")


@pytest.mark.parametrize("command", ["cordon", "uncordon", "drain"])
def test_unknown_node_is_an_error(
    url: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    cluster(url)
    assert run(capsys, command, "n9") == (1, "", 'error: node "n9" not found\n')


def test_cordon_retries_on_conflict(url: str) -> None:
    """A Node changed between the read and the write is read again, and the change kept."""
    cluster(url)

    class Racing:
        """A store whose first update loses a race with a heartbeat."""

        def __init__(self, store: Store) -> None:
            self.store, self.raced = store, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        def update(self, obj: Object) -> Object:
            if not self.raced:
                self.raced += 1
                node = self.store.get("Node", obj["metadata"]["name"])
                self.store.update({**node, "metadata": {**node["metadata"], "labels": {"a": "b"}}})
            return self.store.update(obj)

    with open_store(url) as store:
        racing = Racing(store)
        assert node_cli.set_unschedulable(racing, "n1", True) is True  # type: ignore[arg-type]
        node = store.get("Node", "n1")
        assert (racing.raced, node["spec"]["unschedulable"]) == (1, True)
        assert node["metadata"]["labels"] == {"a": "b"}  # the other writer's change is kept

        class Losing(Racing):
            def update(self, obj: Object) -> Object:
                raise Conflict("Node", "n1", "1", "2")

        with pytest.raises(Conflict):
            node_cli.set_unschedulable(Losing(store), "n1", False)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- drain


def test_drain_moves_what_it_can_and_reports_the_rest(
    url: str, capsys: pytest.CaptureFixture[str], migrator: Any
) -> None:
    cluster(url)
    migrator(moves_all_but("web-db"))
    code, out, err = run(capsys, "drain", "n1", "--timeout", "10")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "node/n1 cordoned"
    assert created_order(out) == ["hi-main", "web-db", "web-server"]  # priority 5 first
    assert "task hi-main: moved to node n2" in lines
    assert "task web-server: moved to node n2" in lines
    assert "task web-db: not moved: Unschedulable: no node has 1 core" in lines
    assert err.splitlines() == [
        "error: node/n1 not drained: 2 of 3 tasks moved, 1 left on the node:",
        "  web-db: Unschedulable: no node has 1 core",
    ]
    with open_store(url) as store:
        migrations = store.list("Migration").items
        assert store.get("Node", "n1")["spec"]["unschedulable"] is True
    assert len(migrations) == 3
    for migration in migrations:
        assert migration["spec"]["mode"] == "cold" and "toNode" not in migration["spec"]
        assert migration["metadata"]["annotations"] == {node_cli.DRAIN_ANNOTATION: "n1"}


def test_drain_empties_the_node_and_follows_a_move_under_way(
    url: str, capsys: pytest.CaptureFixture[str], migrator: Any
) -> None:
    cluster(url)
    with open_store(url) as store:  # web-server is moving already
        store.create(
            admit(
                [
                    (
                        "m.json",
                        json.dumps(
                            {
                                "apiVersion": "swarmapply.io/v1",
                                "kind": "Migration",
                                "metadata": {"name": "earlier"},
                                "spec": {"task": "web-server", "toNode": "n2"},
                            }
                        ),
                    )
                ]
            )[0].obj
        )

    def decide(store: Store, migration: Object) -> Object | None:
        if len(store.list("Migration").items) < 3:  # the earlier one ends after the drain began
            return None
        return move_to(store, migration["spec"]["task"], "n2")

    migrator(decide)
    code, out, err = run(capsys, "drain", "n1", "--mode", "auto")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "task web-server: already moving (Migration earlier); following it" in lines
    assert created_order(out) == ["hi-main", "web-db"]
    assert {"task web-server: moved to node n2", "task web-db: moved to node n2"} <= set(lines)
    assert lines[-1] == "node/n1 drained: 3 of 3 tasks moved, none left"
    with open_store(url) as store:
        specs = {m["metadata"]["name"]: m["spec"] for m in store.list("Migration").items}
    assert specs.pop("earlier")["task"] == "web-server"
    assert sorted((s["task"], s["mode"]) for s in specs.values()) == [
        ("hi-main", "auto"),
        ("web-db", "auto"),
    ]


def test_drain_times_out_and_reports_unfinished_moves(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    with open_store(url) as store:  # a task bound but not running cannot move
        task = store.get("Task", "hi-main")
        store.update_status({**task, "status": {**task["status"], "phase": "Scheduled"}})
    code, out, err = run(capsys, "drain", "n1", "--timeout", "0.3")
    assert code == 1
    lines = out.splitlines()
    assert 'task hi-main: not moved: is not running yet (phase Scheduled on node "n1")' in lines
    assert any(
        line.startswith("task web-db: not moved: Migration web-db-")
        and line.endswith(" still Pending after 0.3s (it carries on)")
        for line in lines
    )
    assert "3 left on the node" in err.splitlines()[0]


def test_drain_of_an_empty_node(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    assert run(capsys, "drain", "n2") == (
        0,
        "node/n2 cordoned\nnode/n2 drained: 0 of 0 tasks moved, none left\n",
        "",
    )


# ------------------------------------------------------------------------- node remove


class FakeManager:
    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.removed: list[str] = []

    def remove_node(self, node_id: str) -> bool:
        self.removed.append(node_id)
        return node_id in self.known


def test_node_remove_refuses_while_tasks_remain(
    url: str, capsys: pytest.CaptureFixture[str], migrator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster(url)
    manager = FakeManager({"swarm-1"})
    monkeypatch.setattr(node_cli, "open_manager", lambda host: manager)
    migrator(moves_all_but("web-db"))
    code, out, err = run(capsys, "node", "remove", "n1", "--timeout", "10")
    assert code == 1
    assert "task web-db: not moved: Unschedulable: no node has 1 core" in out
    assert err.splitlines()[-1] == (
        "error: node/n1 not removed: live tasks remain (--force removes it)"
    )
    assert manager.removed == []
    with open_store(url) as store:
        assert store.get("Node", "n1")["spec"]["unschedulable"] is True


def test_node_remove_drains_removes_from_the_swarm_and_deletes(
    url: str, capsys: pytest.CaptureFixture[str], migrator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster(url)
    with open_store(url) as store:
        add_node(store, "n3", swarmNodeID="swarm-3", role="worker")
        store.create(
            {
                "apiVersion": "swarmapply.io/v1",
                "kind": "Lease",
                "metadata": {"name": "node-n3"},
                "spec": {"holderIdentity": "", "leaseDurationSeconds": 10},
            }
        )
    manager = FakeManager({"swarm-3"})
    hosts: list[str | None] = []

    def opened(host: str | None) -> FakeManager:
        hosts.append(host)
        return manager

    monkeypatch.setattr(node_cli, "open_manager", opened)
    code, out, err = run(capsys, "node", "remove", "n3", "--docker-host", "tcp://m:2375")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "node/n3 cordoned",
        "node/n3 drained: 0 of 0 tasks moved, none left",
        "swarm node swarm-3 removed from the Swarm",
        "node/n3 deleted",
        "lease/node-n3 deleted",
    ]
    assert (hosts, manager.removed) == (["tcp://m:2375"], ["swarm-3"])
    with open_store(url) as store:
        assert [n["metadata"]["name"] for n in store.list("Node").items] == ["n1", "n2"]
        assert store.list("Lease").items == []


def test_node_remove_without_a_reachable_manager(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    with open_store(url) as store:
        add_node(store, "n3", swarmNodeID="swarm-3")
    nowhere = "tcp://127.0.0.1:1"
    code, out, err = run(capsys, "node", "remove", "n3", "--docker-host", nowhere)
    assert code == 1
    assert err.startswith(f"error: cannot reach the Swarm manager at {nowhere}: ")
    assert err.splitlines()[-1] == "error: node/n3 not deleted (--force deletes the Node anyway)"
    code, out, err = run(capsys, "node", "remove", "n3", "--force", "--docker-host", nowhere)
    assert code == 0
    assert err.startswith(f"warning: cannot reach the Swarm manager at {nowhere}: ")
    assert out.splitlines() == ["node/n3 deleted"]
    with open_store(url) as store:
        assert "n3" not in [n["metadata"]["name"] for n in store.list("Node").items]


def test_node_remove_force_skips_the_drain(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    code, out, err = run(capsys, "node", "remove", "n1", "--force")
    assert code == 0
    assert err == "warning: removing node/n1 with 3 live tasks: hi-main, web-db, web-server\n"
    assert out.splitlines() == [
        "node/n1 has no Swarm node id: nothing to remove from the Swarm",
        "node/n1 deleted",
    ]
    with open_store(url) as store:
        assert store.list("Migration").items == []


# ------------------------------------------------------------------- describe, cluster


def test_describe_node_shows_swarm_facts_allocations_and_migration_holds(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster(url)
    with open_store(url) as store:
        node = store.get("Node", "n1")
        store.update({**node, "spec": {"unschedulable": True}})
        node = store.get("Node", "n1")
        status = {
            **node["status"],
            "role": "manager",
            "swarmNodeID": "abc123",
            "engineVersion": "27.1.0",
            "address": "10.0.0.1",
            "heartbeatTime": "2024-01-01T00:00:00Z",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AgentReady",
                    "message": "heartbeat ok",
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                }
            ],
            "allocated": {
                "cores": 3,
                "memory": 192 * MI,
                "cpuset": "0-2",
                "tasks": [
                    {"task": "hi-main", "job": "hi", "cpuset": "2", "memory": 64 * MI},
                    {
                        "task": "web-db",
                        "job": "web",
                        "cpuset": "1",
                        "memory": 64 * MI,
                        "migration": "web-db-x1",
                    },
                    {"task": "web-server", "job": "web", "cpuset": "0", "memory": 64 * MI},
                ],
            },
        }
        store.update_status({**node, "status": status})
    code, out, _ = run(capsys, "describe", "node", "n1")
    assert code == 0
    lines = out.splitlines()
    split = [line.split() for line in lines]
    assert ["Schedulable:", "no", "(cordoned)"] in split
    assert ["Role:", "manager"] in split
    assert ["Node", "ID:", "abc123"] in split
    assert ["Engine", "version:", "27.1.0"] in split
    assert ["Cores:", "3", "(0-2)"] in split
    allocations = lines.index("  Allocations:")
    assert split[allocations + 1] == ["TASK", "JOB", "CPUSET", "MEMORY", "HELD", "FOR"]
    assert split[allocations + 3] == ["web-db", "web", "1", "64Mi", "migration", "web-db-x1"]
    core_map = lines.index("Core map:")
    assert split[core_map + 2 : core_map + 6] == [
        ["0", "web-server"],
        ["1", "web-db", "(migration", "web-db-x1)"],
        ["2", "hi-main"],
        ["3", "<free>"],
    ]
    conditions = lines.index("Conditions:")
    assert split[conditions + 1][-2:] == ["LAST", "TRANSITION"]
    assert split[conditions + 2][:4] == ["Ready", "True", "AgentReady", "heartbeat"]
    assert split[conditions + 2][-1] == "2024-01-01T00:00:00Z"


def lease(name: str, holder: str, renewed: datetime, duration: int = 15) -> Object:
    return {
        "apiVersion": "swarmapply.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def test_cluster_info(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster(url)
    now = datetime.now(timezone.utc)
    with open_store(url) as store:
        node = store.get("Node", "n1")
        ready = [{"type": "Ready", "status": "True"}]
        store.update_status({**node, "status": {**node["status"], "conditions": ready}})
        node = store.get("Node", "n2")
        ready = [{"type": "Ready", "status": "False"}]
        store.update_status({**node, "status": {**node["status"], "conditions": ready}})
        store.create(lease("controller-scheduler", "host-1-abcde", now))
        store.create(lease("controller-migrator", "host-2-fghij", now - timedelta(minutes=5)))
        store.create(lease("controller-job", "", now))
        store.create(lease("node-n1", "agent-n1", now))  # not a controller
        store.create(
            {
                "apiVersion": "swarmapply.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": JOIN_LEASE,
                    "annotations": {
                        JOIN_TOKEN_ANNOTATION: "SWMTKN-secret",
                        MANAGER_ADDR_ANNOTATION: "10.0.0.1:2377",
                    },
                },
            }
        )
    assert run(capsys, "cordon", "n2")[0] == 0
    code, out, err = run(capsys, "cluster", "info")
    assert (code, err) == (0, "")
    assert "SWMTKN" not in out
    split = [line.split() for line in out.splitlines()]
    assert split[0] == ["Store:", url]
    assert split[1] == ["Swarm", "manager:", "10.0.0.1:2377"]
    assert split[2] == ["Nodes:", "2", "(1", "Ready,", "1", "NotReady,", "1", "cordoned)"]
    assert split[3] == ["Controllers:"]
    assert split[4] == ["NAME", "LEADER", "RENEWED", "STATE"]
    rows = {row[0]: (row[1], row[-1]) for row in split[5:]}
    assert rows == {
        "job": ("-", "leader"),  # "no leader"
        "migrator": ("host-2-fghij", "expired"),
        "scheduler": ("host-1-abcde", "alive"),
    }
    assert out.splitlines()[5].endswith("   no leader")
    assert "(5m ago)" in out.splitlines()[6]


def test_cluster_info_redacts_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_store(f"sqlite:///{tmp_path}/state.db").close()
    code, out, _ = run(capsys, "--store", f"sqlite:///{tmp_path}/state.db", "cluster", "info")
    assert code == 0
    assert out.splitlines()[1:] == [
        "Swarm manager:  <none published: no deployer has set up a Swarm>",
        "Nodes:          0 (0 Ready, 0 NotReady, 0 cordoned)",
        "Controllers:    <none has run against this store>",
    ]
    from swarmapply.api.store import redact_url

    assert redact_url("mongodb://u:pw@db/x") == "mongodb://u:***@db/x"


# ------------------------------------------------------------------------------ mongodb


@pytest.mark.mongodb
def test_cordon_and_drain_on_mongodb(
    mongodb_store_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    migrator: Any,
) -> None:
    monkeypatch.setenv("SWARMAPPLY_STORE", mongodb_store_url)
    cluster(mongodb_store_url)
    assert run(capsys, "cordon", "n2") == (0, "node/n2 cordoned\n", "")
    assert run(capsys, "uncordon", "n2") == (0, "node/n2 uncordoned\n", "")
    migrator(moves_all_but("web-db"))
    code, out, err = run(capsys, "drain", "n1", "--timeout", "10")
    assert code == 1
    assert "task hi-main: moved to node n2" in out.splitlines()
    assert "  web-db: Unschedulable: no node has 1 core" in err.splitlines()
