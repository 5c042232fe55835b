"""The node agent loop on a real store: sim nodes (both backends) and the docker driver.

Sim tests run an :class:`AgentGroup` of hollow nodes on a thread against a real store and
check what an operator would see there: Nodes registered Ready with their capacity, Tasks
going Running and Succeeded, containers removed with their Task, adoption after a restart
(counted driver starts), heartbeats, engine outages on the Node's condition, refusals. The
docker tests drive one :class:`NodeAgent` with the real engine and remove every container and
network they make.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from swarmapply.agent.agent import NodeAgent, lease_name
from swarmapply.agent.driver import EngineUnavailable
from swarmapply.agent.group import AgentGroup
from swarmapply.agent.model import NODE_NAME, ContainerSpec, NodeInfo, Observed
from swarmapply.agent.sim import SimCluster, SimDriver
from swarmapply.api.store import NotFound, Store
from swarmapply.cli.main import main
from swarmapply.controllers.lease import acquired_lease, timestamp_now
from swarmapply.controllers.scheduler import Scheduler

from .helpers import in_thread, wait_for
from .scheduler_objects import (
    API_VERSION,
    GI,
    MI,
    assert_allocation_invariant,
    checked,
    job_object,
    task_entry,
)

Object = dict[str, Any]

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


class CountingDriver:
    """A sim driver that counts ``start`` calls and can pretend its engine is down."""

    def __init__(self, inner: SimDriver) -> None:
        self.inner = inner
        self.starts = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise EngineUnavailable("engine at sim:// is not answering (test)")

    def info(self) -> NodeInfo:
        self._check()
        return self.inner.info()

    def containers(self) -> list[Observed]:
        self._check()
        return self.inner.containers()

    def start(self, spec: ContainerSpec) -> Observed:
        self._check()
        self.starts += 1
        return self.inner.start(spec)

    def update(self, container_id: str, cpuset: str, memory: int) -> None:
        self._check()
        self.inner.update(container_id, cpuset, memory)

    def remove(self, container_id: str) -> None:
        self._check()
        self.inner.remove(container_id)

    def checkpoint(self, container_id: str, directory: str, *, leave_running: bool) -> int:
        self._check()
        return self.inner.checkpoint(container_id, directory, leave_running=leave_running)

    def restore(self, spec: ContainerSpec, directory: str) -> Observed:
        self._check()
        return self.inner.restore(spec, directory)

    def events(self, stop: threading.Event) -> Iterator[str]:
        return self.inner.events(stop)


@contextmanager
def running(group: AgentGroup) -> Iterator[AgentGroup]:
    """Runs ``group`` on a thread for the duration of the block; stops and joins it after."""
    with in_thread(group.run, "the agent group", 10):
        yield group


def sim_group(
    store: Store, cluster: SimCluster, names: list[str], *, cores: int = 4, **kw: Any
) -> AgentGroup:
    agents = [
        NodeAgent(store, cluster.add_node(n, cores, 8 * GI), driver_name="sim", **kw) for n in names
    ]
    return AgentGroup(store, agents, watch_timeout=0.2)


def make_job(store: Store, name: str, tasks: list[Object]) -> Object:
    """A Job and its Tasks (as the job controller would create them), Tasks with commands."""
    entries = [task_entry(t["name"], t.get("cores", 1), t.get("memory", 64 * MI)) for t in tasks]
    job = store.create(job_object(name, entries))
    for entry, t in zip(entries, tasks, strict=True):
        spec: Object = {
            "job": name,
            "image": "busybox",
            "cores": entry["cores"],
            "memory": entry["memory"],
        }
        if "command" in t:
            spec["command"] = t["command"]
        store.create(
            checked(
                {
                    "apiVersion": API_VERSION,
                    "kind": "Task",
                    "metadata": {
                        "name": f"{name}-{t['name']}",
                        "labels": {"swarmapply.io/job": name, "swarmapply.io/task": t["name"]},
                        "ownerReferences": [
                            {
                                "apiVersion": API_VERSION,
                                "kind": "Job",
                                "name": name,
                                "uid": job["metadata"]["uid"],
                                "controller": True,
                            }
                        ],
                    },
                    "spec": spec,
                }
            )
        )
    return job


def bound_task(
    store: Store, name: str, node: str, cpuset: str, command: list[str] | None = None
) -> Object:
    """A Task bound by hand to ``node``/``cpuset`` (phase Scheduled), as the scheduler would."""
    spec: Object = {"job": "manual", "image": "busybox", "cores": 1, "memory": 16 * MI}
    if command is not None:
        spec["command"] = command
    created = store.create(
        checked(
            {"apiVersion": API_VERSION, "kind": "Task", "metadata": {"name": name}, "spec": spec}
        )
    )
    status = {"phase": "Scheduled", "node": node, "cpuset": cpuset, "memory": 16 * MI}
    return store.update_status(checked({**created, "status": status}))


def phase(store: Store, task: str) -> str | None:
    try:
        return (store.get("Task", task).get("status") or {}).get("phase")
    except NotFound:
        return None


def ready(node: Object) -> str | None:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition["status"])
    return None


def events_of(store: Store, task: Object) -> list[str]:
    uid = task["metadata"]["uid"]
    return [
        e["reason"] for e in store.list("Event", field_selector=f"involvedObject.uid={uid}").items
    ]


# --------------------------------------------------------------------------- sim driver


def test_sim_nodes_register_and_run_a_scheduled_job(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    group = sim_group(store, cluster, ["sim-0", "sim-1", "sim-2"], heartbeat=5.0)
    with running(group):
        nodes = wait_for(
            lambda: (
                len(n := [x for x in store.list("Node").items if ready(x) == "True"]) == 3 and n
            ),
            what="3 Ready Nodes",
        )
        for node in nodes:
            checked(node)
            assert node["status"]["capacity"] == {
                "cores": 4,
                "memory": 8 * GI,
                "coreIds": [0, 1, 2, 3],
            }
            assert node["status"]["driver"] == "sim"
            assert node["status"]["heartbeatTime"]
        make_job(store, "hello", [{"name": "a", "command": ["sleep", "1"]}, {"name": "b"}])
        assert Scheduler(store).schedule_once() == 2
        wait_for(lambda: phase(store, "hello-a") == "Running", what="hello-a Running")
        task = store.get("Task", "hello-a")
        assert task["status"]["containerID"].startswith("sim-")
        assert task["status"]["startTime"]
        assert "Started" in wait_for(lambda: events_of(store, task), what="a Started event")
        wait_for(lambda: phase(store, "hello-a") == "Succeeded", 5, what="hello-a Succeeded")
        done = store.get("Task", "hello-a")["status"]
        assert done["exitCode"] == 0 and done["reason"] == "Completed" and done["finishTime"]
        assert phase(store, "hello-b") == "Running"  # no duration: runs until removed
        assert_allocation_invariant(store)
        # The scheduler's allocation view survives the agent's heartbeats.
        Scheduler(store).schedule_once()
        b_node = store.get("Task", "hello-b")["status"]["node"]
        assert store.get("Node", b_node)["status"].get("allocated", {}).get("cores") == 1


@SQLITE_ONLY
def test_deleted_task_has_its_container_removed(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    with running(sim_group(store, cluster, ["sim-0"])):
        bound_task(store, "forever", "sim-0", "2")
        wait_for(lambda: phase(store, "forever") == "Running", what="forever Running")
        assert len(cluster.node("sim-0").containers()) == 1
        store.delete("Task", "forever")
        wait_for(lambda: not cluster.node("sim-0").containers(), what="the container removed")


@SQLITE_ONLY
def test_restarted_agent_adopts_containers_and_reports_what_ended_meanwhile(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    names = ["sim-0", "sim-1"]
    drivers = {n: CountingDriver(cluster.add_node(n, 4, 8 * GI)) for n in names}

    def group() -> AgentGroup:
        return AgentGroup(
            store,
            [NodeAgent(store, d, driver_name="sim", resync=0.2) for d in drivers.values()],
            watch_timeout=0.2,
        )

    with running(group()):
        for i in range(4):
            bound_task(store, f"t{i}", names[i % 2], str(i // 2))
        wait_for(
            lambda: all(phase(store, f"t{i}") == "Running" for i in range(4)), what="4 Running"
        )
    assert sum(d.starts for d in drivers.values()) == 4
    ended = store.get("Task", "t0")
    cluster.fail(ended["metadata"]["uid"], exit_code=3)  # dies while no agent runs
    before = {d: drivers[d].starts for d in drivers}
    restarted = group()
    with running(restarted):
        wait_for(lambda: phase(store, "t0") == "Failed", what="t0 reported Failed")
        wait_for(lambda: all(a.rounds >= 2 for a in restarted.agents), what="two rounds each")
    assert {d: drivers[d].starts for d in drivers} == before, "a restarted agent started again"
    assert store.get("Task", "t0")["status"]["exitCode"] == 3
    assert [phase(store, f"t{i}") for i in (1, 2, 3)] == ["Running"] * 3
    assert cluster.running() == 3
    for d in drivers.values():  # one container per task, no duplicates
        uids = [c.task_uid for c in d.containers()]
        assert len(uids) == len(set(uids))


@SQLITE_ONLY
def test_heartbeat_lease_is_renewed(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    group = sim_group(store, cluster, ["sim-0"], heartbeat=0.2, identity="agent-test")
    with running(group):
        first = wait_for(lambda: _lease(store, "sim-0"), what="the heartbeat Lease")
        assert first["spec"]["holderIdentity"] == "agent-test"
        renewed = wait_for(
            lambda: (
                (lease := _lease(store, "sim-0"))
                and lease["spec"]["renewTime"] != first["spec"]["renewTime"]
                and lease
            ),
            what="a renewal",
        )
        assert renewed["spec"]["leaseDurationSeconds"] >= 1
        assert store.get("Node", "sim-0")["status"]["heartbeatTime"]


def _lease(store: Store, node: str) -> Object | None:
    try:
        return store.get("Lease", lease_name(node))
    except NotFound:
        return None


@SQLITE_ONLY
def test_engine_outage_marks_the_node_not_ready_until_it_answers(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    driver = CountingDriver(cluster.add_node("sim-0", 4, 8 * GI))
    agent = NodeAgent(store, driver, driver_name="sim", heartbeat=0.2, resync=0.2)
    with running(AgentGroup(store, [agent], watch_timeout=0.2)):
        wait_for(lambda: _ready(store, "sim-0") == "True", what="Ready")
        driver.down = True
        bound_task(store, "waits", "sim-0", "0")
        wait_for(lambda: _ready(store, "sim-0") == "False", what="NotReady on the outage")
        conditions = store.get("Node", "sim-0")["status"]["conditions"]
        condition = next(c for c in conditions if c["type"] == "Ready")
        assert condition["reason"] == "EngineUnavailable"
        assert "not answering" in condition["message"]
        assert phase(store, "waits") == "Scheduled"
        driver.down = False
        wait_for(lambda: _ready(store, "sim-0") == "True", 5, what="Ready again")
        wait_for(lambda: phase(store, "waits") == "Running", 5, what="the task started after")


def _ready(store: Store, node: str) -> str | None:
    try:
        return ready(store.get("Node", node))
    except NotFound:
        return None


def _holder(store: Store, node: str) -> str | None:
    lease = _lease(store, node)
    return None if lease is None else str(lease["spec"].get("holderIdentity", ""))


@SQLITE_ONLY
def test_a_second_agent_of_a_node_stands_by_and_takes_over_when_the_first_stops(
    store: Store,
) -> None:
    first_engine, second_engine = SimCluster(poll=0.05), SimCluster(poll=0.05)
    first = sim_group(store, first_engine, ["sim-0"], heartbeat=0.2, identity="first")
    second = sim_group(store, second_engine, ["sim-0"], heartbeat=0.2, identity="second")
    with ExitStack() as later, ExitStack() as earlier:
        earlier.enter_context(running(first))
        wait_for(lambda: _holder(store, "sim-0") == "first", what="the first agent's Lease")
        later.enter_context(running(second))
        bound_task(store, "once", "sim-0", "0", ["sleep", "60"])
        wait_for(lambda: phase(store, "once") == "Running", what="Running")
        time.sleep(0.6)  # three heartbeats of the agent that stands by
        assert _holder(store, "sim-0") == "first"
        assert len(first_engine.node("sim-0").containers()) == 1
        assert second_engine.node("sim-0").containers() == [], "the standby ran nothing"
        earlier.close()  # a clean stop releases the Lease: the other takes over at once
        wait_for(lambda: _holder(store, "sim-0") == "second", 3, "the takeover")
        # Another engine: the task's container is not there, which it reports.
        wait_for(lambda: phase(store, "once") == "Failed", 5, "ContainerLost")
        assert store.get("Task", "once")["status"]["reason"] == "ContainerLost"


@SQLITE_ONLY
def test_an_agent_waits_for_a_crashed_holders_lease_to_expire(store: Store) -> None:
    ghost = acquired_lease(None, lease_name("sim-0"), "ghost", 1, timestamp_now())
    store.create(ghost)
    cluster = SimCluster(poll=0.05)
    group = sim_group(store, cluster, ["sim-0"], heartbeat=0.2, identity="next")
    started = time.monotonic()
    with running(group):
        time.sleep(0.5)
        assert _holder(store, "sim-0") == "ghost"
        with pytest.raises(NotFound):
            store.get("Node", "sim-0")  # nothing written while it stands by
        wait_for(lambda: _holder(store, "sim-0") == "next", 5, "the takeover after expiry")
        assert time.monotonic() - started >= 1.0
        wait_for(lambda: _ready(store, "sim-0") == "True", what="Ready")
    assert _holder(store, "sim-0") == "", "released on a clean stop"


@SQLITE_ONLY
def test_refused_tasks_fail_with_the_reason(store: Store) -> None:
    cluster = SimCluster(poll=0.05)
    with running(sim_group(store, cluster, ["sim-0"])):
        task = bound_task(store, "no-such-core", "sim-0", "7")
        wait_for(lambda: phase(store, "no-such-core") == "Failed", what="Failed")
        status = store.get("Task", "no-such-core")["status"]
        assert status["reason"] == "InvalidSpec"
        assert "names cores sim node sim-0 does not have" in status["message"]
        assert "Refused" in wait_for(lambda: events_of(store, task), what="a Refused event")
        assert not cluster.node("sim-0").containers()


@SQLITE_ONLY
def test_200_sim_nodes_converge_2000_tasks(store: Store) -> None:
    cluster = SimCluster(poll=0.2)
    names = [f"sim-{i}" for i in range(200)]
    group = sim_group(store, cluster, names, cores=10)
    for i in range(2000):
        bound_task(store, f"t{i:04d}", names[i % 200], str(i // 200))
    with running(group):
        started = time.monotonic()
        wait_for(
            lambda: len(store.list("Task", field_selector="status.phase=Running").items) == 2000,
            60,
            what="2000 tasks Running",
            interval=0.1,
        )
        seconds = time.monotonic() - started
    print(f"200 sim nodes x 2000 tasks: all Running in {seconds:.2f}s")
    assert cluster.running() == 2000
    assert group.starts == 2000
    assert seconds < 30


# --------------------------------------------------------------------------- docker driver


@pytest.fixture
def docker_node(docker_client: Any, test_image: str) -> Iterator[tuple[str, str]]:
    """A node name of the test's own and a user-defined bridge network; both cleaned up."""
    from swarmapply.agent.docker_driver import DockerDriver  # noqa: F401  (needs docker-py)

    node = f"agent-test-{uuid.uuid4().hex[:8]}"
    network = f"agent-test-net-{uuid.uuid4().hex[:8]}"
    docker_client.api.create_network(network, driver="bridge")
    yield node, network
    for entry in docker_client.api.containers(all=True, filters={"label": f"{NODE_NAME}={node}"}):
        docker_client.api.remove_container(entry["Id"], force=True, v=True)
    docker_client.api.remove_network(network)


def docker_task(
    store: Store, name: str, node: str, network: str, image: str, command: list[str]
) -> Object:
    spec: Object = {
        "job": "dock",
        "image": image,
        "cores": 1,
        "memory": 16 * MI,
        "command": command,
        "network": network,
    }
    created = store.create(
        checked(
            {"apiVersion": API_VERSION, "kind": "Task", "metadata": {"name": name}, "spec": spec}
        )
    )
    status = {"phase": "Scheduled", "node": node, "cpuset": "0", "memory": 16 * MI}
    return store.update_status(checked({**created, "status": status}))


@pytest.mark.docker
@SQLITE_ONLY
def test_docker_agent_runs_fails_removes_and_adopts(
    store: Store, docker_client: Any, test_image: str, docker_node: tuple[str, str]
) -> None:
    from swarmapply.agent.docker_driver import DockerDriver

    node, network = docker_node
    label = {"label": f"{NODE_NAME}={node}"}

    def agent() -> NodeAgent:
        driver = DockerDriver(docker_client, name=node, pull=False)
        return NodeAgent(store, driver, driver_name="docker", name=node, resync=0.5)

    first = agent()
    with running(AgentGroup(store, [first], watch_timeout=0.2)):
        wait_for(lambda: _ready(store, node) == "True", what="the docker Node Ready")
        assert store.get("Node", node)["status"]["driver"] == "docker"
        docker_task(store, "exits", node, network, test_image, ["sh", "-c", "exit 3"])
        docker_task(store, "sleeps", node, network, test_image, ["sleep", "30"])
        wait_for(lambda: phase(store, "exits") == "Failed", 15, what="exits Failed")
        assert store.get("Task", "exits")["status"]["exitCode"] == 3
        wait_for(lambda: phase(store, "sleeps") == "Running", 15, what="sleeps Running")
    running_id = store.get("Task", "sleeps")["status"]["containerID"]
    assert first.starts == 2
    second = agent()
    with running(AgentGroup(store, [second], watch_timeout=0.2)):
        wait_for(lambda: second.rounds >= 2, 10, what="two rounds of the restarted agent")
        assert second.starts == 0
        assert len(docker_client.api.containers(all=True, filters=label)) == 2
        assert store.get("Task", "sleeps")["status"]["containerID"] == running_id
        store.delete("Task", "sleeps")
        wait_for(
            lambda: all(
                c["Id"] != running_id for c in docker_client.api.containers(all=True, filters=label)
            ),
            15,
            what="the sleeping container removed",
        )


# --------------------------------------------------------------------------- the command


@SQLITE_ONLY
def test_agent_command_runs_sim_nodes_and_stops_on_sigterm(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    command = [sys.executable, "-m", "swarmapply", "agent", "--driver", "sim", "--nodes", "3"]
    command += ["--cores", "2", "--memory", "1Gi", "--store", store_url, "--heartbeat", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: (
                len([n for n in store.list("Node").items if ready(n) == "True"]) == 3
                or process.poll() is not None
            ),
            15,
            what="3 Ready sim Nodes",
        )
        assert process.poll() is None, log.read_text()
        node = store.get("Node", "sim-2")
        assert node["status"]["capacity"] == {"cores": 2, "memory": GI, "coreIds": [0, 1]}
        bound_task(store, "cli-task", "sim-1", "1", ["sleep", "0.2"])
        wait_for(lambda: phase(store, "cli-task") == "Succeeded", 10, what="cli-task Succeeded")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = log.read_text()
    assert "node sim-1: started task cli-task" in output
    assert "SIGTERM received: stopping" in output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--driver", "podman"], "--driver: expected docker or sim, got 'podman'"),
        (["--driver", "sim", "--memory", "lots"], "--memory: "),
        (["--driver", "sim", "--nodes", "0"], "--nodes: expected at least 1, got 0"),
        (["--driver", "docker", "--nodes", "2"], "--nodes: only with --driver sim"),
        (["--driver", "sim", "--reserved-cores", "0"], "--reserved-cores: only with"),
        (["--driver", "docker", "--reserved-cores", "3-1"], "--reserved-cores: "),
        (["--heartbeat", "0"], "--heartbeat: expected a number of seconds > 0, got '0'"),
        (["--checkpoint-dir", "cp"], "--checkpoint-dir: expected an absolute path, got 'cp'"),
    ],
)
def test_agent_command_rejects_bad_options_in_one_line(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["agent", "--store", f"sqlite:///{tmp_path}/state.db", *options])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
