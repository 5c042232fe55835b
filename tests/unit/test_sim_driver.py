"""The sim driver: hollow nodes whose containers run for a simulated duration."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarmapply.agent.driver import Driver, TaskRefused
from swarmapply.agent.model import TASK_UID, ContainerSpec, NodeInfo
from swarmapply.agent.sim import OOM_EXIT_CODE, SimCluster, SimDriver

WALL = "2024-05-01T12:00:00Z"
MI = 1 << 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(
    uid: str, *, node: str = "n1", duration: float | None = None, cpuset: str = "0"
) -> ContainerSpec:
    return ContainerSpec(
        task=f"task-{uid}",
        task_uid=uid,
        job="job",
        node=node,
        alias=uid,
        image="busybox",
        command=None,
        cpuset=cpuset,
        memory=64 * MI,
        duration=duration,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster(clock: FakeClock) -> SimCluster:
    return SimCluster(clock=clock, wall=lambda: WALL, poll=0.01)


@pytest.fixture
def n1(cluster: SimCluster) -> SimDriver:
    return cluster.add_node("n1", cores=4, memory=8 << 30)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Collector:
    """Runs an events() iterator in a thread and keeps what it yields."""

    def __init__(self, events: Iterator[str], stop: threading.Event) -> None:
        self.got: list[str] = []
        self.stop = stop
        self.thread = threading.Thread(target=self._run, args=(events,), daemon=True)
        self.thread.start()

    def _run(self, events: Iterator[str]) -> None:
        for uid in events:
            self.got.append(uid)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def test_a_sim_node_is_a_driver_and_describes_itself(n1: SimDriver) -> None:
    assert isinstance(n1, Driver)
    assert n1.info() == NodeInfo(
        name="n1", core_ids=(0, 1, 2, 3), memory=8 << 30, address=None, engine_version="sim"
    )


def test_a_container_runs_for_its_duration_then_exits_with_zero(
    n1: SimDriver, clock: FakeClock
) -> None:
    started = n1.start(spec("a", duration=10.0, cpuset="1-2"))
    assert re.fullmatch(r"sim-[0-9a-f]{12}", started.container_id)
    assert started.state == "running" and started.exit_code is None
    assert started.started_at == WALL and started.finished_at is None
    assert (started.cpuset, started.memory, started.task, started.task_uid) == (
        "1-2",
        64 * MI,
        "task-a",
        "a",
    )
    assert started.labels[TASK_UID] == "a"
    clock.now += 9.5
    assert [c.state for c in n1.containers()] == ["running"]
    clock.now += 0.5
    (done,) = n1.containers()
    assert (done.state, done.exit_code, done.oom_killed) == ("exited", 0, False)
    assert done.finished_at == "2024-05-01T12:00:10Z"
    assert done.container_id == started.container_id


def test_a_container_without_duration_runs_forever(n1: SimDriver, clock: FakeClock) -> None:
    n1.start(spec("a"))
    clock.now += 10**9
    assert [c.state for c in n1.containers()] == ["running"]


def test_start_is_idempotent_per_task_uid(n1: SimDriver, clock: FakeClock) -> None:
    first = n1.start(spec("a", duration=1.0))
    again = n1.start(spec("a", duration=1.0))
    assert again.container_id == first.container_id
    clock.now += 2
    exited = n1.start(spec("a", duration=1.0))
    assert exited.container_id == first.container_id and exited.state == "exited"
    assert len(n1.containers()) == 1


def test_each_node_shows_only_its_containers(cluster: SimCluster, n1: SimDriver) -> None:
    n2 = cluster.add_node("n2", cores=2, memory=1 << 30)
    n1.start(spec("a"))
    n2.start(spec("b", node="n2"))
    n2.start(spec("a", node="n2"))  # the same uid on another node is another container
    assert [c.task_uid for c in n1.containers()] == ["a"]
    assert sorted(c.task_uid for c in n2.containers()) == ["a", "b"]
    assert cluster.nodes == ("n1", "n2") and cluster.node("n2") is n2
    assert cluster.running() == 3
    with pytest.raises(ValueError, match="sim node n1 exists already"):
        cluster.add_node("n1", cores=1, memory=1)


def test_update_changes_cores_and_memory(n1: SimDriver) -> None:
    cid = n1.start(spec("a")).container_id
    n1.update(cid, "2-3", 128 * MI)
    (c,) = n1.containers()
    assert (c.cpuset, c.memory) == ("2-3", 128 * MI)
    with pytest.raises(TaskRefused, match="sim node n1 does not have") as refused:
        n1.update(cid, "3-4", 128 * MI)
    assert refused.value.reason == "InvalidSpec"
    with pytest.raises(TaskRefused, match="no container sim-000000000000 on sim node n1"):
        n1.update("sim-000000000000", "0", MI)


def test_remove_forgets_the_container_and_an_unknown_id_is_fine(n1: SimDriver) -> None:
    cid = n1.start(spec("a")).container_id
    n1.remove(cid)
    n1.remove(cid)
    n1.remove("sim-unknown")
    assert n1.containers() == []
    assert n1.start(spec("a")).container_id != cid, "a new container after removal"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (spec("a", node="n2"), "task task-a is bound to node n2, not n1"),
        (
            spec("a", cpuset="3-4"),
            r"cpuset 3-4 names cores sim node n1 does not have \(it has 0-3\)",
        ),
        (spec("a", cpuset="x"), "cpuset 'x'"),
    ],
    ids=["other-node", "missing-cores", "junk-cpuset"],
)
def test_start_refuses_what_the_node_cannot_run(
    n1: SimDriver, bad: ContainerSpec, message: str
) -> None:
    with pytest.raises(TaskRefused, match=message) as refused:
        n1.start(bad)
    assert refused.value.reason == "InvalidSpec"
    assert n1.containers() == []


def test_fail_and_oom_end_a_running_container_now(
    cluster: SimCluster, n1: SimDriver, clock: FakeClock
) -> None:
    n1.start(spec("a"))
    n1.start(spec("b", duration=100.0))
    clock.now += 5
    cluster.fail("a", exit_code=3)
    cluster.oom("b")
    states = {c.task_uid: c for c in n1.containers()}
    assert (states["a"].state, states["a"].exit_code, states["a"].oom_killed) == (
        "exited",
        3,
        False,
    )
    assert (states["b"].state, states["b"].exit_code, states["b"].oom_killed) == (
        "exited",
        OOM_EXIT_CODE,
        True,
    )
    assert states["a"].finished_at == "2024-05-01T12:00:05Z"
    with pytest.raises(KeyError, match="no sim container of task uid a is running"):
        cluster.fail("a")
    with pytest.raises(KeyError, match="task uid nope"):
        cluster.oom("nope")


def test_events_report_ends_in_time_order_for_one_node(
    cluster: SimCluster, n1: SimDriver, clock: FakeClock
) -> None:
    n2 = cluster.add_node("n2", cores=4, memory=1 << 30)
    n1.start(spec("early-but-started-first", duration=5.0))
    stop_node, stop_all = threading.Event(), threading.Event()
    collector = Collector(n1.events(stop_node), stop_node)
    everything = Collector(cluster.events(stop_all), stop_all)
    try:
        wait_for(lambda: len(cluster._subscribers) == 2)
        n1.start(spec("c", duration=3.0))
        n1.start(spec("a", duration=1.0))
        n1.start(spec("b", duration=2.0))
        n1.start(spec("forever"))
        n1.start(spec("removed", duration=1.5))
        n2.start(spec("other", node="n2", duration=1.0))
        n1.remove(n1.start(spec("removed")).container_id)
        clock.now += 2.5
        wait_for(lambda: len(collector.got) == 2)
        assert collector.got == ["a", "b"]
        clock.now += 10
        wait_for(lambda: len(collector.got) == 4)
        assert collector.got == ["a", "b", "c", "early-but-started-first"]
        cluster.fail("forever")
        wait_for(lambda: len(collector.got) == 5)
        assert collector.got[-1] == "forever"
        wait_for(lambda: len(everything.got) == 6)
        assert everything.got[:3] == ["a", "other", "b"]
        assert "removed" not in everything.got
    finally:
        collector.close()
        everything.close()
    wait_for(lambda: cluster._subscribers == [])


def test_events_wait_until_the_next_end_on_a_real_clock() -> None:
    cluster = SimCluster(poll=30.0)
    node = cluster.add_node("n1", cores=1, memory=1 << 30)
    node.start(spec("soon", duration=0.05))
    stop = threading.Event()
    began = time.monotonic()
    events = node.events(stop)
    assert next(events) == "soon"
    assert time.monotonic() - began < 5.0, "woke at the end time, not after the poll"
    stop.set()
    assert list(events) == []


def test_a_thousand_nodes_with_ten_thousand_tasks_are_cheap() -> None:
    cluster = SimCluster(poll=60.0)
    began = time.perf_counter()
    drivers = [cluster.add_node(f"sim-{i}", cores=10, memory=64 << 30) for i in range(1000)]
    for i, driver in enumerate(drivers):
        for core in range(10):
            driver.start(spec(f"t-{i}-{core}", node=driver.name, cpuset=str(core)))
    built = time.perf_counter() - began
    began = time.perf_counter()
    total = sum(len(d.containers()) for d in drivers)
    listed = time.perf_counter() - began
    assert total == 10_000 and cluster.running() == 10_000
    assert built < 10.0, f"starting 10,000 sim containers took {built:.2f}s"
    assert listed < 2.0, f"listing 1,000 sim nodes took {listed:.2f}s"


def test_checkpoint_and_restore_are_unsupported_and_change_nothing(
    n1: SimDriver, tmp_path: Any
) -> None:
    running = n1.start(spec("u1"))
    with pytest.raises(TaskRefused) as refused:
        n1.checkpoint(running.container_id, str(tmp_path / "cp"), leave_running=False)
    assert refused.value.reason == "CheckpointUnsupported"
    assert "the sim driver cannot checkpoint" in str(refused.value)
    assert [(c.container_id, c.state) for c in n1.containers()] == [
        (running.container_id, "running")
    ]
    with pytest.raises(TaskRefused) as refused:
        n1.restore(spec("u2"), str(tmp_path / "cp"))
    assert refused.value.reason == "CheckpointUnsupported"
    assert "task task-u2" in str(refused.value)
    assert len(n1.containers()) == 1
    assert not (tmp_path / "cp").exists()
