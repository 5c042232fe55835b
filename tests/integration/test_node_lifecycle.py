"""Node loss end to end with hollow nodes: heartbeats stop, tasks move, the node comes back.

The job controller, the scheduler, the node lifecycle controller and sim agents run on threads
against a real store (SQLite and the MongoDB protocol), with short intervals: agents heartbeat
every 0.25 s, a node is NotReady after a 1.5 s grace period and its tasks are given up 0.5 s
later. The lost node's agents run in a group of their own, so that it can be "killed" (stopped
without releasing its Lease, as SIGKILL leaves it) and started again on the same simulated
containers, or have its engine taken away while it keeps heartbeating.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmapply.agent.agent import NodeAgent
from swarmapply.agent.group import AgentGroup
from swarmapply.agent.model import TASK_NAME
from swarmapply.agent.sim import SimCluster
from swarmapply.api.store import NotFound, Store
from swarmapply.controllers.job import build as build_job_controller
from swarmapply.controllers.job_tasks import FINISHED, TASK_LABEL
from swarmapply.controllers.node_lifecycle import NodeLifecycleSettings
from swarmapply.controllers.node_lifecycle import build as build_node_lifecycle
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings

from .helpers import Running, in_thread, seconds_until, wait_for
from .scheduler_objects import GI, MI, assert_allocation_invariant, checked, job_object, task_entry
from .test_agent import CountingDriver, events_of

Object = dict[str, Any]

HEARTBEAT = 0.25
GRACE = 1.5
EVICTION = 0.5
LIFECYCLE = NodeLifecycleSettings(grace=GRACE, eviction_timeout=EVICTION, period=0.25)
#: Seconds a step of these tests may take at most (generous for a slow store).
STEP = 15.0
LOST = "sim-1"


class Node:
    """The agent group of one sim node that can be killed, started again or cut off."""

    def __init__(self, store: Store, cluster: SimCluster, name: str, cores: int = 4) -> None:
        self.store = store
        self.name = name
        self.driver = CountingDriver(cluster.add_node(name, cores, 8 * GI))
        self.stack = contextlib.ExitStack()
        self.agent: NodeAgent | None = None

    def start(self) -> None:
        self.agent = NodeAgent(
            self.store, self.driver, driver_name="sim", name=self.name,
            heartbeat=HEARTBEAT, resync=0.25,
        )  # fmt: skip
        group = AgentGroup(self.store, [self.agent], watch_timeout=0.2)
        self.stack.enter_context(in_thread(group.run, f"the agent of {self.name}"))

    def kill(self) -> None:
        """Stop the agent as SIGKILL would: its Lease is not released."""
        assert self.agent is not None
        self.agent.release = lambda: None  # type: ignore[method-assign]
        self.stack.close()

    def close(self) -> None:
        self.stack.close()


@contextlib.contextmanager
def cluster_of(store: Store, first: list[str], then: list[str]) -> Iterator[dict[str, Node]]:
    """The controllers and sim nodes; the ``first`` nodes start before the ``then`` ones, once
    the block has placed what it wants on them (see :func:`start`)."""
    cluster = SimCluster(poll=0.05)
    nodes = {name: Node(store, cluster, name) for name in first + then}
    settings = ControllerSettings(workers=1)
    with contextlib.ExitStack() as stack:
        for node in nodes.values():
            stack.callback(node.close)
        stack.enter_context(Running(build_job_controller(store, settings)))
        stack.enter_context(in_thread(Scheduler(store, watch_timeout=0.2).run, "the scheduler"))
        lifecycle = build_node_lifecycle(store, settings, lifecycle=LIFECYCLE)
        stack.enter_context(Running(lifecycle))
        for name in first:
            nodes[name].start()
        wait_for(lambda: all(ready(store, n) == "True" for n in first), STEP, f"{first} Ready")
        yield nodes


def start(store: Store, nodes: dict[str, Node], names: list[str]) -> None:
    for name in names:
        nodes[name].start()
    wait_for(lambda: all(ready(store, n) == "True" for n in names), STEP, f"{names} Ready")


def ready_condition(store: Store, node: str) -> Object | None:
    try:
        conditions = (store.get("Node", node).get("status") or {}).get("conditions") or []
    except NotFound:
        return None
    return next((c for c in conditions if c["type"] == "Ready"), None)


def ready(store: Store, node: str) -> str | None:
    condition = ready_condition(store, node)
    return None if condition is None else str(condition["status"])


def apply(store: Store, name: str, entries: list[Object], policy: str) -> None:
    job = job_object(name, entries)
    job["spec"]["restartPolicy"] = policy
    store.create(checked(job))


def tasks(store: Store, job: str) -> list[Object]:
    return store.list("Task", field_selector=f"spec.job={job}").items


def live(store: Store, job: str, entry: str) -> Object | None:
    """The live attempt of ``entry`` (the newest one not finished), if any."""
    found = [
        t
        for t in tasks(store, job)
        if t["metadata"]["labels"][TASK_LABEL] == entry
        and (t.get("status") or {}).get("phase") not in FINISHED
        and not t["metadata"].get("deletionTimestamp")
    ]
    return found[0] if len(found) == 1 else None


def running_task(store: Store, job: str, entry: str, node: str | None = None) -> Object:
    """The live attempt of ``entry``, once Running (on ``node``, or on any node but LOST)."""

    def check() -> Object | None:
        task = live(store, job, entry)
        status = (task or {}).get("status") or {}
        where = status.get("node")
        ok = status.get("phase") == "Running" and (where == node if node else where != LOST)
        return task if ok else None

    return wait_for(check, STEP, f"{job}/{entry} Running on {node or 'another node'}")


def job_status(store: Store, job: str) -> Object:
    return dict(store.get("Job", job).get("status") or {})


def containers(nodes: dict[str, Node], entry: str) -> dict[str, list[str]]:
    """Node -> states of the containers of task entry ``entry`` there."""
    found: dict[str, list[str]] = {}
    for name, node in nodes.items():
        for c in node.driver.inner.containers():
            if c.labels.get(TASK_NAME) == entry:
                found.setdefault(name, []).append(c.state)
    return found


def test_a_killed_agent_makes_its_node_not_ready_and_its_tasks_move(store: Store) -> None:
    with cluster_of(store, [LOST], ["sim-0", "sim-2"]) as nodes:
        apply(store, "web", [task_entry("a", 1, 64 * MI), task_entry("b", 1, 64 * MI)], "OnFailure")
        apply(store, "once", [task_entry("c", 1, 64 * MI)], "Never")
        before = {e: running_task(store, "web", e, LOST) for e in ("a", "b")}
        running_task(store, "once", "c", LOST)
        start(store, nodes, ["sim-0", "sim-2"])

        nodes[LOST].kill()
        killed = time.monotonic()
        detection = seconds_until(lambda: ready(store, LOST) == "False", STEP, "NotReady")
        condition = ready_condition(store, LOST)
        assert condition is not None and condition["reason"] == "NodeLost"
        assert "no heartbeat since" in condition["message"]
        # Within the grace period plus one heartbeat (and a little for the store and checks).
        assert detection < GRACE + HEARTBEAT + 1.0, detection

        after = {e: running_task(store, "web", e) for e in ("a", "b")}
        replaced = time.monotonic() - killed - detection
        print(f"\nsim: detection {detection:.2f}s, replacement {replaced:.2f}s")
        for e in ("a", "b"):
            assert after[e]["metadata"]["name"] != before[e]["metadata"]["name"]
            assert after[e]["metadata"]["annotations"]["swarmapply.io/failures"] == "1"
        node_events = events_of(store, store.get("Node", LOST))
        assert {"NodeNotReady", "TasksEvicted"} <= set(node_events)
        once = wait_for(
            lambda: (s := job_status(store, "once")).get("phase") == "Failed" and s, STEP,
            "the Never job to fail",
        )  # fmt: skip
        assert once["reason"] == "TaskFailed" and "NodeLost" in once["message"], once
        assert_allocation_invariant(store)

        # The node comes back: Ready again, the moved tasks' containers gone from it.
        nodes[LOST].start()
        wait_for(lambda: ready(store, LOST) == "True", STEP, "the node Ready again")
        for e in ("a", "b"):
            wait_for(
                lambda e=e: list(containers(nodes, e)) == [after[e]["status"]["node"]],  # type: ignore[misc]
                STEP,
                f"task {e}: one container, on its new node only",
            )
            assert containers(nodes, e)[after[e]["status"]["node"]] == ["running"]
            task = live(store, "web", e)
            assert task is not None and task["metadata"]["uid"] == after[e]["metadata"]["uid"]
        # The Never job's task stays Failed; its container must not keep running there.
        wait_for(lambda: containers(nodes, "c") == {}, STEP, "the lost task's container removed")
        assert_allocation_invariant(store)


def test_an_engine_outage_counts_as_not_ready_and_its_tasks_move(store: Store) -> None:
    with cluster_of(store, [LOST], ["sim-0"]) as nodes:
        apply(store, "svc", [task_entry("a", 2, 64 * MI)], "Always")
        before = running_task(store, "svc", "a", LOST)
        start(store, nodes, ["sim-0"])

        nodes[LOST].driver.down = True
        lease = store.get("Lease", f"node-{LOST}")["spec"]["renewTime"]
        down = seconds_until(lambda: ready(store, LOST) == "False", STEP, "NotReady")
        condition = ready_condition(store, LOST)
        assert condition is not None and condition["reason"] == "EngineUnavailable"
        after = running_task(store, "svc", "a", "sim-0")
        assert after["metadata"]["name"] != before["metadata"]["name"]
        # The agent kept heartbeating all along: only the engine was missing.
        assert store.get("Lease", f"node-{LOST}")["spec"]["renewTime"] != lease
        assert ready(store, LOST) == "False"
        lost = [
            t for t in tasks(store, "svc") if (t.get("status") or {}).get("reason") == "NodeLost"
        ]
        assert all(t["status"]["phase"] == "Failed" for t in lost)
        print(f"\nsim engine outage: NotReady after {down:.2f}s")

        nodes[LOST].driver.down = False
        wait_for(lambda: ready(store, LOST) == "True", STEP, "the node Ready again")
        wait_for(lambda: containers(nodes, "a") == {"sim-0": ["running"]}, STEP,
                 "one container, on sim-0 only")  # fmt: skip


def test_a_gang_job_waits_with_a_reason_until_it_can_be_made_whole(store: Store) -> None:
    with cluster_of(store, [LOST, "sim-0"], []) as nodes:
        entries = [
            task_entry("a", 1, 64 * MI, node=LOST),
            task_entry("b", 1, 64 * MI, node="sim-0"),
        ]
        apply(store, "gang", entries, "OnFailure")
        first_a = running_task(store, "gang", "a", LOST)
        b = running_task(store, "gang", "b", "sim-0")

        nodes[LOST].kill()
        wait_for(lambda: ready(store, LOST) == "False", STEP, "NotReady")
        waiting = wait_for(
            lambda: (s := job_status(store, "gang")).get("reason") == "Unschedulable" and s,
            STEP, "the job to wait for its lost task",
        )  # fmt: skip
        assert waiting["phase"] == "Pending", waiting
        replacement = live(store, "gang", "a")
        assert (
            replacement is not None
            and replacement["metadata"]["name"] != first_a["metadata"]["name"]
        )
        assert not (replacement.get("status") or {}).get("node")
        # The rest of the gang keeps its place and its container.
        still = live(store, "gang", "b")
        assert still is not None and still["status"]["containerID"] == b["status"]["containerID"]

        nodes[LOST].start()
        again = running_task(store, "gang", "a", LOST)
        assert again["metadata"]["uid"] == replacement["metadata"]["uid"]
        wait_for(lambda: job_status(store, "gang").get("phase") == "Running", STEP, "Running")
        wait_for(lambda: containers(nodes, "a") == {LOST: ["running"]}, STEP, "one container")
        assert_allocation_invariant(store)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_ready_node_is_never_touched(store: Store) -> None:
    with cluster_of(store, [LOST], []):
        apply(store, "stay", [task_entry("a", 1, 64 * MI)], "OnFailure")
        task = running_task(store, "stay", "a", LOST)
        time.sleep(GRACE + EVICTION + 0.5)  # what is asserted is that nothing happens
        assert ready(store, LOST) == "True"
        now = live(store, "stay", "a")
        assert now is not None and now["metadata"]["uid"] == task["metadata"]["uid"]
        assert now["status"]["phase"] == "Running"
        assert "NodeNotReady" not in events_of(store, store.get("Node", LOST))
