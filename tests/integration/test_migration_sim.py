"""Migrations end to end on a real store with hollow nodes: every controller and the agents.

The job controller, the scheduler, the migrator and a group of sim agents run on threads
against a real store (SQLite and the MongoDB protocol). The sim driver cannot checkpoint, so
``live`` fails (the task stays where it was), ``auto`` falls back to cold with an Event, and
``cold`` moves the task. The allocation invariant — including the cores a Migration holds on
both nodes while a task moves — is checked at every observation along the way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from swarmapply.agent.sim import SimCluster
from swarmapply.api.store import NotFound, Store
from swarmapply.controllers.job import build as build_job_controller
from swarmapply.controllers.migrator import build as build_migrator
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings, MigratorSettings

from .helpers import Running, in_thread, wait_for
from .scheduler_objects import (
    API_VERSION,
    MI,
    assert_allocation_invariant,
    checked,
    job_object,
    task_entry,
)
from .test_agent import events_of, running, sim_group

Object = dict[str, Any]
T = TypeVar("T")
NODES = ["sim-0", "sim-1", "sim-2"]


@contextlib.contextmanager
def control_plane(store: Store, cores: int = 4) -> Iterator[SimCluster]:
    """Every controller and three sim nodes, on threads."""
    cluster = SimCluster(poll=0.05)
    group = sim_group(store, cluster, NODES, cores=cores, heartbeat=1.0)
    settings = ControllerSettings(workers=1, migrator=MigratorSettings(step_timeout=10.0))
    migrator = build_migrator(store, settings)
    with (
        running(group),
        Running(build_job_controller(store, settings)),
        in_thread(Scheduler(store, watch_timeout=0.2).run, "the scheduler"),
        in_thread(migrator.run, "the migrator"),
    ):
        yield cluster


def checking(store: Store, check: Callable[[], T]) -> Callable[[], T]:
    """``check``, asserting the allocation invariant every time it is polled."""

    def wrapped() -> T:
        assert_allocation_invariant(store)
        return check()

    return wrapped


def status(store: Store, kind: str, name: str) -> Object:
    try:
        return dict(store.get(kind, name).get("status") or {})
    except NotFound:
        return {}


def migrate(store: Store, name: str, **spec: Any) -> Object:
    obj = {"apiVersion": API_VERSION, "kind": "Migration", "metadata": {"name": name}}
    return store.create(checked({**obj, "spec": spec}))


def finished(store: Store, name: str, timeout: float = 20.0) -> Object:
    """The Migration's final status, checking the invariant while it runs."""
    return wait_for(
        checking(
            store,
            lambda: (
                (s := status(store, "Migration", name)).get("phase") in ("Succeeded", "Failed")
                and s
            ),
        ),
        timeout,
        f"migration {name} to finish",
    )


def running_task(store: Store, name: str) -> Object:
    return wait_for(
        lambda: (
            (s := status(store, "Task", name)).get("phase") == "Running"
            and s.get("containerID")
            and s
        ),
        what=f"task {name} Running",
    )


def where(cluster: SimCluster, task: str) -> dict[str, list[str]]:
    """Node -> cpusets of the task's containers there."""
    found: dict[str, list[str]] = {}
    for node in NODES:
        for container in cluster.node(node).containers():
            if container.task == task:
                found.setdefault(node, []).append(container.cpuset)
    return found


def test_cold_migration_moves_a_running_task_and_frees_its_old_cores(store: Store) -> None:
    with control_plane(store) as cluster:
        store.create(checked(job_object("move", [task_entry("a", 2, 64 * MI)])))
        before = running_task(store, "move-a")
        uid = store.get("Task", "move-a")["metadata"]["uid"]
        target = next(n for n in NODES if n != before["node"])
        migrate(store, "move-a-1", task="move-a", toNode=target, mode="cold")
        done = finished(store, "move-a-1")
        assert done["phase"] == "Succeeded", done
        assert done["mode"] == "cold"
        assert done["sourceNode"] == before["node"] and done["targetNode"] == target
        assert {"reserve", "stop", "start", "total"} <= set(done["timings"])
        after = running_task(store, "move-a")
        task = store.get("Task", "move-a")
        assert task["metadata"]["uid"] == uid  # the same Task, moved
        assert after["node"] == target and after["cpuset"] == done["targetCpuset"]
        assert after["containerID"] != before["containerID"]
        assert "migration" not in after
        wait_for(
            lambda: where(cluster, "move-a") == {target: [done["targetCpuset"]]},
            what="one container, on the target only",
        )
        wait_for(
            lambda: not store.get("Node", before["node"])["status"]["allocated"]["tasks"],
            what="the source's cores given back",
        )
        assert_allocation_invariant(store)
        assert "Migrated" in events_of(store, store.get("Migration", "move-a-1"))


def test_auto_falls_back_to_cold_when_the_node_cannot_checkpoint(store: Store) -> None:
    with control_plane(store):
        store.create(checked(job_object("auto", [task_entry("a", 1, 64 * MI)])))
        before = running_task(store, "auto-a")
        migrate(store, "auto-a-1", task="auto-a")
        done = finished(store, "auto-a-1")
        assert done["phase"] == "Succeeded", done
        assert done["mode"] == "cold"
        assert done["targetNode"] != before["node"]
        migration = store.get("Migration", "auto-a-1")
        assert "FellBackToCold" in events_of(store, migration)
        assert running_task(store, "auto-a")["node"] == done["targetNode"]


def test_live_on_a_node_that_cannot_checkpoint_fails_and_leaves_the_task_running(
    store: Store,
) -> None:
    with control_plane(store) as cluster:
        store.create(checked(job_object("live", [task_entry("a", 1, 64 * MI)])))
        before = running_task(store, "live-a")
        migrate(store, "live-a-1", task="live-a", mode="live")
        done = finished(store, "live-a-1")
        assert done["phase"] == "Failed"
        assert "CheckpointUnsupported" in done["message"]
        after = status(store, "Task", "live-a")
        assert after["phase"] == "Running" and after["containerID"] == before["containerID"]
        assert after["node"] == before["node"] and "migration" not in after
        assert where(cluster, "live-a") == {before["node"]: [before["cpuset"]]}
        target = done["targetNode"]
        wait_for(
            lambda: not store.get("Node", target)["status"]["allocated"]["tasks"],
            what="the reservation released",
        )


def test_a_whole_job_moves_to_one_node(store: Store) -> None:
    with control_plane(store) as cluster:
        entries = [
            task_entry("a", 1, 64 * MI, node="sim-0"),
            task_entry("b", 2, 64 * MI, node="sim-1"),
        ]
        store.create(checked(job_object("pair", entries)))
        for name in ("pair-a", "pair-b"):
            running_task(store, name)
        migrate(store, "pair-1", job="pair", toNode="sim-2", mode="cold")
        done = finished(store, "pair-1")
        assert done["phase"] == "Succeeded", done
        assert [e["targetNode"] for e in done["tasks"]] == ["sim-2", "sim-2"]
        for name in ("pair-a", "pair-b"):
            assert running_task(store, name)["node"] == "sim-2"
            assert list(where(cluster, name)) == ["sim-2"]


def test_a_migration_without_room_fails_and_nothing_moves(store: Store) -> None:
    with control_plane(store, cores=2):
        store.create(checked(job_object("big", [task_entry("a", 2, 64 * MI, node="sim-0")])))
        store.create(checked(job_object("fill", [task_entry("b", 2, 64 * MI, node="sim-1")])))
        before = running_task(store, "big-a")
        running_task(store, "fill-b")
        migrate(store, "big-a-1", task="big-a", toNode="sim-1")
        done = finished(store, "big-a-1")
        assert done["phase"] == "Failed" and done["reason"] == "Unschedulable"
        assert status(store, "Task", "big-a")["containerID"] == before["containerID"]
        migrate(store, "big-a-2", task="nosuch")
        assert finished(store, "big-a-2")["reason"] == "InvalidMigration"


def test_many_migrations_at_once_each_task_runs_once_and_no_core_is_given_twice(
    store: Store,
) -> None:
    with control_plane(store, cores=16) as cluster:
        jobs = [f"many-{i}" for i in range(12)]
        for job in jobs:
            store.create(checked(job_object(job, [task_entry("a", 1, 64 * MI, node="sim-0")])))
        for job in jobs:
            running_task(store, f"{job}-a")
        for job in jobs:  # half to sim-1, half wherever the scheduler finds room
            spec: dict[str, Any] = {"task": f"{job}-a", "mode": "cold"}
            if int(job.rsplit("-", 1)[1]) % 2 == 0:
                spec["toNode"] = "sim-1"
            migrate(store, f"{job}-m", **spec)
        results = [finished(store, f"{job}-m", 60) for job in jobs]
        assert [r["phase"] for r in results] == ["Succeeded"] * len(jobs), results
        for job, result in zip(jobs, results, strict=True):
            task = running_task(store, f"{job}-a")
            assert task["node"] == result["targetNode"] != "sim-0"
            assert where(cluster, f"{job}-a") == {task["node"]: [task["cpuset"]]}
        assert_allocation_invariant(store)


def test_two_migrations_of_one_task_move_it_once_and_a_deleted_one_is_released(
    store: Store,
) -> None:
    with control_plane(store) as cluster:
        store.create(checked(job_object("twice", [task_entry("a", 1, 64 * MI)])))
        before = running_task(store, "twice-a")
        migrate(store, "twice-1", task="twice-a", mode="cold")
        migrate(store, "twice-2", task="twice-a", mode="cold")
        results = {name: finished(store, name) for name in ("twice-1", "twice-2")}
        phases = sorted(r["phase"] for r in results.values())
        assert phases == ["Failed", "Succeeded"], results
        [failed] = [r for r in results.values() if r["phase"] == "Failed"]
        assert "being moved" in failed["message"]
        after = running_task(store, "twice-a")
        assert after["node"] != before["node"]
        assert list(where(cluster, "twice-a")) == [after["node"]]
        for name in ("twice-1", "twice-2"):  # finished: the migrator lets them go
            wait_for(
                lambda n=name: not store.get("Migration", n)["metadata"].get("finalizers"),
                what=f"migration {name} released",
            )
            store.delete("Migration", name)
            with pytest.raises(NotFound):
                store.get("Migration", name)
