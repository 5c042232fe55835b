"""The node agent at work: hollow (sim) nodes at scale, and apply -> Running on Docker.

Two parts, each beside a baseline measured in the same run:

* **sim at scale**: a fresh SQLite store in a temporary directory; ``--sim-nodes`` hollow
  nodes in one :class:`~swarmapply.agent.group.AgentGroup` built as ``swarmapply agent
  --driver sim --nodes N`` builds it (one :class:`~swarmapply.agent.sim.SimCluster`, one
  :class:`~swarmapply.agent.agent.NodeAgent` per node, heartbeat 10 s, resync 30 s);
  ``--sim-tasks`` Pending tasks (gang jobs of four, one core each, running until removed)
  created as the job controller creates them (:func:`~swarmapply.controllers.job_tasks.
  build_task`) and bound by the real :class:`~swarmapply.controllers.scheduler.Scheduler`
  loop. Timed: from the scheduler's start until every Task is bound, and until every Task is
  Running. Then the scheduler stops and the agents alone hold the cluster for
  ``--steady-seconds``: CPU seconds this process used per wall second
  (``time.process_time``), its peak RSS (``getrusage``) and its current RSS; the baseline is
  the same process before the agents exist (store open, everything imported), idle.
* **docker**: ``swarmapply up`` in miniature: the controllers of a docker cluster (job,
  scheduler, deployer, ...) and an agent group with the Docker driver, in-process, on a fresh
  SQLite store, and a bridge network the run creates. Timed from the apply of a four-task job
  (one core, 16 MiB, ``sleep``) until all four Tasks are Running; beside it ``docker run -d``
  (docker-py ``containers.run(detach=True)``) of the same four containers (image, command,
  cpusets, memory, network) one after the other. Best of ``--rounds``; every container and
  the network are removed at the end. When the machine has fewer than four cores, the engine
  is registered as several nodes (one agent each, the same engine, distinct node names) so
  that the job fits; their cpusets overlap on the host, as the raw run's do.

Not measured: MongoDB, the pruner, networks created by the deployer, image pulls (the image
must be present), many jobs at once on Docker, and the agents' cost while tasks start and
stop in steady state (the sim tasks run until removed). Absolute figures depend on the
machine and the disk's fsync; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from swarmapply.agent.agent import NodeAgent
from swarmapply.agent.group import AgentGroup
from swarmapply.agent.model import JOB_NAME, MANAGED_BY, MANAGER, NODE_NAME
from swarmapply.agent.sim import SimCluster
from swarmapply.api.admission import admit
from swarmapply.api.store import Object, Store, open_store
from swarmapply.controllers.job_tasks import build_task
from swarmapply.controllers.scheduler import Scheduler
from swarmapply.controllers.settings import ControllerSettings, SchedulerSettings

API = "swarmapply.io/v1"
MiB = 1024**2
GiB = 1024**3
#: The image both docker runs use; tests/conftest.py (fixture ``test_image``) builds it.
IMAGE = "swarmapply-test/busybox:1"
#: The label on everything the docker part creates outside the store (raw containers, network).
BENCH_LABEL = "swarmapply.io/bench"
#: As ``swarmapply agent`` (its option defaults).
HEARTBEAT = 10.0
RESYNC = 30.0
TASKS_PER_JOB = 4
DOCKER_TASKS = 4
DOCKER_MEMORY = 16 * MiB
DOCKER_COMMAND = ("sleep", "3600")


# ------------------------------------------------------------------------------ pure parts


def job_sizes(tasks: int, per_job: int = TASKS_PER_JOB) -> list[int]:
    """How many tasks each job gets: ``per_job`` each, the remainder in a last smaller job."""
    if tasks < 1 or per_job < 1:
        raise ValueError("tasks and per_job must be at least 1")
    sizes = [per_job] * (tasks // per_job)
    if tasks % per_job:
        sizes.append(tasks % per_job)
    return sizes


def cores_per_node(tasks: int, nodes: int, minimum: int = 16) -> int:
    """Cores per hollow node so that ``tasks`` one-core tasks fit with room to spare."""
    return max(minimum, math.ceil(tasks / nodes) + TASKS_PER_JOB)


def engine_nodes(tasks: int, cores: int) -> int:
    """How many node names one engine with ``cores`` usable cores needs for ``tasks`` one-core
    tasks placed with exclusive cores."""
    if cores < 1:
        raise ValueError("the engine reports no usable cores")
    return max(1, math.ceil(tasks / cores))


def per_second(cpu: float, wall: float) -> float:
    """CPU seconds per wall second (0 for an empty window)."""
    return cpu / wall if wall > 0 else 0.0


def maxrss_bytes(ru_maxrss: int, platform: str = sys.platform) -> int:
    """``ru_maxrss`` in bytes: kilobytes on Linux, bytes on macOS."""
    return ru_maxrss if platform == "darwin" else ru_maxrss * 1024


def sim_job(name: str, size: int) -> Object:
    """A Pending gang Job of ``size`` one-core, 64 MiB tasks that run until removed."""
    tasks = [
        {"name": f"t{i}", "image": "busybox", "cores": 1, "memory": 64 * MiB} for i in range(size)
    ]
    spec = {"tasks": tasks, "priority": 0, "restartPolicy": "Never"}
    return {"apiVersion": API, "kind": "Job", "metadata": {"name": name}, "spec": spec,
            "status": {"phase": "Pending", "tasksTotal": size}}  # fmt: skip


def docker_job(name: str, network: str, image: str = IMAGE) -> Object:
    """The docker part's manifest: four tasks, one core and 16 MiB each, on ``network``."""
    tasks = [
        {"name": f"t{i}", "image": image, "command": list(DOCKER_COMMAND), "cores": 1,
         "memory": f"{DOCKER_MEMORY // MiB}m"}
        for i in range(DOCKER_TASKS)
    ]  # fmt: skip
    spec = {"tasks": tasks, "network": {"name": network, "driver": "bridge"},
            "restartPolicy": "Never"}  # fmt: skip
    return {"apiVersion": API, "kind": "Job", "metadata": {"name": name}, "spec": spec}


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Usage:
    """The process's resource use over one window."""

    wall: float
    cpu: float
    maxrss: int
    rss: int | None

    @property
    def cpu_per_s(self) -> float:
        """CPU seconds per wall second."""
        return per_second(self.cpu, self.wall)


def current_rss() -> int | None:
    """This process's resident set now, in bytes (Linux ``/proc``; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def measure(seconds: float, stop: threading.Event | None = None) -> Usage:
    """Sleeps ``seconds`` and returns what the whole process used meanwhile."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    (stop or threading.Event()).wait(seconds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    maxrss = maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return Usage(wall, cpu, maxrss, current_rss())


@contextmanager
def running(target: Callable[[threading.Event], None], name: str) -> Iterator[threading.Event]:
    """Runs ``target(stop)`` on a thread for the block; stops and joins it afterwards."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        if thread.is_alive():
            print(f"warning: {name} did not stop within 30 s", file=sys.stderr)


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Polls ``check`` until it holds; returns the seconds it took.

    Raises:
        TimeoutError: It did not hold within ``timeout`` seconds.
    """
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(every)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------- sim part


@dataclass
class SimResult:
    """The figures of the sim part."""

    nodes: int
    tasks: int
    cores: int
    register_s: float = 0.0
    create_s: float = 0.0
    bound_s: float = 0.0
    running_s: float = 0.0
    running: int = 0
    containers: int = 0
    baseline: Usage | None = None
    steady: Usage | None = None
    rounds: int = 0
    still_running: int = 0
    notes: list[str] = field(default_factory=list)


def build_sim_group(store: Store, nodes: int, cores: int, memory: int) -> AgentGroup:
    """The group ``swarmapply agent --driver sim --nodes N --cores C --memory M`` builds."""
    cluster = SimCluster()
    agents = [
        NodeAgent(store, cluster.add_node(f"sim-{i}", cores, memory), driver_name="sim",
                  heartbeat=HEARTBEAT, resync=RESYNC)
        for i in range(nodes)
    ]  # fmt: skip
    return AgentGroup(store, agents)


def create_sim_jobs(store: Store, tasks: int) -> int:
    """Creates the Pending Jobs and their Tasks (as the job controller does); returns jobs."""
    sizes = job_sizes(tasks)
    for j, size in enumerate(sizes):
        job = store.create(sim_job(f"job-{j}", size))
        for entry in job["spec"]["tasks"]:
            store.create(build_task(job, entry))
    return len(sizes)


def follow_tasks(store: Store, since: int, total: int, timeout: float) -> tuple[float, float]:
    """Watches Task changes from ``since`` until all ``total`` are Running.

    Returns:
        Seconds until every Task was bound (``status.node``), and until every one was Running.

    Raises:
        TimeoutError: Not all Running within ``timeout`` seconds.
    """
    t0 = time.perf_counter()
    bound: set[str] = set()
    running_: set[str] = set()
    bound_s = 0.0
    while len(running_) < total:
        left = timeout - (time.perf_counter() - t0)
        if left <= 0:
            raise TimeoutError(
                f"sim: {len(bound)} of {total} tasks bound, {len(running_)} Running "
                f"after {timeout:.0f} s"
            )
        for event in store.watch("Task", since, timeout=min(1.0, left)):
            since = max(since, event.revision)
            name = event.object["metadata"]["name"]
            status = event.object.get("status") or {}
            if status.get("node"):
                bound.add(name)
            if status.get("phase") == "Running":
                running_.add(name)
            if not bound_s and len(bound) >= total:
                bound_s = time.perf_counter() - t0
            if len(running_) >= total:
                break
    return bound_s or time.perf_counter() - t0, time.perf_counter() - t0


def bench_sim(
    nodes: int, tasks: int, steady: float, baseline: float, timeout: float = 600.0
) -> SimResult:
    """Runs the sim part (see the module docstring) and returns its figures."""
    cores = cores_per_node(tasks, nodes)
    memory = 64 * GiB
    result = SimResult(nodes, tasks, cores)
    with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
        url = f"sqlite:///{Path(tmp, 'state.db')}"
        with closing(open_store(url)) as store:
            print(f"  sim: idle baseline, {baseline:.0f} s ...", flush=True)
            result.baseline = measure(baseline)
            group = build_sim_group(store, nodes, cores, memory)
            print(f"  sim: {nodes} hollow nodes registering ...", flush=True)
            with running(group.run, "agent-group"):
                result.register_s = wait_until(
                    lambda: all(a.registered for a in group.agents), timeout, "registration"
                )
                print(f"  sim: creating {tasks} Pending tasks ...", flush=True)
                t0 = time.perf_counter()
                jobs = create_sim_jobs(store, tasks)
                result.create_s = time.perf_counter() - t0
                result.notes.append(
                    f"sim: created {jobs} Jobs and {tasks} Tasks in {result.create_s:.1f}s "
                    "(not counted)"
                )
                since = store.revision()
                scheduler = Scheduler(store, SchedulerSettings())
                print("  sim: scheduling and starting ...", flush=True)
                with running(scheduler.run, "scheduler"):
                    result.bound_s, result.running_s = follow_tasks(store, since, tasks, timeout)
                result.notes.append(f"sim: scheduler {scheduler.summary()}")
                cluster = group.agents[0].driver.cluster  # type: ignore[attr-defined]
                result.containers = cluster.running()
                result.running = len(
                    store.list("Task", field_selector="status.phase=Running").items
                )
                print(f"  sim: steady state, {steady:.0f} s ...", flush=True)
                rounds0 = sum(a.rounds for a in group.agents)
                result.steady = measure(steady)
                result.rounds = sum(a.rounds for a in group.agents) - rounds0
                result.still_running = cluster.running()
    return result


# ---------------------------------------------------------------------------- docker part


@dataclass
class DockerResult:
    """The figures of the docker part (seconds per round)."""

    engine_nodes: int = 0
    cores: int = 0
    apply_s: list[float] = field(default_factory=list)
    bound_s: list[float] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Best apply -> Running over best raw ``docker run`` (None without rounds)."""
        if not self.apply_s or not self.raw_s:
            return None
        return min(self.apply_s) / min(self.raw_s)


def _tasks_of(store: Store, job: str) -> list[Object]:
    return store.list("Task", field_selector=f"spec.job={job}").items


def _apply_round(
    store: Store, name: str, network: str, timeout: float
) -> tuple[float, float, list[tuple[str, int]]]:
    """Applies the job and waits for all four Tasks Running.

    Returns:
        Seconds to all bound, seconds to all Running, and each task's ``(cpuset, memory)``.
    """
    from swarmapply.cli.apply import apply_all

    admitted = admit([("agent_bench", json.dumps(docker_job(name, network)))])
    t0 = time.perf_counter()
    for _ in apply_all(store, admitted, dry_run=False):
        pass
    bound_s = 0.0
    while True:
        tasks = _tasks_of(store, name)
        elapsed = time.perf_counter() - t0
        statuses = [t.get("status") or {} for t in tasks]
        if not bound_s and len(tasks) == DOCKER_TASKS and all(s.get("node") for s in statuses):
            bound_s = elapsed
        if len(tasks) == DOCKER_TASKS and all(s.get("phase") == "Running" for s in statuses):
            break
        failed = [t["metadata"]["name"] for t, s in zip(tasks, statuses, strict=True)
                  if s.get("phase") == "Failed"]  # fmt: skip
        if failed or elapsed > timeout:
            why = f"tasks failed: {', '.join(failed)}" if failed else "timed out"
            raise RuntimeError(f"docker: job {name}: {why}: {statuses}")
        time.sleep(0.005)
    shapes = [(str(s["cpuset"]), int(s["memory"])) for s in statuses]
    return bound_s, elapsed, shapes


def _job_gone(store: Store, client: Any, job: str) -> bool:
    """Whether the job's Tasks and containers are all gone."""
    if _tasks_of(store, job):
        return False
    return not client.containers.list(all=True, filters={"label": f"{JOB_NAME}={job}"})


def _raw_round(
    client: Any, prefix: str, network: str, shapes: Sequence[tuple[str, int]], label: str
) -> float:
    """``docker run -d`` of the four containers one after the other; returns the seconds."""
    t0 = time.perf_counter()
    for i, (cpuset, memory) in enumerate(shapes):
        client.containers.run(
            IMAGE,
            list(DOCKER_COMMAND),
            detach=True,
            name=f"{prefix}-{i}",
            cpuset_cpus=cpuset,
            mem_limit=memory,
            memswap_limit=memory,
            network=network,
            labels={BENCH_LABEL: label},
        )
    return time.perf_counter() - t0


def _remove_containers(client: Any, filters: dict[str, Any]) -> int:
    removed = 0
    for container in client.containers.list(all=True, filters=filters):
        container.remove(force=True)
        removed += 1
    return removed


def bench_docker(rounds: int, timeout: float = 60.0) -> DockerResult:
    """Runs the docker part (see the module docstring) and returns its figures."""
    import docker
    import docker.errors

    from swarmapply.agent.docker_driver import DockerDriver
    from swarmapply.cli.up import controllers_for
    from swarmapply.controllers.manager import ControllerManager, known_controllers

    result = DockerResult()
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        result.skipped = f"no Docker Engine answers ({exc})"
        return result
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        result.skipped = (
            f"image {IMAGE} is not on the engine; the test suite builds it (tests/conftest.py, "
            "fixture test_image: busybox-static imported as an image), e.g. run "
            "pytest -m docker tests/integration/test_docker_driver.py once"
        )
        return result
    label = secrets.token_hex(4)
    prefix = f"bench-{label}"
    network = client.networks.create(prefix, driver="bridge", labels={BENCH_LABEL: label})
    agent_names: list[str] = []
    try:
        cores = len(DockerDriver(client, name=f"{prefix}-probe").info().core_ids)
        result.cores = cores
        result.engine_nodes = engine_nodes(DOCKER_TASKS, cores)
        agent_names = [f"{prefix}-{i}" for i in range(result.engine_nodes)]
        with tempfile.TemporaryDirectory(prefix="swarmapply-bench-") as tmp:
            url = f"sqlite:///{Path(tmp, 'state.db')}"
            with closing(open_store(url)) as store:
                agents = [
                    NodeAgent(store, DockerDriver(client, name=n), driver_name="docker", name=n,
                              heartbeat=HEARTBEAT, resync=RESYNC)
                    for n in agent_names
                ]  # fmt: skip
                group = AgentGroup(store, agents)
                names = controllers_for("docker", known_controllers())
                manager = ControllerManager(store, names, ControllerSettings(), elect=False)
                result.notes.append(
                    f"docker: controllers {', '.join(manager.names)}; {len(agents)} node(s) "
                    f"{', '.join(agent_names)} on one engine with {cores} usable cores"
                )
                with running(manager.run, "controllers"), running(group.run, "agent-group"):
                    wait_until(lambda: all(a.registered for a in agents), timeout, "registration")
                    wait_until(lambda: len(manager.running()) == len(names), timeout,
                               "controllers running")  # fmt: skip
                    for r in range(rounds):
                        job = f"{prefix}-r{r}"
                        print(f"  docker: round {r + 1}: apply -> Running ...", flush=True)
                        bound_s, apply_s, shapes = _apply_round(store, job, network.name, timeout)
                        result.bound_s.append(bound_s)
                        result.apply_s.append(apply_s)
                        print(f"  docker: round {r + 1}: raw docker run ...", flush=True)
                        raw = _raw_round(client, f"{prefix}-raw{r}", network.name, shapes, label)
                        result.raw_s.append(raw)
                        _remove_containers(client, {"label": f"{BENCH_LABEL}={label}"})
                        store.delete("Job", job)
                        wait_until(
                            partial(_job_gone, store, client, job),
                            timeout,
                            f"job {job} and its containers removed",
                            every=0.05,
                        )
    finally:
        leftovers = _remove_containers(client, {"label": f"{BENCH_LABEL}={label}"})
        for node in agent_names:
            leftovers += _remove_containers(
                client, {"label": [f"{MANAGED_BY}={MANAGER}", f"{NODE_NAME}={node}"]}
            )
        network.remove()
        if leftovers:
            result.notes.append(f"docker: removed {leftovers} leftover container(s)")
    return result


# ---------------------------------------------------------------------------- output


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / MiB:.0f}"


def table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Rows as aligned text lines with a rule under the first one."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = (
            c.rjust(w) if right[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def sim_lines(r: SimResult) -> list[str]:
    """The sim part's two tables and notes."""
    head = f"sim: {r.nodes} hollow nodes ({r.cores} cores, 64 GiB each), {r.tasks} tasks"
    rows = [
        ("step", "seconds", "tasks/s"),
        ("all nodes registered (Ready)", f"{r.register_s:.2f}", ""),
        ("scheduler start -> all bound", f"{r.bound_s:.2f}", f"{r.tasks / r.bound_s:.0f}"),
        ("scheduler start -> all Running", f"{r.running_s:.2f}", f"{r.tasks / r.running_s:.0f}"),
    ]
    lines = [head, "", *table(rows, (False, True, True)), ""]
    usage = [("process", "seconds", "CPU s/s", "max RSS MiB", "RSS now MiB")]
    steady = f"steady state: {r.nodes} nodes, {r.still_running} running"
    for what, u in (("idle baseline (store open, nothing running)", r.baseline),
                    (steady, r.steady)):  # fmt: skip
        if u is not None:
            usage.append((what, f"{u.wall:.1f}", f"{u.cpu_per_s:.3f}", _mib(u.maxrss),
                          _mib(u.rss)))  # fmt: skip
    lines += table(usage, (False, True, True, True, True))
    lines += [
        f"sim: {r.running} Tasks Running in the store, {r.containers} sim containers running "
        "after convergence",
        f"sim: {r.rounds} node rounds during the steady window (heartbeat {HEARTBEAT:.0f} s, "
        f"resync {RESYNC:.0f} s)",
        *r.notes,
    ]
    return lines


def docker_lines(r: DockerResult) -> list[str]:
    """The docker part's table and notes."""
    if r.skipped:
        return [f"docker: skipped: {r.skipped}"]
    rows = [("round", "apply -> bound s", "apply -> Running s", "raw docker run s", "ratio")]
    for i, (b, a, raw) in enumerate(zip(r.bound_s, r.apply_s, r.raw_s, strict=True)):
        rows.append((str(i + 1), f"{b:.3f}", f"{a:.3f}", f"{raw:.3f}", f"{a / raw:.2f}"))
    if r.ratio is not None:
        rows.append(("best", f"{min(r.bound_s):.3f}", f"{min(r.apply_s):.3f}",
                     f"{min(r.raw_s):.3f}", f"{r.ratio:.2f}"))  # fmt: skip
    head = (
        f"docker: a {DOCKER_TASKS}-task job ({IMAGE}, 1 core and 16 MiB each), "
        f"best of {len(r.apply_s)}"
    )
    return [head, "", *table(rows, (False, True, True, True, True)), *r.notes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--sim-nodes", type=int, default=1000, help="hollow nodes (1000)")
    parser.add_argument("--sim-tasks", type=int, default=10000, help="tasks (10000)")
    parser.add_argument("--steady-seconds", type=float, default=20.0,
                        help="steady-state window (20)")  # fmt: skip
    parser.add_argument(
        "--docker", action=argparse.BooleanOptionalAction, default=True, help="the docker part"
    )
    parser.add_argument("--sim", action=argparse.BooleanOptionalAction, default=True,
                        help="the sim part")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="docker rounds, best of (3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of under 30 seconds")
    args = parser.parse_args(argv)
    if args.sim_nodes < 1 or args.sim_tasks < 1 or args.rounds < 1 or args.steady_seconds <= 0:
        parser.error("--sim-nodes, --sim-tasks, --rounds and --steady-seconds must be positive")
    nodes, tasks, steady, rounds = args.sim_nodes, args.sim_tasks, args.steady_seconds, args.rounds
    if args.quick:
        nodes, tasks, steady, rounds = min(nodes, 100), min(tasks, 1000), min(steady, 2.0), 1
    baseline = 1.0 if args.quick else min(steady, 5.0)
    print(f"agent_bench: sim {nodes} nodes / {tasks} tasks, steady {steady:.0f} s; docker "
          f"{'on, ' + str(rounds) + ' round(s)' if args.docker else 'off'}; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    lines: list[str] = []
    failed = False
    if args.sim:
        try:
            lines += sim_lines(bench_sim(nodes, tasks, steady, baseline))
        except TimeoutError as exc:
            lines.append(f"sim: FAILED: {exc}")
            failed = True
    if args.docker:
        try:
            lines += ["", *docker_lines(bench_docker(rounds))]
        except (RuntimeError, TimeoutError) as exc:
            lines.append(f"docker: FAILED: {exc}")
            failed = True
    print()
    for line in lines:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
