"""Hollow nodes: many simulated nodes in one process, behind the same driver contract as Docker.

A :class:`SimCluster` hosts any number of nodes; :meth:`SimCluster.add_node` returns each
node's :class:`SimDriver`, a :class:`~swarmapply.agent.driver.Driver`. A started container
"runs" from its start until start + ``spec.duration`` on the cluster's clock (forever when the
duration is None), then it has exited with code 0. Nothing ticks: a container's state is
computed from the clock when someone asks, so idle nodes cost nothing but their memory, and a
test can drive time with a fake clock. :meth:`SimCluster.fail` and :meth:`SimCluster.oom` end a
running container early, for tests and chaos.

Guarantees: ``start`` is idempotent per task uid on a node (the existing container is
returned); ``containers()`` shows only that node's containers; ``remove`` of an unknown id is
fine; all methods are thread-safe (one lock for the cluster, held only for in-memory work).
``events(stop)`` reports each container's end as it passes, in end-time order, with one
waiting loop (``stop.wait``) per call. It waits at most ``poll`` seconds at a time, so a
container started (or failed) after the loop went to sleep with an earlier end than the one it
waits for is reported up to ``poll`` seconds late, and with a fake clock ends are noticed
within ``poll`` seconds of the clock moving. Ends that passed before ``events`` was called are
not reported (the agent resyncs when it starts).

Not simulated: images, networks, ports and volumes (accepted and ignored), memory pressure
(only :meth:`SimCluster.oom` kills), pausing, engine outages, and checkpoints: ``checkpoint``
and ``restore`` refuse with reason ``CheckpointUnsupported`` (a hollow container has no
process to checkpoint), so migrations of sim tasks go cold.
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import MappingProxyType

from swarmapply.agent.driver import TaskRefused
from swarmapply.agent.model import ContainerSpec, NodeInfo, Observed
from swarmapply.api.quantity import QuantityError, parse_cpuset
from swarmapply.api.store.lifecycle import format_rfc3339, now_rfc3339, parse_time

#: The exit code of a container killed for its memory limit (SIGKILL), as Docker reports it.
OOM_EXIT_CODE = 137


class _Container:
    """One simulated container (mutable; guarded by the cluster's lock)."""

    __slots__ = (
        "container_id",
        "cpuset",
        "end",
        "exit_code",
        "labels",
        "memory",
        "node",
        "observed",
        "oom_killed",
        "spec",
        "started",
        "started_at",
        "started_wall",
    )

    def __init__(
        self, container_id: str, spec: ContainerSpec, node: str, started: float, started_at: str
    ) -> None:
        self.container_id = container_id
        self.spec = spec
        self.node = node
        self.cpuset = spec.cpuset
        self.memory = spec.memory
        self.started = started
        self.end: float | None = None if spec.duration is None else started + spec.duration
        self.exit_code = 0
        self.oom_killed = False
        self.started_at = started_at
        self.started_wall: datetime | None = parse_time(started_at)
        self.labels = MappingProxyType(spec.labels)
        self.observed: Observed | None = None


class _Subscriber:
    """One ``events()`` loop: the end times still to report, soonest first."""

    __slots__ = ("heap", "node")

    def __init__(self, node: str | None) -> None:
        self.node = node
        self.heap: list[tuple[float, int, str, str]] = []  # end, seq, node, container id


class SimCluster:
    """Many hollow nodes sharing one clock.

    Args:
        clock: Seconds on a monotonic clock; container durations are measured on it.
        wall: The current time as RFC 3339, for start and finish times.
        poll: The longest ``events()`` sleeps at a time (seconds), see the module docstring.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = lambda: now_rfc3339(),
        poll: float = 1.0,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._poll = poll
        self._lock = threading.Lock()
        self._nodes: dict[str, SimDriver] = {}
        self._containers: dict[str, dict[str, _Container]] = {}  # node -> id -> container
        self._by_uid: dict[str, dict[str, _Container]] = {}  # node -> task uid -> container
        self._subscribers: list[_Subscriber] = []
        self._seq = 0

    def add_node(self, name: str, cores: int, memory: int) -> SimDriver:
        """Adds a hollow node and returns its driver.

        Args:
            name: The node's name, unique in the cluster.
            cores: How many cores it has (ids 0..cores-1).
            memory: Its memory in bytes.

        Raises:
            ValueError: The name is taken, or cores/memory are not positive.
        """
        if cores < 1 or memory < 1:
            raise ValueError(f"sim node {name}: cores and memory must be positive")
        with self._lock:
            if name in self._nodes:
                raise ValueError(f"sim node {name} exists already")
            driver = SimDriver(self, name, cores, memory)
            self._nodes[name] = driver
            self._containers[name] = {}
            self._by_uid[name] = {}
        return driver

    def node(self, name: str) -> SimDriver:
        """The driver of node ``name``.

        Raises:
            KeyError: There is no such node.
        """
        with self._lock:
            return self._nodes[name]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in the order they were added."""
        with self._lock:
            return tuple(self._nodes)

    def running(self) -> int:
        """How many containers are running now, across the cluster."""
        with self._lock:
            now = self._clock()
            return sum(
                1
                for containers in self._containers.values()
                for c in containers.values()
                if c.end is None or now < c.end
            )

    def fail(self, task_uid: str, exit_code: int = 1) -> None:
        """Ends the task's running container now with ``exit_code`` (on whatever node).

        Raises:
            KeyError: No container of that task is running.
        """
        self._end(task_uid, exit_code, oom_killed=False)

    def oom(self, task_uid: str) -> None:
        """Kills the task's running container now for exceeding its memory limit.

        Raises:
            KeyError: No container of that task is running.
        """
        self._end(task_uid, OOM_EXIT_CODE, oom_killed=True)

    def events(self, stop: threading.Event, node: str | None = None) -> Iterator[str]:
        """Task uids whose containers end, as their end passes, until ``stop`` is set.

        Args:
            stop: Set it to end the iteration (noticed within ``poll`` seconds).
            node: Only this node's containers; None for the whole cluster.
        """
        subscriber = _Subscriber(node)
        with self._lock:
            now = self._clock()
            for name in (node,) if node is not None else tuple(self._containers):
                for c in self._containers.get(name, {}).values():
                    if c.end is not None and c.end > now:
                        self._seq += 1
                        subscriber.heap.append((c.end, self._seq, c.node, c.container_id))
            heapq.heapify(subscriber.heap)
            self._subscribers.append(subscriber)
        try:
            while not stop.is_set():
                due, timeout = self._due(subscriber)
                yield from due
                if not due:
                    stop.wait(max(0.0, min(timeout, self._poll)))
        finally:
            with self._lock:
                self._subscribers.remove(subscriber)

    # -- the drivers' side (called by SimDriver with its node name) --

    def _due(self, subscriber: _Subscriber) -> tuple[list[str], float]:
        """Pops the ends that have passed; returns their uids and the seconds to the next."""
        due: list[str] = []
        with self._lock:
            now = self._clock()
            heap = subscriber.heap
            while heap and heap[0][0] <= now:
                end, _, node, container_id = heapq.heappop(heap)
                c = self._containers.get(node, {}).get(container_id)
                if c is not None and c.end == end:
                    due.append(c.spec.task_uid)
            timeout = heap[0][0] - now if heap else self._poll
        return due, timeout

    def _notify(self, c: _Container) -> None:
        """Tells every matching events() loop about ``c``'s end (lock held)."""
        if c.end is None:
            return
        for subscriber in self._subscribers:
            if subscriber.node is None or subscriber.node == c.node:
                self._seq += 1
                heapq.heappush(subscriber.heap, (c.end, self._seq, c.node, c.container_id))

    def _end(self, task_uid: str, exit_code: int, *, oom_killed: bool) -> None:
        with self._lock:
            now = self._clock()
            hits = [
                c
                for by_uid in self._by_uid.values()
                if (c := by_uid.get(task_uid)) is not None and (c.end is None or now < c.end)
            ]
            if not hits:
                raise KeyError(f"no sim container of task uid {task_uid} is running")
            for c in hits:
                c.end = now
                c.exit_code = exit_code
                c.oom_killed = oom_killed
                c.observed = None
                self._notify(c)

    def _list(self, node: str) -> list[Observed]:
        with self._lock:
            now = self._clock()
            return [self._observe(c, now) for c in self._containers[node].values()]

    def _start(self, node: str, cores: int, spec: ContainerSpec) -> Observed:
        if spec.node != node:
            raise TaskRefused(
                "InvalidSpec", f"task {spec.task} is bound to node {spec.node}, not {node}"
            )
        _check_cpuset(spec.task, node, spec.cpuset, cores)
        with self._lock:
            now = self._clock()
            existing = self._by_uid[node].get(spec.task_uid)
            if existing is not None:
                return self._observe(existing, now)
            container_id = f"sim-{secrets.token_hex(6)}"
            c = _Container(container_id, spec, node, now, self._wall())
            self._containers[node][container_id] = c
            self._by_uid[node][spec.task_uid] = c
            self._notify(c)
            return self._observe(c, now)

    def _update(self, node: str, cores: int, container_id: str, cpuset: str, memory: int) -> None:
        with self._lock:
            c = self._containers[node].get(container_id)
            if c is None:
                raise TaskRefused("NotFound", f"no container {container_id} on sim node {node}")
            _check_cpuset(c.spec.task, node, cpuset, cores)
            c.cpuset = cpuset
            c.memory = memory
            c.observed = None

    def _remove(self, node: str, container_id: str) -> None:
        with self._lock:
            c = self._containers[node].pop(container_id, None)
            if c is not None and self._by_uid[node].get(c.spec.task_uid) is c:
                del self._by_uid[node][c.spec.task_uid]

    def _observe(self, c: _Container, now: float) -> Observed:
        """The container as a driver reports it (lock held); cached while nothing changes."""
        running = c.end is None or now < c.end
        if c.observed is not None and (c.observed.state == "running") == running:
            return c.observed
        finished_at = None
        if not running:
            assert c.end is not None
            finished_at = (
                format_rfc3339(c.started_wall + timedelta(seconds=c.end - c.started))
                if c.started_wall is not None
                else self._wall()
            )
        c.observed = Observed(
            container_id=c.container_id,
            task=c.spec.task,
            task_uid=c.spec.task_uid,
            state="running" if running else "exited",
            cpuset=c.cpuset,
            memory=c.memory,
            exit_code=None if running else c.exit_code,
            oom_killed=c.oom_killed and not running,
            started_at=c.started_at,
            finished_at=finished_at,
            labels=c.labels,
        )
        return c.observed


class SimDriver:
    """One hollow node of a :class:`SimCluster` (a :class:`~swarmapply.agent.driver.Driver`).

    Create it with :meth:`SimCluster.add_node`.
    """

    def __init__(self, cluster: SimCluster, name: str, cores: int, memory: int) -> None:
        self.cluster = cluster
        self.name = name
        self.cores = cores
        self.memory = memory

    def info(self) -> NodeInfo:
        """The node's name, cores 0..cores-1, memory, engine ``sim``."""
        return NodeInfo(
            name=self.name,
            core_ids=tuple(range(self.cores)),
            memory=self.memory,
            address=None,
            engine_version="sim",
        )

    def containers(self) -> list[Observed]:
        """This node's containers, running or exited, with their state as of now."""
        return self.cluster._list(self.name)

    def start(self, spec: ContainerSpec) -> Observed:
        """Starts the task's container, or returns the one it has on this node already.

        Raises:
            TaskRefused: ``InvalidSpec`` when the task is bound to another node or its cpuset
                names cores this node does not have.
        """
        return self.cluster._start(self.name, self.cores, spec)

    def update(self, container_id: str, cpuset: str, memory: int) -> None:
        """Changes the container's cores and memory limit.

        Raises:
            TaskRefused: ``NotFound`` for an unknown container, ``InvalidSpec`` for cores this
                node does not have.
        """
        self.cluster._update(self.name, self.cores, container_id, cpuset, memory)

    def remove(self, container_id: str) -> None:
        """Removes the container (running or not); an unknown id is fine."""
        self.cluster._remove(self.name, container_id)

    def checkpoint(self, container_id: str, directory: str, *, leave_running: bool) -> int:
        """Refuses: a hollow container has no process to checkpoint.

        Raises:
            TaskRefused: Always, with reason ``CheckpointUnsupported``.
        """
        raise TaskRefused(
            "CheckpointUnsupported",
            f"the sim driver cannot checkpoint container {container_id} of node {self.name} "
            "(a hollow container has no process to checkpoint); migrate it cold",
        )

    def restore(self, spec: ContainerSpec, directory: str) -> Observed:
        """Refuses: the sim driver takes no checkpoints, so it restores none.

        Raises:
            TaskRefused: Always, with reason ``CheckpointUnsupported``.
        """
        raise TaskRefused(
            "CheckpointUnsupported",
            f"the sim driver cannot restore task {spec.task} on node {self.name} from a "
            f"checkpoint ({directory}); start it afresh instead",
        )

    def events(self, stop: threading.Event) -> Iterator[str]:
        """Task uids of this node's containers as they end, until ``stop`` is set."""
        return self.cluster.events(stop, node=self.name)


def _check_cpuset(task: str, node: str, cpuset: str, cores: int) -> None:
    try:
        ids = parse_cpuset(cpuset)
    except QuantityError as error:
        raise TaskRefused("InvalidSpec", f"task {task}: cpuset {cpuset!r}: {error}") from error
    if ids[-1] >= cores:
        raise TaskRefused(
            "InvalidSpec",
            f"task {task}: cpuset {cpuset} names cores sim node {node} does not have "
            f"(it has 0-{cores - 1})",
        )


__all__ = ["OOM_EXIT_CODE", "SimCluster", "SimDriver"]
