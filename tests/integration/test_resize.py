"""Live resize end to end on a real store: Job edit -> job controller -> scheduler -> sim agent.

The job controller, the scheduler and a group of sim agents run on threads against a real
store (SQLite and the MongoDB protocol). Changing a running task's cores or memory in its Job
updates the Task in place; the scheduler re-fits it on its node; the agent changes the running
container's limits without starting it again. A resize that does not fit waits with a reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from swarmapply.agent.sim import SimCluster
from swarmapply.api.store import Conflict, NotFound, Store
from swarmapply.controllers.conditions import find_condition
from swarmapply.controllers.job import build as build_job_controller
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings

from .helpers import Running, in_thread, wait_for
from .scheduler_objects import (
    GI,
    MI,
    assert_allocation_invariant,
    checked,
    job_object,
    task_entry,
)
from .test_agent import running, sim_group

Object = dict[str, Any]


@contextlib.contextmanager
def control_plane(store: Store, nodes: list[str], cores: int = 4) -> Iterator[SimCluster]:
    """The job controller, the scheduler and sim agents for ``nodes``, on threads."""
    cluster = SimCluster(poll=0.05)
    group = sim_group(store, cluster, nodes, cores=cores, heartbeat=5.0)
    job_controller = build_job_controller(store, ControllerSettings(workers=1))
    with (
        running(group),
        Running(job_controller),
        in_thread(Scheduler(store, watch_timeout=0.2).run, "the scheduler"),
    ):
        yield cluster


def edit_task(store: Store, job: str, **changes: Any) -> None:
    """Change the first task entry of ``job`` (compare-and-swap, retried)."""
    for _ in range(10):
        obj = store.get("Job", job)
        obj["spec"]["tasks"][0].update(changes)
        try:
            store.update(checked(obj))
            return
        except Conflict:
            continue
    raise AssertionError(f"job {job} kept changing")


def status(store: Store, task: str) -> Object:
    """A Task's status; empty while the job controller has not created it."""
    try:
        return dict(store.get("Task", task).get("status") or {})
    except NotFound:
        return {}


def test_a_running_task_is_resized_in_place_and_a_resize_that_does_not_fit_waits(
    store: Store,
) -> None:
    with control_plane(store, ["sim-0"]) as cluster:
        store.create(checked(job_object("grow", [task_entry("a", 1, 64 * MI)])))
        first = wait_for(
            lambda: (s := status(store, "grow-a")).get("phase") == "Running" and s,
            what="grow-a Running",
        )
        assert first["cpuset"] == "0"
        driver = cluster.node("sim-0")

        edit_task(store, "grow", cores=3, memory=256 * MI)
        grown = wait_for(
            lambda: (s := status(store, "grow-a")).get("cpuset") == "0-2" and s,
            what="grow-a re-fitted to cores 0-2",
        )
        assert grown["memory"] == 256 * MI
        assert grown["containerID"] == first["containerID"]  # not started again
        assert grown["startTime"] == first["startTime"]
        resized = find_condition(grown, "Resized")
        assert resized is not None and resized["status"] == "True"
        wait_for(
            lambda: [(c.cpuset, c.memory) for c in driver.containers()] == [("0-2", 256 * MI)],
            what="the container's limits changed in place",
        )
        assert_allocation_invariant(store)

        # Another job takes the last core; growing to 4 cores must wait, keeping 0-2.
        store.create(checked(job_object("other", [task_entry("b", 1, 64 * MI)])))
        wait_for(lambda: status(store, "other-b").get("phase") == "Running", what="other-b")
        edit_task(store, "grow", cores=4)
        waiting = wait_for(
            lambda: (
                (c := find_condition(status(store, "grow-a"), "Resized"))
                and c["status"] == "False"
                and c
            ),
            what="a Resized=False condition",
        )
        assert waiting["reason"] == "InsufficientResources"
        assert "needs 1 more core on node sim-0, which has 0 free" in waiting["message"]
        assert status(store, "grow-a")["cpuset"] == "0-2"

        # Shrinking keeps the lowest cores and frees the others at once.
        edit_task(store, "grow", cores=1, memory=64 * MI)
        wait_for(lambda: status(store, "grow-a").get("cpuset") == "0", what="shrunk to core 0")
        wait_for(
            lambda: [c.cpuset for c in driver.containers() if c.task == "grow-a"] == ["0"],
            what="the container shrunk in place",
        )
        assert status(store, "grow-a")["containerID"] == first["containerID"]
        assert_allocation_invariant(store)


def test_memory_growth_beyond_the_node_waits(store: Store) -> None:
    with control_plane(store, ["sim-0"]):
        store.create(checked(job_object("mem", [task_entry("a", 1, 1 * GI)])))
        wait_for(lambda: status(store, "mem-a").get("phase") == "Running", what="mem-a Running")
        edit_task(store, "mem", memory=9 * GI)
        condition = wait_for(
            lambda: (
                (c := find_condition(status(store, "mem-a"), "Resized"))
                and c["status"] == "False"
                and c
            ),
            what="a Resized=False condition",
        )
        assert "needs 8Gi more memory on node sim-0" in condition["message"]
        assert status(store, "mem-a")["memory"] == 1 * GI
